/**
 * Host-independent matching of one inventory against the advisory index: which
 * advisories apply to which installed package, and the kernel truth. The result depends
 * only on the inventory's content and the index, so identical inventories share it.
 */
import { advisoryKey, schemeForEcosystem } from '../../../shared/ecosystem.ts';
import { type FindingStatus, type Inventory, LIMITS } from '../../../shared/protocol.ts';
import { compareVersions } from '../../../shared/versions/index.ts';
import { type AdvisoryIndex, type AdvisoryMeta, type IndexEntry, indexKey, LIVEPATCH_PACKAGE } from './advisory-index.ts';
import { ubuntuKernelRelease, unameUnitName } from './ubuntu-kernel.ts';
import { kernelSources, unsignedKernelSource } from './kernel-sources.ts';
import type { AdvisoryRange } from '../feeds/types.ts';
import { type Compare, describeRange, matchRanges, type RangeMatch } from './ranges.ts';

export interface RawMatch {
  advisory: AdvisoryMeta;
  package: string;
  binaries: readonly string[];
  installed: string;
  fixed: string | null;
  status: Extract<FindingStatus, 'open' | 'unfixed' | 'fixed-pending-reboot' | 'mitigated-livepatch'>;
  why: string;
}

/** One installed version of an advisory key, with the binaries at that version. */
export interface InstalledVersion {
  version: string;
  /** Sorted, at most MAX_FINDING_BINARIES. */
  binaries: string[];
  /** Binaries installed at this version: more than `binaries` lists when over MAX_FINDING_BINARIES. */
  binaryCount: number;
  /**
   * Each listed binary's own version, in `binaries` order, only when one differs from the
   * source version (deb: gcc-defaults builds gcc 4:13.2.0-7ubuntu1): what binary-keyed
   * advisories (Ubuntu OVAL) compare with.
   */
  binaryVersions?: string[];
}

/**
 * One unit of matching: an advisory key (source package, rpm, origin) with its installed
 * versions. Nearly always one version; a half-finished upgrade or multi-arch leaves two or
 * three, and a finding is per (advisory, package) whatever their number (as the host's
 * history keys it), so an inventory with thousands of versions of one package costs a
 * sort and a binary search per advisory, not a match per version.
 */
export interface MatchUnit {
  key: string;
  package: string;
  versions: InstalledVersion[];
  kernel: boolean;
  /** The minor-release stream the host is held at (see releaseStream), whose entries decide over mainline's. */
  stream?: string;
}

/**
 * The advisory ecosystem of the minor-release stream a host is held at (`Red Hat:9.4` for a
 * RHEL 9 host on 9.4 EUS, `Rocky Linux:9.4` for CIQ's LTS), or null for a mainline host.
 * A CSAF publisher names such a stream's fixes under it (collector/domain/feeds/csaf.ts): an EUS
 * build is older than mainline's fix of the same CVE, so judging a held host by mainline
 * flags every EUS fix, and judging a mainline host by EUS builds passes it as clean.
 */
export function releaseStream(inv: Pick<Inventory, 'host'>): string | null {
  const { ecosystem, releasePin } = inv.host;
  if (ecosystem === null || releasePin === undefined || schemeForEcosystem(ecosystem) !== 'rpm') return null;
  const m = /^(.+):(\d+)$/.exec(ecosystem);
  if (m === null || releasePin.split('.')[0] !== m[2]) return null;
  return `${m[1] ?? ''}:${releasePin}`;
}

/**
 * The entries that judge a host held at `stream`: the stream's own, and mainline's only for
 * CVEs the stream says nothing about (a fix the stream has not published yet must still
 * show: the host is affected, and mainline's fix is the only one known).
 */
