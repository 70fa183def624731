/**
 * `npm run bench -- [--only agent,versions,feeds,correlate,correlate-scale,fanout,fleet,preauth,store-hotpaths,scale] [--json] [--data DIR] [--fleet-agents N]`
 *
 * Every figure is printed beside a baseline measured in the same run: the machines are
 * shared and noisy, so a figure alone says little and its ratio to the baseline is what
 * we compare between runs. `ratio` is always "our cost / the baseline's cost" (a rate is
 * turned into a cost first), so 1.0x is the floor and bigger is worse. Aims come from
 * the issues (2: agent, 3: versions, feeds, correlation, 4: fleet) and are printed with whether the
 * run met them. Progress goes to stderr; stdout is the table, or one JSON document with
 * `--json`.
 */
import { ensureBuilt } from './dist-fresh.ts';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { parseDpkgStatus } from '../agent/inventory/dpkg.ts';
import type { KevInfo } from '../collector/domain/correlate/findings.ts';
import { indexKey } from '../collector/domain/correlate/advisory-index.ts';
import { Correlator } from '../collector/domain/correlate/correlator.ts';
import { DEFAULT_POLICY } from '../collector/domain/correlate/policy.ts';
import { planInventory } from '../collector/domain/correlate/match.ts';
import { parseFeedPath } from '../collector/services/feeds/import.ts';
import { importFeedPath } from '../collector/services/feeds/store-import.ts';
import type { Advisory } from '../collector/domain/feeds/types.ts';
import { storeOn } from '../collector/store/store.ts';
import { openDatabase } from '../collector/store/db.ts';
import { StoreInspection } from '../collector/store/inspection.ts';
import { SqliteDatabase } from '../collector/store/sql/sqlite.ts';
import { INVENTORY_SCHEMA, type Inventory, InventorySchema, type Package } from '../shared/protocol.ts';
import { DATA_DIR } from '../shared/testing/data.ts';
import { compareDebVersions, parseDebVersion } from '../shared/versions/dpkg.ts';
import { readTsvVectors } from '../shared/testing/version-vectors.ts';
import { benchAgent } from './bench-agent.ts';
import { benchFeedParse } from './bench-feeds.ts';
import { benchFleet, FLEET_ECOSYSTEM } from './bench-fleet.ts';
import { preauthSection } from './bench-preauth.ts';
import { correlateScaleSection } from './bench-correlate.ts';
import { fanOutSection } from './bench-fanout.ts';
import { storeHotPathsSection } from './bench-store.ts';
import { scaleSection } from './bench-scale.ts';
import { benchVersions } from './bench-versions.ts';

const SECTIONS = ['agent', 'versions', 'feeds', 'correlate', 'correlate-scale', 'fanout', 'fleet', 'preauth', 'store-hotpaths', 'scale'] as const;
type Section = (typeof SECTIONS)[number];

type Unit = 'ms' | 'us' | 'MB' | 'KB' | '/s' | 'count';

interface Figure {
  section: Section;
  name: string;
  value: number;
  unit: Unit;
  baseline: { name: string; value: number } | null;
  /** Our cost over the baseline's cost; for rates, baseline rate over ours. */
  ratio: number | null;
  aim: { text: string; met: boolean } | null;
  note: string | null;
  /** Why the figure does not measure what it says (a self-check failed); its aim counts as missed. */
  invalid: string | null;
}

function figure(
  section: Section,
  name: string,
  value: number,
  unit: Unit,
  baseline: { name: string; value: number } | null,
  options: { aim?: (value: number, ratio: number | null) => { text: string; met: boolean }; note?: string; invalid?: string | null } = {},
): Figure {
  const ratio = baseline === null || baseline.value === 0 ? null : unit === '/s' ? baseline.value / value : value / baseline.value;
  const invalid = options.invalid ?? null;
  const aim = options.aim?.(value, ratio) ?? null;
  return { section, name, value, unit, baseline, ratio, aim: aim === null ? null : { ...aim, met: aim.met && invalid === null }, note: options.note ?? null, invalid };
}

const under = (limit: number, unit: Unit) => (value: number) => ({ text: `< ${limit} ${unit}`, met: value < limit });
const atLeast = (limit: number, unit: Unit) => (value: number) => ({ text: `>= ${fmtValue(limit, unit)}`, met: value >= limit });
const within = (limit: number) => (_value: number, ratio: number | null) => ({ text: `<= ${limit}x baseline`, met: ratio !== null && ratio <= limit });

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

