/**
 * What a rollout means for one host, from its latest inventory and its current findings:
 * the steps to send (patch, livepatch, reboot, refresh), the packages with their installed
 * and target versions, the findings it resolves, and whether it needs a reboot or avoids
 * one by live patching. Pure: the engine and the preview call it with stored facts.
 */
import { ADVISORY_ID, LIVEPATCH_PROVIDERS, type LivepatchTool } from '../../../shared/instructions.ts';
import { schemeForEcosystem } from '../../../shared/ecosystem.ts';
import type { Finding, Inventory } from '../../../shared/protocol.ts';
import { compareVersions } from '../../../shared/versions/index.ts';
import { ACTIONABLE_STATUSES } from '../../domain/correlate/status.ts';
import type { RolloutPlan } from '../../domain/rollout/plan.ts';
import type { Step } from '../../store/rollouts.ts';

export interface PlannedPackage {
  name: string;
  /** Installed now. */
  from: string | null;
  /** The version it must reach at least: the plan's pin, or the highest fixed version of the findings it resolves; null: the newest offered. */
  to: string | null;
  /** What the instruction asks for: the plan's own pin, never a finding's fixed version (see resolveAdvisories). */
  pin: string | null;
}

export interface HostPlan {
  steps: Step[];
  packages: PlannedPackage[];
  /** Advisory ids this plan resolves on the host. */
  findingsResolved: string[];
  /** The advisories a patch instruction names, for the record. */
  advisories: string[];
  needsReboot: boolean;
  livepatchInsteadOfReboot: boolean;
  livepatchTool: LivepatchTool | null;
}

export type HostPlanOutcome = { ok: true; plan: HostPlan } | { ok: false; reason: string };

/** Statuses a rollout can act on: the actionable ones but `unfixed`, which no package fixes yet. */
const PATCHABLE: ReadonlySet<Finding['status']> = new Set(ACTIONABLE_STATUSES.filter((s) => s !== 'unfixed'));

export function livepatchTool(inv: Inventory): LivepatchTool | null {
  const p = inv.kernel.livepatch.provider;
  return (LIVEPATCH_PROVIDERS as readonly string[]).includes(p) ? (p as LivepatchTool) : null;
}

/** Kernel findings are judged against the running kernel's package (DESIGN.md "Kernel truth"): keyed by its binary name (rpm) or its source (deb). */
export function isKernelFinding(f: Finding, inv: Inventory): boolean {
  const k = inv.kernel.package;
  return k !== null && (f.package === k.name || f.package === k.source);
}

function matches(f: Finding, ids: ReadonlySet<string>): boolean {
  return ids.has(f.advisory) || f.cves.some((c) => ids.has(c));
}

function newer(scheme: ReturnType<typeof schemeForEcosystem>, a: string, b: string): boolean {
  if (scheme === null) return false;
  try {
    return compareVersions(scheme, a, b) > 0;
  } catch {
    return false;
  }
}

function installedVersions(inv: Inventory): Map<string, string> {
  const m = new Map<string, string>();
  for (const p of inv.packages) if (!m.has(p.name)) m.set(p.name, p.version);
  return m;
}

export function planForHost(plan: RolloutPlan, inv: Inventory, findings: readonly Finding[]): HostPlanOutcome {
  const tool = livepatchTool(inv);
  const empty: HostPlan = { steps: [], packages: [], findingsResolved: [], advisories: [], needsReboot: false, livepatchInsteadOfReboot: false, livepatchTool: tool };
  const a = plan.action;
  switch (a.kind) {
    case 'refresh':
      return { ok: true, plan: { ...empty, steps: ['refresh'] } };
    case 'reboot': {
      const pending = findings.filter((f) => f.status === 'fixed-pending-reboot').map((f) => f.advisory);
      return {
        ok: true,
        plan: { ...empty, steps: ['reboot'], needsReboot: inv.reboot.required || !a.onlyIfNeeded, findingsResolved: [...new Set(pending)].sort() },
      };
    }
    case 'livepatch': {
      if (tool === null) return { ok: false, reason: `no live-patch tool on the host (provider ${inv.kernel.livepatch.provider})` };
      const kernel = findings.filter((f) => f.status === 'open' && isKernelFinding(f, inv)).map((f) => f.advisory);
      return { ok: true, plan: { ...empty, steps: ['livepatch'], findingsResolved: [...new Set(kernel)].sort(), livepatchInsteadOfReboot: kernel.length > 0 } };
    }
    case 'patch':
      return a.packages !== undefined ? explicitPackages(a.packages, a.reboot, inv, findings, empty) : resolveAdvisories(plan, a.advisories ?? [], a.reboot, inv, findings, empty);
  }
}