function streamEntries(index: AdvisoryIndex, ecosystem: string, stream: string, pkg: string): { entry: IndexEntry; ecosystem: string }[] {
  const own = index.lookup(stream, pkg);
  const main = index.lookup(ecosystem, pkg);
  const covered = new Set(own.flatMap((e) => e.advisory.cves));
  const out = own.map((entry) => ({ entry, ecosystem: stream }));
  for (const entry of main) if (entry.advisory.cves.length === 0 || !entry.advisory.cves.every((c) => covered.has(c))) out.push({ entry, ecosystem });
  return out;
}

export interface MatchPlan {
  ecosystem: string | null;
  units: MatchUnit[];
  kernelManaged: boolean;
  warnings: string[];
}

const RPM_KERNEL_NAMES = ['kernel-core', 'kernel'];

/**
 * Binaries a finding names, at most: the findings schema's list limit. A unit's list is
 * shared by each of its findings and stored with each in the host's history, so a source
 * with 50,000 binaries would otherwise cost 50,000 names per advisory; a real source
 * package builds at most a few hundred. Sorted by code unit, so the same set always keeps
 * the same names.
 */
export const MAX_FINDING_BINARIES = LIMITS.list;

const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function binaryList(set: ReadonlySet<string>): string[] {
  const all = [...set].sort(byCodeUnit);
  return all.length > MAX_FINDING_BINARIES ? all.slice(0, MAX_FINDING_BINARIES) : all;
}

/** Groups the inventory into the units advisories are matched against. */
export function planInventory(inv: Inventory): MatchPlan {
  const ecosystem = inv.host.ecosystem;
  const warnings: string[] = [];
  const kernelManaged = inv.kernel.package !== null;
  if (ecosystem === null) return { ecosystem, units: [], kernelManaged, warnings: ['the host has no advisory ecosystem: nothing can be matched'] };
  const scheme = schemeForEcosystem(ecosystem);
  if (scheme === null) return { ecosystem, units: [], kernelManaged, warnings: [`no version rules for ecosystem ${ecosystem}`] };
  const kernelSrc = kernelSources(scheme, inv.packages);
  const stream = releaseStream(inv);
  // Maps and sets, one pass: 200,000 binaries of 10 source packages made a list search
  // per package quadratic (22 s for one report). Each list is sorted once at the end.
  const units = new Map<string, { unit: MatchUnit; names: Map<string, Set<string>> }>();
  /** Binaries whose own version is not their source version (deb), by `${name}\u0000${source version}`. */
  const own = new Map<string, string>();
  for (const p of inv.packages) {
    if (kernelSrc.has(p.source)) continue;
    const k = advisoryKey(scheme, p);
    let u = units.get(k.name);
    if (u === undefined) {
      u = { unit: { key: indexKey(ecosystem, k.name), package: k.name, versions: [], kernel: false }, names: new Map() };
      units.set(k.name, u);
    }
    const names = u.names.get(k.version);
    if (names === undefined) u.names.set(k.version, new Set([p.name]));
    else names.add(p.name);
    if (p.version !== k.version) own.set(`${p.name}\u0000${k.version}`, p.version);
  }
  const out: MatchUnit[] = [];
  for (const { unit, names } of units.values()) {
    for (const [version, set] of names) {
      const binaries = binaryList(set);
      const iv: InstalledVersion = { version, binaries, binaryCount: set.size };
      if (own.size > 0 && binaries.some((b) => own.has(`${b}\u0000${version}`))) iv.binaryVersions = binaries.map((b) => own.get(`${b}\u0000${version}`) ?? version);
      unit.versions.push(iv);
    }
    out.push(unit);
  }
  const kp = inv.kernel.package;
  if (kp === null) {
    warnings.push(`running kernel ${inv.kernel.release} is not provided by any package (unmanaged kernel): no kernel findings`);
  } else {
    const names = scheme === 'deb' ? [unsignedKernelSource(kp.source)] : scheme === 'rpm' ? [kp.name, ...RPM_KERNEL_NAMES] : [kp.source];
    for (const name of new Set(names)) {
      out.push({ key: indexKey(ecosystem, name), package: name, versions: [{ version: kp.version, binaries: [kp.name], binaryCount: 1 }], kernel: true });
    }
    // Ubuntu's OVAL keys kernel USNs by the running release (correlate/ubuntu-kernel.ts says why).
    const rel = ecosystem.startsWith('Ubuntu:') ? ubuntuKernelRelease(inv.kernel.release) : null;
    if (rel !== null) {
      const name = unameUnitName(rel.base, rel.flavour);
      out.push({ key: indexKey(ecosystem, name), package: name, versions: [{ version: rel.abiVersion, binaries: [kp.name], binaryCount: 1 }], kernel: true });
    }
  }
  if (stream !== null) for (const u of out) u.stream = stream;
  return { ecosystem, units: out, kernelManaged, warnings };
}