function progress(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

// ---------------------------------------------------------------------------------------
// 1. agent (issue 2)

async function agentSection(): Promise<{ figures: Figure[]; raw: unknown }> {
  const { path: agentJs, built } = ensureBuilt('agent');
  progress('agent: in-process inventory, whole process, peak RSS');
  const r = await benchAgent(agentJs);
  const figures = [
    figure('agent', `in-process inventory (${r.packages} packages)`, r.inProcessMs, 'ms', { name: `dpkg-query -W (${r.dpkgQueryRows} rows)`, value: r.dpkgQueryMs }, { aim: under(50, 'ms') }),
    figure('agent', 'node dist/agent.js inventory --json', r.processMs, 'ms', { name: 'node -e 0 + dpkg-query -W', value: r.bareNodePlusDpkgQueryMs }, {
      aim: within(1.5),
      note: `exit ${r.agentExitCode}${r.agentExitCode === 3 ? ' (partial: warnings)' : ''}; bare node ${fmtValue(r.bareNodeMs, 'ms')}${built === null ? '' : `; ${built}`}`,
    }),
    figure('agent', 'agent peak RSS', r.agentPeakRssMb, 'MB', { name: 'node -e 0 peak RSS', value: r.bareNodePeakRssMb }),
  ];
  return { figures, raw: { ...r, build: built } };
}

// ---------------------------------------------------------------------------------------
// 2. versions (issue 3)

const VERSION_FILES: Record<string, string> = { deb: 'dpkg-compare-versions.tsv', rpm: 'rpm-vercmp.tsv', apk: 'apk-version-t.tsv' };

/**
 * The floor for a comparator: JavaScript's own string comparison over the same pairs,
 * the cheapest total order there is. Comparisons per second over about `ms`.
 */
function stringCompareRate(pairs: readonly (readonly [string, string])[], ms: number): number {
  const round = (): number => {
    let s = 0;
    for (const [a, b] of pairs) s += a < b ? -1 : a > b ? 1 : 0;
    return s;
  };
  const warmEnd = performance.now() + 50;
  while (performance.now() < warmEnd) round();
  let count = 0;
  let sink = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    sink += round();
    count += pairs.length;
    now = performance.now();
  }
  if (Number.isNaN(sink)) throw new Error('unreachable');
  return (count * 1000) / (now - start);
}

function versionsSection(): { figures: Figure[]; raw: unknown } {
  progress('versions: comparators over the real vector pairs (about 1 s per scheme)');
  const rows = benchVersions();
  const floors = new Map<string, number>();
  for (const [scheme, file] of Object.entries(VERSION_FILES)) {
    floors.set(scheme, stringCompareRate(readTsvVectors(file).map((p) => [p.a, p.b] as const), 300));
  }
  const figures = rows.map((row) => {
    const scheme = row.scheme.replace(/\+parse$/, '');
    const floor = floors.get(scheme);
    return figure(
      'versions',
      `${row.scheme} comparisons (${VERSION_FILES[scheme] ?? '?'})`,
      row.comparisonsPerSecond,
      '/s',
      floor === undefined ? null : { name: 'JS string < on the same pairs', value: floor },
    );
  });
  return { figures, raw: { schemes: rows, stringCompareFloor: Object.fromEntries(floors) } };
}

// ---------------------------------------------------------------------------------------
// 3. feeds (issue 3)

const ALMA = ['almalinux8.osv.jsonl.gz', 'almalinux9.osv.jsonl.gz', 'almalinux10.osv.jsonl.gz'];

