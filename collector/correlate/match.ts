/**
 * Host-independent matching of one inventory against the advisory index: which
 * advisories apply to which installed package, and the kernel truth. The result depends
 * only on the inventory's content and the index, so identical inventories share it.
 */
import { advisoryKey, schemeForEcosystem } from '../../shared/ecosystem.ts';
import type { FindingStatus, Inventory } from '../../shared/protocol.ts';
import { compareVersions } from '../../shared/versions/index.ts';
import { type AdvisoryIndex, type AdvisoryMeta, indexKey } from './advisory-index.ts';
import { kernelSources, unsignedKernelSource } from './kernel-sources.ts';
import { type Compare, describeRange, matchRanges } from './ranges.ts';

export interface RawMatch {
  advisory: AdvisoryMeta;
  package: string;
  binaries: readonly string[];
  installed: string;
  fixed: string | null;
  status: Extract<FindingStatus, 'open' | 'unfixed' | 'fixed-pending-reboot' | 'mitigated-livepatch'>;
  why: string;
}

/** One unit of matching: an advisory key (source package, rpm, origin) at one installed version. */
export interface MatchUnit {
  key: string;
  package: string;
  installed: string;
  binaries: string[];
  kernel: boolean;
}

export interface MatchPlan {
  ecosystem: string | null;
  units: MatchUnit[];
  kernelManaged: boolean;
  warnings: string[];
}

const RPM_KERNEL_NAMES = ['kernel-core', 'kernel'];

/** Groups the inventory into the units advisories are matched against. */
export function planInventory(inv: Inventory): MatchPlan {
  const ecosystem = inv.host.ecosystem;
  const warnings: string[] = [];
  const kernelManaged = inv.kernel.package !== null;
  if (ecosystem === null) return { ecosystem, units: [], kernelManaged, warnings: ['the host has no advisory ecosystem: nothing can be matched'] };
  const scheme = schemeForEcosystem(ecosystem);
  if (scheme === null) return { ecosystem, units: [], kernelManaged, warnings: [`no version rules for ecosystem ${ecosystem}`] };
  const kernelSrc = kernelSources(scheme, inv.packages);
  const units = new Map<string, MatchUnit>();
  for (const p of inv.packages) {
    if (kernelSrc.has(p.source)) continue;
    const k = advisoryKey(scheme, p);
    const id = `${k.name}\u0000${k.version}`;
    const unit = units.get(id);
    if (unit === undefined) units.set(id, { key: indexKey(ecosystem, k.name), package: k.name, installed: k.version, binaries: [p.name], kernel: false });
    else if (!unit.binaries.includes(p.name)) unit.binaries.push(p.name);
  }
  const kp = inv.kernel.package;
  if (kp === null) {
    warnings.push(`running kernel ${inv.kernel.release} is not provided by any package (unmanaged kernel): no kernel findings`);
  } else {
    const names = scheme === 'deb' ? [unsignedKernelSource(kp.source)] : scheme === 'rpm' ? [kp.name, ...RPM_KERNEL_NAMES] : [kp.source];
    for (const name of new Set(names)) {
      units.set(`kernel\u0000${name}`, { key: indexKey(ecosystem, name), package: name, installed: kp.version, binaries: [kp.name], kernel: true });
    }
  }
  return { ecosystem, units: [...units.values()], kernelManaged, warnings };
}

/** Matches one unit against the index. Kernel units also weigh installed kernels and the live patch. */
export function matchUnit(inv: Inventory, unit: MatchUnit, index: AdvisoryIndex, cmp: Compare, ecosystem: string, seen: Set<string>, warnings: string[]): RawMatch[] {
  const out: RawMatch[] = [];
  const entries = index.lookup(ecosystem, unit.package);
  for (const e of entries) {
    const advKey = `${e.advisory.source}\u0000${e.advisory.id}`;
    // An RHEL kernel advisory lists kernel, kernel-core, kernel-modules...: judge it once.
    if (unit.kernel && seen.has(advKey)) continue;
    let m;
    try {
      m = matchRanges(cmp, unit.installed, e.ranges, e.versions);
    } catch (err) {
      warnings.push(`${e.advisory.id}: ${unit.package} ${unit.installed}: ${(err as Error).message}`);
      continue;
    }
    if (m === null) continue;
    if (unit.kernel) seen.add(advKey);
    const where = `${ecosystem}, ${describeRange(m.range)}`;
    let status: RawMatch['status'] = m.fixed === null ? 'unfixed' : 'open';
    let why =
      m.fixed === null
        ? `${unit.package} ${unit.installed} is affected and no fixed version is published (${where})`
        : `${unit.package} ${unit.installed} < ${m.fixed} (${where})`;
    if (unit.kernel) {
      why = `running kernel ${inv.kernel.release}: ${why}`;
      const lp = inv.kernel.livepatch;
      const fixedCves = new Set(lp.fixedCves);
      const newer = m.fixed === null ? undefined : inv.kernel.installed.find((k) => k.version !== null && safeCmp(cmp, k.version, m.fixed as string) >= 0);
      if (lp.active && e.advisory.cves.length > 0 && e.advisory.cves.every((c) => fixedCves.has(c))) {
        status = 'mitigated-livepatch';
        why += `; live patch (${lp.provider}${lp.effectiveVersion === null ? '' : ` ${lp.effectiveVersion}`}) covers ${e.advisory.cves.join(', ')}`;
      } else if (newer !== undefined) {
        status = 'fixed-pending-reboot';
        why += `; installed kernel ${newer.release} (${newer.version ?? '?'}) has the fix: reboot into it`;
      }
    }
    out.push({ advisory: e.advisory, package: unit.package, binaries: unit.binaries, installed: unit.installed, fixed: m.fixed, status, why });
  }
  return out;
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