/** What one advisory entry affects of a unit: the lowest affected version is the finding's. */
interface UnitHit {
  installed: string;
  range: RangeMatch;
  binaries: readonly string[];
  /** Some affected binaries are not in `binaries` (over MAX_FINDING_BINARIES). */
  truncated: boolean;
  /** Installed versions the entry affects. */
  versions: number;
}

/** Matches one unit against the index. Kernel units also weigh installed kernels and the live patch. */
export function matchUnit(inv: Pick<Inventory, 'kernel'>, unit: MatchUnit, index: AdvisoryIndex, cmp: Compare, ecosystem: string, seen: Set<string>, warnings: string[]): RawMatch[] {
  const out: RawMatch[] = [];
  const entries = unit.stream === undefined ? index.lookup(ecosystem, unit.package).map((entry) => ({ entry, ecosystem })) : streamEntries(index, ecosystem, unit.stream, unit.package);
  const binaryKeyed = !unit.kernel && schemeForEcosystem(ecosystem) === 'deb';
  if (binaryKeyed) {
    for (const v of unit.versions) index.noteBinaries(ecosystem, unit.key, v.binaries);
    matchBinaries(unit, index, cmp, ecosystem, warnings, out);
  }
  if (entries.length === 0) return out;
  const only = unit.versions.length === 1 ? unit.versions[0] : undefined;
  const many = only === undefined ? sortedVersions(unit, cmp, warnings) : undefined;
  // Once per unit, not per advisory: the running kernel's source has thousands of
  // advisories, a live patch up to 10,000 CVEs and a host up to 1,000 installed kernels.
  const kernel = unit.kernel ? kernelFacts(inv, cmp, index.lookup(ecosystem, LIVEPATCH_PACKAGE)) : undefined;
  for (const { entry: e, ecosystem: from } of entries) {
    const advKey = `${e.advisory.source}\u0000${e.advisory.id}`;
    // An RHEL kernel advisory lists kernel, kernel-core, kernel-modules...: judge it once.
    if (unit.kernel && seen.has(advKey)) continue;
    let hit: UnitHit | null;
    try {
      if (only !== undefined) {
        const m = matchRanges(cmp, only.version, e.ranges, e.versions);
        hit = m === null ? null : { installed: only.version, range: m, binaries: only.binaries, truncated: only.binaryCount > only.binaries.length, versions: 1 };
      } else {
        hit = many === undefined ? null : matchSorted(cmp, many, e.ranges, e.versions);
      }
    } catch (err) {
      warnings.push(`${e.advisory.id}: ${unit.package} ${only?.version ?? `(${unit.versions.length} versions)`}: ${(err as Error).message}`);
      continue;
    }
    if (hit === null) continue;
    const m = hit.range;
    if (unit.kernel) seen.add(advKey);
    const where = `${from}${unit.stream === undefined || from !== ecosystem ? '' : ` mainline: the ${unit.stream} stream has no entry for its CVEs`}, ${describeRange(m.range)}`;
    let status: RawMatch['status'] = m.fixed === null ? 'unfixed' : 'open';
    let why =
      m.fixed === null
        ? `${unit.package} ${hit.installed} is affected and no fixed version is published (${where}${e.note === undefined ? '' : `; ${e.note}`})`
        : `${unit.package} ${hit.installed} < ${m.fixed} (${where})`;
    if (kernel !== undefined) {
      why = `running kernel ${inv.kernel.release}: ${why}`;
      const lp = inv.kernel.livepatch;
      const newer = m.fixed === null ? undefined : kernel.firstAtLeast(m.fixed);
      if (lp.active && e.advisory.cves.length > 0 && e.advisory.cves.every((c) => kernel.fixedCves.has(c) || kernel.lsnFixes.has(c))) {
        status = 'mitigated-livepatch';
        const reported = e.advisory.cves.filter((c) => kernel.fixedCves.has(c));
        if (reported.length > 0) why += `; live patch (${lp.provider}${lp.effectiveVersion === null ? '' : ` ${lp.effectiveVersion}`}) covers ${reported.join(', ')}`;
        why += lsnWhy(e.advisory.cves.filter((c) => !kernel.fixedCves.has(c)), kernel.lsnFixes);
      } else if (newer !== undefined) {
        status = 'fixed-pending-reboot';
        why += `; installed kernel ${newer.release} (${newer.version ?? '?'}) has the fix: reboot into it`;
      }
    }
    if (hit.versions > 1) why += `; ${hit.versions} installed versions are affected, the lowest is shown`;
    if (hit.truncated) why += `; the first ${hit.binaries.length} affected binaries are listed`;
    out.push({ advisory: e.advisory, package: unit.package, binaries: hit.binaries, installed: hit.installed, fixed: m.fixed, status, why });
  }
  return out;
}