async function feedsSection(dataDir: string): Promise<{ figures: Figure[]; raw: unknown }> {
  const paths = ALMA.map((f) => join(dataDir, 'osv', f));
  const importRuns: number[] = [];
  const reimportRuns: number[] = [];
  let advisories = 0;
  let duplicates = 0;
  let dbBytes = 0;
  // Two rounds of baseline and parse-only (benchFeedParse: best of 3 each) then an import into
  // a fresh database; the best run of each counts, and the baseline is measured next to the
  // imports, so a burst of load from the machine's other users hits both.
  const parses: { parseMs: number; baselineMs: number; advisories: number }[] = [];
  for (let i = 0; i < 2; i++) {
    progress(`feeds: gunzip + JSON.parse baseline and parse only (${i + 1}/2)`);
    parses.push(await benchFeedParse(dataDir));
    progress(`feeds: import into a fresh SQLite database (${i + 1}/2), then re-import unchanged`);
    const dir = mkdtempSync(join(tmpdir(), 'pw-bench-feeds-'));
    try {
      const dbPath = join(dir, 'collector.db');
      const db = openDatabase(dbPath);
      try {
        const store = storeOn(db).async.advisories;
        let t = performance.now();
        let added = 0;
        let records = 0;
        for (const p of paths) {
          const r = (await importFeedPath(store, p)).advisories;
          added += r.added;
          records += r.added + r.updated + r.unchanged;
        }
        importRuns.push(performance.now() - t);
        t = performance.now();
        let unchanged = 0;
        for (const p of paths) {
          const r = await importFeedPath(store, p);
          if (r.advisories.added + r.advisories.updated !== 0) throw new Error(`re-import of ${p} changed ${r.advisories.added + r.advisories.updated} advisories`);
          unchanged += r.advisories.unchanged;
        }
        reimportRuns.push(performance.now() - t);
        if (records !== unchanged) throw new Error(`import read ${records} advisories, the re-import found ${unchanged} unchanged`);
        advisories = added;
        duplicates = records - added;
        await new StoreInspection(new SqliteDatabase(db)).truncateWal();
        dbBytes = statSync(dbPath).size;
      } finally {
        db.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const parse = {
    parseMs: Math.min(...parses.map((p) => p.parseMs)),
    baselineMs: Math.min(...parses.map((p) => p.baselineMs)),
    advisories: parses[0]?.advisories ?? 0,
  };
  const importMs = Math.min(...importRuns);
  const reimportMs = Math.min(...reimportRuns);
  const baseline = { name: `gunzip + JSON.parse (${parse.advisories} lines)`, value: parse.baselineMs };
  const figures = [
    figure('feeds', `import 3 AlmaLinux OSV files, fresh DB (${advisories} advisories)`, importMs, 'ms', baseline, {
      aim: within(3),
      note: `importFeedPath into a temp SQLite DB (WAL): ${advisories} stored, ${duplicates} ids repeated in a later file; ${(dbBytes / 1048576).toFixed(1)} MB on disk`,
    }),
    figure('feeds', 're-import the same files (all unchanged)', reimportMs, 'ms', baseline),
    figure('feeds', 'parse only (readFeedFile + parseOsv)', parse.parseMs, 'ms', baseline),
  ];
  return { figures, raw: { ...parse, importMs, reimportMs, importRuns, reimportRuns, advisories, duplicates, dbBytes } };
}

// ---------------------------------------------------------------------------------------
// 4. correlate (issue 3)

const INVENTORY_SIZE = 2000;
const ECOSYSTEM = 'Debian:11';
const NOW = new Date('2026-11-26T18:00:00.000Z');

function readGz(path: string): string {
  return gunzipSync(readFileSync(path)).toString('utf8');
}

/** Package, Version, Architecture and Source (`name` or `name (version)`) of an apt Packages index. */
function parsePackagesIndex(text: string): Package[] {
  const out: Package[] = [];
  for (const stanza of text.split(/\n\n+/)) {
    const field = (name: string): string | undefined => new RegExp(`^${name}: *(.*)$`, 'm').exec(stanza)?.[1]?.trim();
    const name = field('Package');
    const version = field('Version');
    const arch = field('Architecture');
    if (name === undefined || version === undefined || arch === undefined) continue;
    const src = /^(\S+)(?: \((\S+)\))?$/.exec(field('Source') ?? '');
    out.push({ name, version, arch, source: src?.[1] ?? name, sourceVersion: src?.[2] ?? version });
  }
  return out;
}

/** Kernel binaries (`linux`, `linux-6.12`, `linux-signed-amd64` builds): a host runs one kernel, not a hundred. */
const KERNEL_BINARY = (p: Package): boolean => p.name.startsWith('linux-') || /^linux(-|$)/.test(p.source);

interface BenchInventory {
  inv: Inventory;
  fromHost: number;
  fromIndex: number;
  kernel: string;
}

/**
 * The real Debian 12 host's packages, Debian 12's newest signed kernel from the
 * bookworm-security index as the running one (the host is a container and has none), then packages of the real bookworm-security index until INVENTORY_SIZE distinct
 * names, labelled Debian:11 so the DSA/DLA bullseye ranges are what it is matched against.
 */
function buildInventory(dataDir: string): BenchInventory {
  const host = parseDpkgStatus(readGz(join(dataDir, 'host-inventory', 'debian12-host.dpkg-status.gz')));
  const index = parsePackagesIndex(readGz(join(dataDir, 'host-inventory', 'bookworm-security_main_amd64_Packages.gz')));
  const kernels = index.filter((p) => /^linux-image-\d+\.\d+\.\d+-\d+-amd64$/.test(p.name));
  const kernel = kernels.reduce<Package | undefined>((a, p) => (a === undefined || compareDebVersions(parseDebVersion(p.version), parseDebVersion(a.version)) > 0 ? p : a), undefined);
  if (kernel === undefined) throw new Error('no linux-image-*-amd64 in the bookworm-security index');
  const packages: Package[] = [];
  const names = new Set<string>();
  const add = (p: Package): void => {
    if (packages.length < INVENTORY_SIZE && !names.has(p.name)) {
      names.add(p.name);
      packages.push(p);
    }
  };
  for (const p of host) add(p);
  const fromHost = packages.length;
  add(kernel);
  for (const p of index) if (!KERNEL_BINARY(p)) add(p);
  if (packages.length < INVENTORY_SIZE) throw new Error(`only ${packages.length} distinct packages in the real data, wanted ${INVENTORY_SIZE}`);
  const release = kernel.name.slice('linux-image-'.length);
  const inv: Inventory = {
    schema: INVENTORY_SCHEMA,
    collectedAt: NOW.toISOString(),
    agentVersion: '0.1.0',
    host: {
      hostname: 'bench-1',
      machineId: null,
      bootId: null,
      arch: 'x86_64',
      uptimeSeconds: 86_400,
      os: { id: 'debian', idLike: [], versionId: '11', codename: 'bullseye', prettyName: 'Debian GNU/Linux 11 (bullseye)' },
      ecosystem: ECOSYSTEM,
      hardware: { cpu: null, cores: null, memoryBytes: null, virtualization: null, model: null },
    },
    packageFormat: 'deb',
    packages,
    kernel: {
      release,
      version: `#1 SMP PREEMPT_DYNAMIC Debian ${kernel.sourceVersion}`,
      package: { name: kernel.name, source: kernel.source, version: kernel.version },
      installed: [{ name: kernel.name, version: kernel.version, release }],
      livepatch: { provider: 'none', active: false, effectiveVersion: null, fixedCves: [], modules: [] },
    },
    reboot: { required: false, reasons: [], services: [] },
    warnings: [],
  };
  return { inv: InventorySchema.parse(inv), fromHost, fromIndex: packages.length - fromHost - 1, kernel: `${kernel.name} ${kernel.version}` };
}

async function loadAllAdvisories(dataDir: string): Promise<{ advisories: Advisory[]; kev: Map<string, KevInfo>; files: number }> {
  const alpine = readdirSync(join(dataDir, 'alpine-secdb'))
    .filter((f) => f.endsWith('.json.gz'))
    .sort()
    .map((f) => join(dataDir, 'alpine-secdb', f));
  // One path per file: a directory feed reads `*.json` only, and the secdb files are gzipped.
  const paths = [...ALMA.map((f) => join(dataDir, 'osv', f)), ...alpine, join(dataDir, 'debian', 'DSA-list.gz'), join(dataDir, 'debian', 'DLA-list.gz')];
  const advisories: Advisory[] = [];
  for (const p of paths) for (const a of (await parseFeedPath(p)).advisories) advisories.push(a);
  const kev = new Map<string, KevInfo>();
  for (const k of (await parseFeedPath(join(dataDir, 'kev', 'known_exploited_vulnerabilities.json.gz'))).kev) kev.set(k.cve, { dueDate: k.dueDate });
  return { advisories, kev, files: paths.length };
}

/** Median ms of `fn` over `runs` calls; `before` runs ahead of each, outside the clock. */
function timeMs(runs: number, fn: () => void, before?: () => void): number {
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    before?.();
    const t = performance.now();
    fn();
    ms.push(performance.now() - t);
  }
  return median(ms);
}

async function correlateSection(dataDir: string): Promise<{ figures: Figure[]; raw: unknown }> {
  progress('correlate: loading every advisory (AlmaLinux OSV, Alpine secdb, Debian DSA/DLA lists) and KEV');
  let t = performance.now();
  const { advisories, kev, files } = await loadAllAdvisories(dataDir);
  const loadMs = performance.now() - t;
  const built = buildInventory(dataDir);
  const { inv } = built;
  const ctx = { policy: DEFAULT_POLICY, now: NOW, kev };

  // Cold: a new Correlator per run (its match cache is empty); the index is built outside the clock.
  progress('correlate: cold (a new Correlator per run), miss, warm, rematch after apply(), 1,000 hosts');
  const indexMs: number[] = [];
  const coldMs: number[] = [];
  let correlator = new Correlator();
  let findings = 0;
  for (let i = 0; i < 8; i++) {
    correlator = new Correlator();
    t = performance.now();
    correlator.apply(advisories);
    indexMs.push(performance.now() - t);
    t = performance.now();
    findings = correlator.findings(inv, ctx).findings.length;
    // The first run also pays for compiling the matching code; a running collector has done that.
    if (i > 0) coldMs.push(performance.now() - t);
  }
  const plan = planInventory(inv);
  const sourcesWithAdvisories = new Set(inv.packages.filter((p) => correlator.index.lookup(ECOSYSTEM, p.source).length > 0).map((p) => p.source)).size;

  // Miss: inventories the long-running Correlator has not seen (the kernel build string
  // differs, so the content hash does), matched on warm code and a warm index.
  let variant = 0;
  const missMs = timeMs(30, () => {
    variant++;
    correlator.findings({ ...inv, kernel: { ...inv.kernel, version: `${inv.kernel.version} variant ${variant}` } }, ctx);
  });

  const warmMs = timeMs(50, () => correlator.findings(inv, ctx));

  // A small changed set: ten bullseye advisories for source packages this host has, as a
  // feed update brings them (a new modified date). apply() must drop the cached pairs they
  // touch, and the next findings() must match those again and nothing else.
  const sources = new Set(inv.packages.map((p) => p.source));
  const touching = advisories.filter((a) => a.affected.some((x) => x.ecosystem === ECOSYSTEM && sources.has(x.package))).slice(-10);
  const touchedKeys = new Set(touching.flatMap((a) => a.affected.map((x) => indexKey(x.ecosystem, x.package))));
  const expectedUnits = plan.units.filter((u) => u.kernel || touchedKeys.has(u.key)).length;
  let generation = 0;
  let unitsBefore = 0;
  const rematchUnits: number[] = [];
  const rematchMs = timeMs(
    20,
    () => {
      correlator.findings(inv, ctx);
      rematchUnits.push(correlator.stats.unitsMatched - unitsBefore);
    },
    () => {
      generation++;
      correlator.apply(touching.map((a) => ({ ...a, modified: new Date(NOW.getTime() + generation * 1000).toISOString() })));
      unitsBefore = correlator.stats.unitsMatched;
    },
  );
  const redone = median(rematchUnits);

  // The floor: one Map.get per installed package, the least any correlation can do.
  const floorMap = new Map<string, number>();
  for (const p of inv.packages) if (correlator.index.lookup(ECOSYSTEM, p.source).length > 0) floorMap.set(p.source, 1);
  const floorRound = (): number => {
    let n = 0;
    for (const p of inv.packages) n += floorMap.get(p.source) ?? 0;
    return n;
  };
  const ROUNDS = 1000;
  let sink = 0;
  const floorMs =
    timeMs(9, () => {
      for (let i = 0; i < ROUNDS; i++) sink += floorRound();
    }) / ROUNDS;
  if (Number.isNaN(sink)) throw new Error('unreachable');

  // 1,000 hosts built from one image: the same packages, each with its own identity.
  const HOSTS = 1000;
  const hosts = Array.from({ length: HOSTS }, (_, i) => ({
    ...inv,
    collectedAt: new Date(NOW.getTime() + i).toISOString(),
    host: { ...inv.host, hostname: `web-${i}`, machineId: i.toString(16).padStart(32, '0') },
  }));
  const hitsBefore = correlator.stats.hits;
  t = performance.now();
  let fleetFindings = 0;
  for (const h of hosts) fleetFindings += correlator.findings(h, ctx).findings.length;
  const fleetMs = performance.now() - t;
  const fleetHits = correlator.stats.hits - hitsBefore;

  const floor = { name: `Map.get per package (${inv.packages.length})`, value: floorMs };
  const stale =
    redone < expectedUnits
      ? `only ${redone} of the ${expectedUnits} units the changed advisories touch were matched again: apply() left stale cached matches, so this timed a cache hit, not a rematch`
      : null;
  const figures = [
    figure('correlate', `cold: first findings() on a new Correlator (${inv.packages.length} packages)`, median(coldMs), 'ms', floor, {
      aim: under(5, 'ms'),
      note: `${plan.units.length} units matched, ${findings} findings; index of ${correlator.index.size} advisories built in ${fmtValue(median(indexMs), 'ms')} (outside the clock)`,
    }),
    figure('correlate', 'miss: an unseen inventory on a running Correlator', missMs, 'ms', floor, { aim: under(5, 'ms') }),
    figure('correlate', 'warm: the same inventory again (cache hit)', warmMs, 'ms', floor, { aim: under(5, 'ms') }),
    figure('correlate', `rematch after apply() of ${touching.length} changed advisories`, rematchMs, 'ms', floor, {
      aim: under(5, 'ms'),
      note: `${redone} of ${plan.units.length} units matched again per run; ${expectedUnits} expected (the changed pairs and the kernel)`,
      invalid: stale,
    }),
    figure(
      'correlate',
      `1,000 hosts sharing one inventory: findings() documents`,
      (HOSTS * 1000) / fleetMs,
      '/s',
      { name: 'Map.get floor, per host', value: 1000 / floorMs },
      {
        note: `${fleetFindings} findings in all; ${fleetHits} cache hits of ${HOSTS}`,
        invalid: fleetHits === HOSTS ? null : `${HOSTS} identical inventories made ${fleetHits} cache hits`,
      },
    ),
  ];
  const intro =
    `inventory: ${built.fromHost} packages of the real Debian 12 host (dpkg status) + ${built.kernel} as the running kernel + ` +
    `${built.fromIndex} from the real bookworm-security Packages index (kernel binaries left out) = ${inv.packages.length} distinct, ` +
    `labelled ${ECOSYSTEM} so the DSA/DLA [bullseye] ranges are exercised (${sourcesWithAdvisories} of its source packages have ${ECOSYSTEM} advisories; ` +
    `${findings} findings, as every bookworm version is newer than the bullseye fixes); ` +
    `${advisories.length} advisories from ${files} files (+ ${kev.size} KEV entries) loaded in ${fmtValue(loadMs, 'ms')}`;
  const raw = {
    intro,
    inventory: { packages: inv.packages.length, fromHost: built.fromHost, fromBookwormSecurity: built.fromIndex, kernel: built.kernel, ecosystem: ECOSYSTEM, units: plan.units.length, sourcesWithAdvisories },
    advisories: { count: advisories.length, files, loadMs, indexed: correlator.index.size, kev: kev.size },
    findings,
    indexMs,
    coldMs,
    missMs,
    warmMs,
    rematch: { ms: rematchMs, unitsRedone: rematchUnits, unitsExpected: expectedUnits, changedAdvisories: touching.map((a) => a.id) },
    floorMs,
    fleet: { hosts: HOSTS, ms: fleetMs, findings: fleetFindings, cacheHits: fleetHits },
  };
  return { figures, raw };
}

// ---------------------------------------------------------------------------------------
// 5. fleet (issue 4)

const FLEET_AIM = { agents: 10_000, rssMb: 1500, fullPerSecond: 1000, unchangedPerSecond: 20_000 };

async function fleetSection(dataDir: string, agents: number): Promise<{ figures: Figure[]; raw: unknown }> {
  const base = buildInventory(dataDir).inv;
  const cpuProfDir = process.env.PW_BENCH_FLEET_CPU_PROF ?? null;
  const collectorJs = process.env.PW_BENCH_FLEET_COLLECTOR ?? null;
  const r = await benchFleet({ dataDir, base, agents, cpuProfDir, collectorJs, progress });
  const cpu = (c: { collector: number; simulator: number }): string => `CPU: collector ${(c.collector * 100).toFixed(0)}%, simulator ${(c.simulator * 100).toFixed(0)}% of a core`;
  const invalid = (problems: readonly string[]): string | null => (problems.length === 0 ? null : problems.join('; '));
  const connectFloor = { name: `ws connect + 1 round trip, echo server (${r.baselines.echoConnect.count})`, value: r.baselines.echoConnect.perSecond };
  const idle = { name: 'the same collector idle, no agent', value: r.rssMb.idle };
  const enoughAgents = r.connect.connected >= FLEET_AIM.agents;
  const figures = [
    figure('fleet', `enrollments (new key, enroll, commit)`, r.enroll.perSecond, '/s', connectFloor, {
      note: `${r.enroll.count} in ${fmtValue(r.enroll.ms, 'ms')}; ${cpu(r.enroll.cpu)}; ed25519 keys made here: ${fmtValue(r.baselines.keygenPerSecond, '/s')}`,
      invalid: invalid(r.enroll.problems),
    }),
    figure('fleet', 'connects with a signed hello, kept open', r.connect.perSecond, '/s', connectFloor, {
      note: `${r.connect.count} in ${fmtValue(r.connect.ms, 'ms')}; ${cpu(r.connect.cpu)}`,
      invalid: invalid(r.connect.problems),
    }),
    figure('fleet', 'connected agents', r.connect.connected, 'count', null, {
      aim: atLeast(FLEET_AIM.agents, 'count'),
      note: `the collector's /metrics says ${r.metrics.connected ?? '?'}; --fleet-agents ${r.agents}`,
    }),
    figure('fleet', `collector RSS, ${r.connect.connected} agents connected`, r.rssMb.connected, 'MB', idle, {
      aim: (v) => ({ text: `< ${FLEET_AIM.rssMb} MB at ${FLEET_AIM.agents} agents`, met: v < FLEET_AIM.rssMb && enoughAgents }),
      note: `${(((r.rssMb.connected - r.rssMb.idle) * 1024) / Math.max(1, r.connect.connected)).toFixed(1)} KB per connected agent`,
    }),
    figure('fleet', `full reports, ${r.packages} packages in the frame (the fleet's ${r.variants} sets), acked`, r.full.perSecond, '/s', { name: 'JSON.parse + JSON.stringify of one, here', value: r.baselines.jsonRoundTripPerSecond }, {
      aim: atLeast(FLEET_AIM.fullPerSecond, '/s'),
      note: `${r.full.count} reports (${(r.frameBytes.full / 1024).toFixed(0)} KB frames) in ${fmtValue(r.full.ms, 'ms')}, ${r.full.window} in flight; ack latency p50 ${fmtValue(r.full.latencyMs.p50, 'ms')} p99 ${fmtValue(r.full.latencyMs.p99, 'ms')}; ${cpu(r.full.cpu)}; RSS after ${fmtValue(r.rssMb.afterFull, 'MB')}`,
      invalid: invalid(r.full.problems),
    }),
    figure('fleet', `full reports, ${r.packages} packages in the frame, each a set the collector never saw`, r.newSets.perSecond, '/s', { name: 'JSON.parse + JSON.stringify of one, here', value: r.baselines.jsonRoundTripPerSecond }, {
      note: `${r.newSets.count} reports in ${fmtValue(r.newSets.ms, 'ms')}, ${r.newSets.window} in flight; ack latency p50 ${fmtValue(r.newSets.latencyMs.p50, 'ms')} p99 ${fmtValue(r.newSets.latencyMs.p99, 'ms')}; ${cpu(r.newSets.cpu)}: the worst case, every report parsed, validated, hashed and stored whole`,
      invalid: invalid(r.newSets.problems),
    }),
    figure('fleet', `changed reports naming a package set the collector holds (${r.packages} packages), acked`, r.byReference.perSecond, '/s', { name: 'full reports with the packages in the frame, above', value: r.full.perSecond }, {
      aim: atLeast(FLEET_AIM.fullPerSecond, '/s'),
      note: `${r.byReference.count} reports (${r.frameBytes.byReference} B frames) in ${fmtValue(r.byReference.ms, 'ms')}, ${r.byReference.window} in flight; ack latency p50 ${fmtValue(r.byReference.latencyMs.p50, 'ms')} p99 ${fmtValue(r.byReference.latencyMs.p99, 'ms')}; ${cpu(r.byReference.cpu)}`,
      invalid: invalid(r.byReference.problems),
    }),
    figure('fleet', 'unchanged reports, acked', r.unchanged.perSecond, '/s', { name: `ws echo round trips, echo server (${r.baselines.echo.connections} conns)`, value: r.baselines.echo.perSecond }, {
      aim: atLeast(FLEET_AIM.unchangedPerSecond, '/s'),
      note: `${r.unchanged.count} reports in ${fmtValue(r.unchanged.ms, 'ms')}, ${r.unchanged.window} in flight; ack latency p50 ${fmtValue(r.unchanged.latencyMs.p50, 'ms')} p99 ${fmtValue(r.unchanged.latencyMs.p99, 'ms')}; ${cpu(r.unchanged.cpu)}`,
      invalid: invalid(r.unchanged.problems),
    }),
    figure('fleet', 'collector peak RSS (VmHWM)', r.rssMb.peak, 'MB', idle, {
      aim: (v) => ({ text: `< ${FLEET_AIM.rssMb} MB at ${FLEET_AIM.agents} agents`, met: v < FLEET_AIM.rssMb && enoughAgents }),
      note: `after the unchanged reports: RSS ${fmtValue(r.rssMb.afterUnchanged, 'MB')}`,
      invalid: invalid(r.problems.filter((p) => !/^(enroll|connect|full|new sets|by reference|unchanged): /.test(p))),
    }),
  ];
  const s = r.store;
  const intro =
    `${r.agents} simulated agents in this process, one ws connection each (frames written from a buffer pool with masking key 0; the collector unmasks them as any client's), against ${r.collector} serve in its own process on a temp SQLite DB holding the real Debian DSA and DLA lists and KEV, so every stored report is correlated` +
    `${r.build === null ? '' : ` (${r.build})`}; ${r.packages}-package inventories (the correlate inventory, relabelled ${FLEET_ECOSYSTEM} so every report is matched against the lists' bullseye ranges) in ${r.variants} package sets ` +
    `(the host's real pending upgrades applied to 32 depths), each agent with its own hostname, machine-id and boot-id; ` +
    `store afterwards: ${s === null ? '?' : `${s.agents} agents, ${s.hosts} hosts, ${s.reports} reports, ${s.contents} inventory contents for ${s.expectedContents} distinct package sets; ${s.advisories} real advisories loaded (Debian DSA/DLA lists), ${s.openFindings} open findings over ${s.hostsWithFindings} hosts`}; ` +
    `correlation caught up after each report phase in ${Object.entries(r.correlationCatchUpMs).map(([k, v]) => `${k} ${v === null ? 'never' : fmtValue(v, 'ms')}`).join(', ')} (measured apart from the phases); ` +
    `collector log: ${r.collectorLog.lines} lines, ${r.collectorLog.warnings} warnings, ${r.collectorLog.errors} errors, ${r.collectorLog.exit} on SIGTERM` +
    (r.cpuProfile === null ? '' : `; CPU profile ${r.cpuProfile}`);
  return { figures, raw: { intro, ...r } };
}

// ---------------------------------------------------------------------------------------
// output

function fmtValue(v: number, unit: Unit): string {
  if (!Number.isFinite(v)) return `? ${unit}`;
  if (unit === 'count') return v.toFixed(0);
  if (unit === '/s') {
    if (v >= 1e6) return `${(v / 1e6).toFixed(2)} M/s`;
    if (v >= 1e3) return `${(v / 1e3).toFixed(1)} k/s`;
    return `${v.toFixed(0)} /s`;
  }
  const digits = v < 0.01 ? 4 : v < 1 ? 3 : v < 100 ? 1 : 0;
  return `${v.toFixed(digits)} ${unit}`;
}

function table(figures: readonly Figure[], intros: readonly string[]): string {
  const head = ['section', 'figure', 'value', 'baseline', 'ratio', 'aim', 'met'];
  const rows = figures.map((f) => [
    f.section,
    f.name,
    fmtValue(f.value, f.unit),
    f.baseline === null ? '' : `${fmtValue(f.baseline.value, f.unit)}  ${f.baseline.name}`,
    f.ratio === null ? '' : `${f.ratio < 10 ? f.ratio.toFixed(2) : f.ratio.toFixed(0)}x`,
    f.aim?.text ?? '',
    f.invalid !== null ? 'INVALID' : f.aim === null ? '' : f.aim.met ? 'yes' : 'NO',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === 2 || i === 4 ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const r of rows) out.push(line(r));
  const notes = figures.filter((f) => f.note !== null).map((f) => `  ${f.section}: ${f.name}: ${f.note ?? ''}`);
  if (notes.length > 0) out.push('', 'notes:', ...notes);
  const invalid = figures.filter((f) => f.invalid !== null).map((f) => `  ${f.section}: ${f.name}: ${f.invalid ?? ''}`);
  if (invalid.length > 0) out.push('', 'INVALID figures (a self-check failed):', ...invalid);
  if (intros.length > 0) out.push('', ...intros.map((s) => `  ${s}`));
  const missed = figures.filter((f) => (f.aim !== null && !f.aim.met) || f.invalid !== null);
  out.push('', missed.length === 0 ? 'every aim met' : `aims missed: ${missed.map((f) => `${f.section}: ${f.name}`).join('; ')}`);
  return out.join('\n') + '\n';
}

const USAGE = `usage: npm run bench -- [--only ${SECTIONS.join(',')}] [--json] [--data DIR] [--fleet-agents N]
  PW_BENCH_FLEET_CPU_PROF=DIR: the fleet's collector writes a V8 CPU profile (node --cpu-prof) into DIR
  PW_BENCH_FLEET_COLLECTOR=FILE: run that collector build instead of dist/collector.js (not rebuilt)
  PW_BENCH_CORRELATE_SIZES=N,N,...: inventory sizes of the correlate-scale section (default 10000,100000,200000)
  PW_BENCH_FANOUT=HOSTS,CONTENTS: size of the fanout section (default 10000,2000)\n  PW_BENCH_STORE=AGENTS,CONTENTS,ROUNDS: size of the store-hotpaths section (default 1000,40,10)\n  PW_BENCH_SCALE=N,N,...: fleet sizes of the scale section, agents driven from worker processes against one SQLite collector (sizes it can hold) and 3 PostgreSQL replicas (default 1000,10000)\n`;

function parseCommandLine(): { only?: string; json: boolean; data: string; help: boolean; 'fleet-agents': string } | null {
  try {
    return parseArgs({
      options: {
        only: { type: 'string' },
        json: { type: 'boolean', default: false },
        data: { type: 'string', default: DATA_DIR },
        'fleet-agents': { type: 'string', default: String(FLEET_AIM.agents) },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n${USAGE}`);
    return null;
  }
}

async function main(): Promise<void> {
  const values = parseCommandLine();
  if (values === null) {
    process.exitCode = 2;
    return;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const only = values.only === undefined ? [...SECTIONS] : values.only.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = only.filter((s) => !(SECTIONS as readonly string[]).includes(s));
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown section ${unknown.join(', ')}: choose from ${SECTIONS.join(', ')}\n`);
    process.exitCode = 2;
    return;
  }
  const fleetAgents = Number(values['fleet-agents']);
  if (!/^\d{1,6}$/.test(values['fleet-agents']) || fleetAgents < 1) {
    process.stderr.write(`bench: --fleet-agents ${values['fleet-agents']}: expected a whole number from 1\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const selected = new Set(only as Section[]);
  const dataDir = values.data;
  const started = new Date();
  const t0 = performance.now();
  const figures: Figure[] = [];
  const raw: Record<string, unknown> = {};
  const intros: string[] = [];
  for (const section of SECTIONS) {
    if (!selected.has(section)) continue;
    const t = performance.now();
    const r =
      section === 'agent'
        ? await agentSection()
        : section === 'versions'
          ? versionsSection()
          : section === 'feeds'
            ? await feedsSection(dataDir)
            : section === 'correlate'
              ? await correlateSection(dataDir)
              : section === 'preauth'
                ? await preauthSection(figure, progress)
                : section === 'correlate-scale'
                  ? await correlateScaleSection(figure, progress, dataDir)
                  : section === 'fanout'
                    ? await fanOutSection(figure, progress, dataDir)
                    : section === 'store-hotpaths'
                      ? await storeHotPathsSection(figure, progress)
                      : section === 'scale'
                        ? await scaleSection(figure, progress, dataDir, buildInventory(dataDir).inv)
                        : await fleetSection(dataDir, fleetAgents);
    figures.push(...r.figures);
    raw[section] = r.raw;
    const intro = (r.raw as { intro?: unknown }).intro;
    if (typeof intro === 'string') intros.push(`${section}: ${intro}`);
    progress(`${section} done in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
  const machine = `node ${process.version}, ${process.platform} ${process.arch}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'})`;
  const totalS = (performance.now() - t0) / 1000;
  if (values.json) {
    process.stdout.write(JSON.stringify({ schema: 'patchwarden.bench/1', startedAt: started.toISOString(), machine, totalSeconds: totalS, figures, raw }, null, 2) + '\n');
  } else {
    process.stdout.write(`patchwarden bench ${started.toISOString()}  ${machine}\nratio = our cost / the baseline's cost, measured in the same run (1.00x = the floor)\n\n`);
    process.stdout.write(table(figures, intros));
    process.stdout.write(`total ${totalS.toFixed(1)} s\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
