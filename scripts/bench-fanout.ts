/**
 * The fan-out of a feed change over a fleet for `npm run bench` (issue 11, part 5): a real
 * SQLite collector store with HOSTS hosts sharing CONTENTS distinct inventories (the real
 * RHEL 9.5 image of ../shared/data, each content a different subset of eleven of its
 * packages left out: a fleet drifting from one image), the real AlmaLinux 9 OSV advisories
 * loaded (about 250 findings per host) and every host correlated; then a feed import that
 * changes 50 advisories (25 arrive, 25 get a new fixed version), as a CLI `feed import`
 * writes it, and the serving collector's path (HostFindings.followStore, then its
 * slices) until every host's stored findings, history and counts are current.
 *
 * Baseline from the same run: one pass reading every host's findings row (its counts and
 * the content its history is laid over): the least any re-judging of the whole fleet must
 * touch. Self-checks: every host's counts equal a full correlation's for a sample of hosts,
 * and no host was correlated whole.
 *
 * PW_BENCH_FANOUT=HOSTS,CONTENTS sets the size (default 100000,2000).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DEFAULT_POLICY } from '../collector/domain/correlate/policy.ts';
import { isActionable } from '../collector/domain/correlate/status.ts';
import { importFeedPath } from '../collector/services/feeds/store-import.ts';
import { HostFindings } from '../collector/services/findings/host-findings.ts';
import { createLogger } from '../collector/logger.ts';
import { hostInventory } from '../shared/testing/rollout-bench.ts';
import { WalCheckpointer } from '../collector/store/checkpointer.ts';
import { openDatabase } from '../collector/store/db.ts';
import type { IngestItem } from '../collector/store/reports.ts';
import { storeOn } from '../collector/store/store.ts';
import { inventoryHash, packageSetRef } from '../shared/inventory-hash.ts';
import type { Inventory } from '../shared/protocol.ts';
import { generateKeyPair } from '../shared/signing.ts';

/** bench.ts's figure(), passed in (bench.ts runs its main on import). */
export type MakeFanOutFigure<F> = (
  section: 'fanout',
  name: string,
  value: number,
  unit: 'ms' | 'MB' | 'count',
  baseline: { name: string; value: number } | null,
  options?: { aim?: (value: number, ratio: number | null) => { text: string; met: boolean }; note?: string; invalid?: string | null },
) => F;

const NOW = new Date('2026-11-26T18:00:00.000Z');
/** Packages whose presence encodes a content's number in binary: 2^11 = 2,048 distinct sets. */
const DRIFT_BITS = 11;
const CHANGED = 50;
const AIM_MS = 10_000;

function sizeFromEnv(): { hosts: number; contents: number } {
  const text = process.env.PW_BENCH_FANOUT;
  if (text === undefined || text === '') return { hosts: 100_000, contents: 2000 };
  const [h, c] = text.split(',').map((s) => Number(s.trim()));
  if (h === undefined || c === undefined || !Number.isInteger(h) || !Number.isInteger(c) || c < 1 || h < c || c > 2 ** DRIFT_BITS) {
    throw new Error(`PW_BENCH_FANOUT=${text}: expected HOSTS,CONTENTS with CONTENTS from 1 to ${2 ** DRIFT_BITS} and HOSTS >= CONTENTS`);
  }
  return { hosts: h, contents: c };
}

/** The image with the packages of content `i`'s zero bits left out (never the kernel). */
function contentsOf(count: number): Inventory[] {
  const image = hostInventory({ hostname: 'image' });
  const droppable = image.packages.filter((p) => p.source !== 'kernel').map((p) => p.name);
  const step = Math.floor(droppable.length / DRIFT_BITS);
  const bits = Array.from({ length: DRIFT_BITS }, (_, b) => droppable[b * step] as string);
  const out: Inventory[] = [];
  for (let i = 0; i < count; i++) {
    const left = new Set(bits.filter((_, b) => ((i >> b) & 1) === 0));
    const inv = structuredClone(image);
    inv.packages = inv.packages.filter((p) => !left.has(p.name));
    out.push(inv);
  }
  return out;
}