/**
 * Binary-keyed entries (Ubuntu OVAL names binary packages) against each binary's own
 * version: one match per (advisory, source unit), for the lowest affected binary version,
 * naming every affected binary.
 */
function matchBinaries(unit: MatchUnit, index: AdvisoryIndex, cmp: Compare, ecosystem: string, warnings: string[], out: RawMatch[]): void {
  const hits = new Map<string, { entry: IndexEntry; lowest: { name: string; version: string; range: RangeMatch }; names: string[] }>();
  for (const v of unit.versions) {
    v.binaries.forEach((name, i) => {
      const entries = index.lookupBinary(ecosystem, name);
      if (entries.length === 0) return;
      const version = v.binaryVersions?.[i] ?? v.version;
      for (const e of entries) {
        let m: RangeMatch | null;
        try {
          m = matchRanges(cmp, version, e.ranges, e.versions);
        } catch (err) {
          warnings.push(`${e.advisory.id}: ${name} ${version}: ${(err as Error).message}`);
          continue;
        }
        if (m === null) continue;
        const advKey = `${e.advisory.source}\u0000${e.advisory.id}`;
        const h = hits.get(advKey);
        if (h === undefined) hits.set(advKey, { entry: e, lowest: { name, version, range: m }, names: [name] });
        else {
          h.names.push(name);
          if (safeCmp(cmp, version, h.lowest.version) < 0) h.lowest = { name, version, range: m };
        }
      }
    });
  }
  for (const { entry, lowest, names } of hits.values()) {
    const m = lowest.range;
    const where = `${ecosystem}, binary package, ${describeRange(m.range)}`;
    let why = m.fixed === null ? `${lowest.name} ${lowest.version} is affected and no fixed version is published (${where})` : `${lowest.name} ${lowest.version} < ${m.fixed} (${where})`;
    if (names.length > 1) why += `; ${names.length} binaries of ${unit.package} are affected, the lowest is shown`;
    out.push({
      advisory: entry.advisory,
      package: unit.package,
      binaries: [...new Set(names)].sort(byCodeUnit).slice(0, MAX_FINDING_BINARIES),
      installed: lowest.version,
      fixed: m.fixed,
      status: m.fixed === null ? 'unfixed' : 'open',
      why,
    });
  }
}