function explicitPackages(
  targets: readonly { name: string; version: string | null }[],
  reboot: 'never' | 'if-needed',
  inv: Inventory,
  findings: readonly Finding[],
  empty: HostPlan,
): HostPlanOutcome {
  const scheme = schemeForEcosystem(inv.host.ecosystem ?? '') ?? inv.packageFormat;
  const installed = installedVersions(inv);
  const packages: PlannedPackage[] = [];
  for (const t of targets) {
    const from = installed.get(t.name);
    // A plan upgrades; it never installs a package the host does not have.
    if (from === undefined) continue;
    if (t.version !== null && !newer(scheme, t.version, from)) continue;
    packages.push({ name: t.name, from, to: t.version, pin: t.version });
  }
  if (packages.length === 0) return { ok: false, reason: 'none of the packages is installed below its target version' };
  // By name, so a finding is judged over its own binaries: a search of each finding's
  // binaries per planned package made this findings x packages x binaries.
  const byName = new Map(packages.map((p) => [p.name, p]));
  const names = new Set(byName.keys());
  const resolved = findings.filter((f) => {
    if (f.status !== 'open' || f.fixed === null || !f.binaries.some((b) => names.has(b))) return false;
    const fixed = f.fixed;
    return f.binaries.every((b) => {
      const p = byName.get(b);
      return p === undefined || p.to === null || !newer(scheme, fixed, p.to);
    });
  });
  const kernelSource = inv.kernel.package?.source;
  const touchesKernel = inv.packages.some((p) => names.has(p.name) && kernelSource !== undefined && p.source === kernelSource);
  const steps: Step[] = ['patch'];
  if (reboot === 'if-needed') steps.push('reboot-if-needed');
  return {
    ok: true,
    plan: {
      ...empty,
      steps,
      packages,
      findingsResolved: [...new Set(resolved.map((f) => f.advisory))].sort(),
      needsReboot: inv.reboot.required || touchesKernel,
    },
  };
}

/**
 * "Everything that fixes these advisories": the installed binaries of each matching open
 * finding, to at least its fixed version. The instruction asks for the newest version
 * (pin null), not the fixed one: Debian's and the RHEL family's security repositories
 * keep only the newest build, so `apt-get install libssl3=<an older fixed version>` fails
 * with "Version not found" once a later update is out. The fresh inventory after the
 * patch is what proves the findings resolved.
 */
function resolveAdvisories(
  plan: RolloutPlan,
  ids: readonly string[],
  reboot: 'never' | 'if-needed',
  inv: Inventory,
  findings: readonly Finding[],
  empty: HostPlan,
): HostPlanOutcome {
  const want = new Set(ids);
  const scheme = schemeForEcosystem(inv.host.ecosystem ?? '') ?? inv.packageFormat;
  const installed = installedVersions(inv);
  const tool = empty.livepatchTool;
  const byName = new Map<string, PlannedPackage>();
  const resolved = new Set<string>();
  const advisories = new Set<string>();
  let livepatch = false;
  let kernelPatched = false;
  let pendingReboot = false;
  for (const f of findings) {
    if (!PATCHABLE.has(f.status) || !matches(f, want)) continue;
    if (isKernelFinding(f, inv)) {
      if (plan.preferLivepatch && tool !== null) {
        livepatch = true;
        resolved.add(f.advisory);
        continue;
      }
      if (f.status === 'fixed-pending-reboot') {
        pendingReboot = true;
        if (reboot === 'if-needed') resolved.add(f.advisory);
        continue;
      }
      kernelPatched = true;
    }
    if (f.status !== 'open' || f.fixed === null) continue;
    for (const b of f.binaries) {
      const from = installed.get(b);
      if (from === undefined) continue;
      const seen = byName.get(b);
      if (seen === undefined) byName.set(b, { name: b, from, to: f.fixed, pin: null });
      else if (seen.to !== null && newer(scheme, f.fixed, seen.to)) seen.to = f.fixed;
    }
    if (!isKernelFinding(f, inv) || reboot === 'if-needed') resolved.add(f.advisory);
    if (ADVISORY_ID.test(f.advisory)) advisories.add(f.advisory);
  }
  const packages = [...byName.values()].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  const steps: Step[] = [];
  if (packages.length > 0) steps.push('patch');
  if (livepatch) steps.push('livepatch');
  if (reboot === 'if-needed') {
    if (packages.length > 0) steps.push('reboot-if-needed');
    else if (pendingReboot) steps.push('reboot');
  }
  if (steps.length === 0) return { ok: false, reason: 'no open finding on the host for these advisories' };
  const needsReboot = inv.reboot.required || kernelPatched || pendingReboot;
  return {
    ok: true,
    plan: {
      ...empty,
      steps,
      packages,
      findingsResolved: [...resolved].sort(),
      advisories: [...advisories].sort(),
      needsReboot,
      livepatchInsteadOfReboot: livepatch,
    },
  };
}