function mb(bytes: number): number {
  return bytes / 1024 / 1024;
}

export async function fanOutSection<F>(figure: MakeFanOutFigure<F>, progress: (line: string) => void, dataDir: string): Promise<{ figures: F[]; raw: unknown }> {
  const { hosts: hostCount, contents: contentCount } = sizeFromEnv();
  const dir = mkdtempSync(join(tmpdir(), 'pw-bench-fanout-'));
  try {
    const path = join(dir, 'collector.db');
    const db = openDatabase(path);
    const store = storeOn(db);
    const fleet = store.async;
    const advisories = store.async.advisories;
    const logger = createLogger({ level: 'silent' });
    const hf = new HostFindings({ store: store.async, policy: DEFAULT_POLICY, logger, now: () => NOW });
    // As `serve` runs its store (collector/server.ts): WAL checkpoints on a worker thread, not inside the commits.
    const checkpointer = new WalCheckpointer(db, { path, logger });

    progress(`fanout: ${hostCount} hosts over ${contentCount} contents of the real RHEL 9.5 image`);
    const contents = contentsOf(contentCount).map((inv) => ({ inv, set: packageSetRef(inv.packages) }));
    const ids: string[] = [];
    const BATCH = 2000;
    for (let start = 0; start < hostCount; start += BATCH) {
      const items: IngestItem[] = [];
      for (let i = start; i < Math.min(hostCount, start + BATCH); i++) {
        const c = contents[i % contentCount] as (typeof contents)[number];
        const inv: Inventory = { ...c.inv, host: { ...c.inv.host, hostname: `host-${i}` } };
        const agentId = await fleet.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: inv.host.hostname, machineId: null, tokenId: null }, NOW);
        ids.push(agentId);
        items.push({ agentId, reportId: randomUUID(), hash: inventoryHash(inv, c.set.hash), inventory: inv, set: c.set });
      }
      await fleet.reports.ingestBatch(items, NOW);
    }

    // The feed before the change: every real record but the 25 that arrive with it.
    const lines = gunzipSync(readFileSync(join(dataDir, 'osv', 'almalinux9.osv.jsonl.gz')))
      .toString('utf8')
      .split('\n')
      .filter((l) => l.trim() !== '');
    const arriving = lines.slice(-CHANGED / 2);
    const before = lines.slice(0, -CHANGED / 2);
    const v1 = join(dir, 'alma9.osv.jsonl');
    writeFileSync(v1, before.join('\n') + '\n');
    await importFeedPath(advisories, v1, { name: 'alma9', now: NOW });
    await hf.load();
    progress(`fanout: correlating every host (the initial pass)`);
    let t = performance.now();
    await hf.scheduleAll(ids);
    await hf.drained();
    const initialMs = performance.now() - t;
    await hf.followStore(); // takes in the initial import's log rows (the hosts are current already)
    await hf.drained();
    const findingsPerHost = (await hf.findings(ids[0] as string))?.findings.length ?? 0;
    const inspect = store.async.inspection;
    const contentRows = await inspect.rows('content_findings');
    const hostRows = await inspect.rows('finding_history');

    // 25 loaded advisories that raise findings get a newer fixed version, as a feed update brings.
    const raised = new Set(await inspect.raisedAdvisories());
    const rewritten: string[] = [];
    for (const l of before.slice().reverse()) {
      if (rewritten.length === CHANGED / 2) break;
      const r = JSON.parse(l) as { id: string; modified: string; affected: { ranges: { events: Record<string, string>[] }[] }[] };
      if (!raised.has(r.id)) continue;
      for (const a of r.affected) for (const range of a.ranges) for (const e of range.events) if (typeof e.fixed === 'string') e.fixed = `${e.fixed}.1`;
      r.modified = '2026-11-26T12:00:00Z';
      rewritten.push(JSON.stringify(r));
    }
    const change = join(dir, 'alma9-update.osv.jsonl');
    writeFileSync(change, [...arriving, ...rewritten].join('\n') + '\n');

    progress('fanout: baseline (one pass reading every host’s findings row)');
    t = performance.now();
    let sum = 0;
    for await (const row of inspect.hostFindings()) sum += row.open + row.overdue + row.agentId.length + (row.content?.length ?? 0);
    const baselineMs = performance.now() - t;
    if (sum === 0) throw new Error('no host has findings');

    const stats = { ...hf.correlator.stats };
    const fannedBefore = hf.stats.fannedOut;
    const correlatedBefore = hf.stats.correlated;
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    let peakRss = rssBefore;
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }, 20);
    progress(`fanout: a feed import changing ${arriving.length + rewritten.length} advisories, until every host is current`);
    t = performance.now();
    await importFeedPath(advisories, change, { name: 'alma9-update', now: NOW });
    const importMs = performance.now() - t;
    const taken = await hf.followStore();
    const followMs = performance.now() - t - importMs;
    await hf.drained();
    const totalMs = performance.now() - t;
    clearInterval(sampler);
    peakRss = Math.max(peakRss, process.memoryUsage().rss);

    // Self-check: a sample of hosts' counts equal a full correlation's, every host was queued, none correlated whole.
    const fanned = hf.stats.fannedOut - fannedBefore;
    const whole = hf.stats.correlated - correlatedBefore;
    const wrong: string[] = [];
    for (let i = 0; i < hostCount; i += Math.max(1, Math.floor(hostCount / 50))) {
      const id = ids[i] as string;
      const doc = await hf.findings(id);
      const host = await fleet.hosts.get(id);
      const open = doc?.findings.filter((f) => isActionable(f.status)).length;
      const overdue = doc?.findings.filter((f) => f.overdue).length;
      if (host === undefined || host.openFindings !== open || host.overdueFindings !== overdue) wrong.push(`${id}: counts ${host?.openFindings}/${host?.overdueFindings}, a full correlation ${open}/${overdue}`);
    }
    const invalid =
      wrong.length > 0
        ? `counts differ from a full correlation: ${wrong.slice(0, 3).join('; ')}`
        : taken.hosts !== hostCount
          ? `${taken.hosts} of ${hostCount} hosts queued`
          : whole > 0
            ? `${whole} hosts were correlated whole`
            : null;
    const dbMb = mb(statSync(path).size);
    await hf.stop();
    await checkpointer.stop();
    db.close();
    const rematched = hf.correlator.stats.unitsMatched - stats.unitsMatched;
    const perHost = findingsPerHost;
    const figures = [
      figure('fanout', `feed change (${arriving.length + rewritten.length} advisories) until ${hostCount.toLocaleString('en')} hosts are current`, totalMs, 'ms', { name: `one pass reading every host's findings row (${hostCount.toLocaleString('en')})`, value: baselineMs }, {
        aim: (v) => ({ text: `< ${AIM_MS / 1000} s`, met: v < AIM_MS }),
        note: `import ${importMs.toFixed(0)} ms, followStore ${followMs.toFixed(0)} ms, fan-out ${(totalMs - importMs - followMs).toFixed(0)} ms; ${fanned} hosts re-judged, ${rematched} distinct units matched`,
        invalid,
      }),
      figure('fanout', 'RSS growth during the change', mb(peakRss - rssBefore), 'MB', null, { note: `RSS ${mb(rssBefore).toFixed(0)} MB before, peak ${mb(peakRss).toFixed(0)} MB` }),
      figure('fanout', `initial correlation of every host (${perHost.toFixed(0)} findings each)`, initialMs, 'ms', { name: 'the same baseline pass', value: baselineMs }, {
        note: `${(initialMs / hostCount).toFixed(2)} ms per host; store ${dbMb.toFixed(0)} MB: ${contentRows.toLocaleString('en')} content timeline rows, ${hostRows.toLocaleString('en')} host rows`,
      }),
    ];
    return { figures, raw: { hostCount, contentCount, contentRows, hostRows, findingsPerHost, initialMs, baselineMs, importMs, followMs, totalMs, fanned, rematched, rssBeforeMb: mb(rssBefore), peakRssMb: mb(peakRss), dbMb, taken } };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