/** A unit's valid versions in ascending order with running binary totals; a version the scheme rejects is warned about once and left out. */
function sortedVersions(unit: MatchUnit, cmp: Compare, warnings: string[]): InstalledVersion[] {
  const valid: InstalledVersion[] = [];
  for (const v of unit.versions) {
    try {
      cmp(v.version, v.version);
      valid.push(v);
    } catch (err) {
      warnings.push(`${unit.package} ${v.version}: ${(err as Error).message}`);
    }
  }
  return valid.sort((a, b) => cmp(a.version, b.version));
}

/** First index whose version is >= `v` (`strict`: > `v`); `vs` is ascending. */
function bound(cmp: Compare, vs: readonly InstalledVersion[], v: string, strict: boolean): number {
  let lo = 0;
  let hi = vs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = cmp((vs[mid] as InstalledVersion).version, v);
    if (strict ? c > 0 : c >= 0) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * matchRanges over many installed versions at once: each range is an interval of the
 * sorted versions (inRange's bounds, found by binary search), the explicit versions are
 * looked up the same way. Throws what cmp throws for an advisory version the scheme rejects.
 */
function matchSorted(cmp: Compare, vs: readonly InstalledVersion[], ranges: readonly AdvisoryRange[], versions: readonly string[]): UnitHit | null {
  const spans: [number, number][] = [];
  for (const r of ranges) {
    const lo = r.introduced === null || r.introduced === '0' ? 0 : bound(cmp, vs, r.introduced, false);
    const hi = r.fixed !== null ? bound(cmp, vs, r.fixed, false) : r.lastAffected !== null ? bound(cmp, vs, r.lastAffected, true) : vs.length;
    if (lo < hi) spans.push([lo, hi]);
  }
  for (const v of versions) {
    const lo = bound(cmp, vs, v, false);
    const hi = bound(cmp, vs, v, true);
    if (lo < hi) spans.push([lo, hi]);
  }
  if (spans.length === 0) return null;
  spans.sort((a, b) => a[0] - b[0]);
  const lowest = vs[spans[0]?.[0] ?? 0] as InstalledVersion;
  const range = matchRanges(cmp, lowest.version, ranges, versions);
  if (range === null) return null;
  // The binaries of the affected versions, lowest first, until MAX_FINDING_BINARIES names
  // or as many versions were read: what one advisory costs stays bounded.
  const names = new Set<string>();
  let affected = 0;
  let read = 0;
  let truncated = false;
  let next = 0;
  for (const [lo, hi] of spans) {
    const from = Math.max(lo, next);
    if (from >= hi) continue;
    affected += hi - from;
    next = Math.max(next, hi);
    for (let i = from; i < hi; i++) {
      if (read >= MAX_FINDING_BINARIES || names.size >= MAX_FINDING_BINARIES) {
        truncated = true;
        break;
      }
      read++;
      const v = vs[i] as InstalledVersion;
      if (v.binaryCount > v.binaries.length) truncated = true;
      for (const b of v.binaries) {
        if (names.size < MAX_FINDING_BINARIES) names.add(b);
        else if (!names.has(b)) truncated = true;
      }
    }
  }
  return { installed: lowest.version, range, binaries: [...names].sort(byCodeUnit), truncated, versions: affected };
}

type InstalledKernel = Inventory['kernel']['installed'][number];

/**
 * The live patch's CVEs as a set, and the first installed kernel (in the inventory's
 * order) whose version is at least a given one, found by binary search over the running
 * maximum of the versions before it: log2(1,000) comparisons per advisory, not 1,000.
 */
/** Which LSN fixes a CVE on this host, through which loaded module. */
interface LsnFix {
  lsn: string;
  module: string;
  level: number;
  fixedLevel: number;
}

/** `; LSN-0105-1 (module lkp_..._105, level 105 >= 105) fixes CVE-a, CVE-b`, grouped by LSN. */
function lsnWhy(cves: readonly string[], fixes: ReadonlyMap<string, LsnFix>): string {
  const by = new Map<LsnFix, string[]>();
  for (const c of cves) {
    const f = fixes.get(c);
    if (f === undefined) continue;
    const list = by.get(f);
    if (list === undefined) by.set(f, [c]);
    else list.push(c);
  }
  let out = '';
  for (const [f, list] of by) out += `; ${f.lsn} (Canonical Livepatch module ${f.module}, level ${f.level} >= ${f.fixedLevel}) fixes ${list.join(', ')}`;
  return out;
}

/**
 * The CVEs of the LSNs this host's live patch satisfies: Canonical Livepatch active, and a
 * loaded module matching an LSN's pattern at a level at least the LSN's. The first LSN
 * (in index order) to fix a CVE names it.
 */
function lsnFixesOf(lp: Inventory['kernel']['livepatch'], lsns: readonly IndexEntry[]): Map<string, LsnFix> {
  const out = new Map<string, LsnFix>();
  if (!lp.active || lsns.length === 0 || lp.modules.length === 0) return out;
  for (const e of lsns) {
    const fix = e.livepatch;
    if (fix === undefined || fix.provider !== lp.provider) continue;
    let found: LsnFix | undefined;
    for (const module of lp.modules) {
      for (const p of fix.patterns) {
        const level = p.level(module);
        if (level !== null && level >= fix.fixedLevel) found = { lsn: e.advisory.id, module, level, fixedLevel: fix.fixedLevel };
        if (found !== undefined) break;
      }
      if (found !== undefined) break;
    }
    if (found === undefined) continue;
    for (const c of e.advisory.cves) if (!out.has(c)) out.set(c, found);
  }
  return out;
}

function kernelFacts(inv: Pick<Inventory, 'kernel'>, cmp: Compare, lsns: readonly IndexEntry[]): { fixedCves: ReadonlySet<string>; lsnFixes: ReadonlyMap<string, LsnFix>; firstAtLeast(version: string): InstalledKernel | undefined } {
  const positions: number[] = [];
  const maxima: string[] = [];
  inv.kernel.installed.forEach((k, i) => {
    if (k.version === null) return;
    const top = maxima[maxima.length - 1];
    // A version the scheme rejects is never newer (safeCmp says -1), so it never leads.
    if (top !== undefined && safeCmp(cmp, k.version, top) <= 0) return;
    if (top === undefined && safeCmp(cmp, k.version, k.version) !== 0) return;
    positions.push(i);
    maxima.push(k.version);
  });
  return {
    fixedCves: new Set(inv.kernel.livepatch.fixedCves),
    lsnFixes: lsnFixesOf(inv.kernel.livepatch, lsns),
    firstAtLeast(version) {
      let lo = 0;
      let hi = maxima.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (safeCmp(cmp, maxima[mid] as string, version) >= 0) hi = mid;
        else lo = mid + 1;
      }
      const at = positions[lo];
      return at === undefined ? undefined : inv.kernel.installed[at];
    },
  };
}

function safeCmp(cmp: Compare, a: string, b: string): number {
  try {
    return cmp(a, b);
  } catch {
    return -1;
  }
}

export function comparatorFor(ecosystem: string): Compare | null {
  const scheme = schemeForEcosystem(ecosystem);
  return scheme === null ? null : (a, b) => compareVersions(scheme, a, b);
}

/** Every match for the inventory, uncached. */
export function matchInventory(inv: Inventory, index: AdvisoryIndex): { matches: RawMatch[]; plan: MatchPlan } {
  const plan = planInventory(inv);
  const matches: RawMatch[] = [];
  if (plan.ecosystem === null) return { matches, plan };
  const cmp = comparatorFor(plan.ecosystem);
  if (cmp === null) return { matches, plan };
  const seen = new Set<string>();
  for (const u of plan.units) matches.push(...matchUnit(inv, u, index, cmp, plan.ecosystem, seen, plan.warnings));
  return { matches, plan };
}
