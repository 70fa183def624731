/**
 * Turns matches into findings with compliance dates: first seen, due, overdue, and the
 * statuses that depend on the host's history (resolved) and on operators' exceptions
 * (accepted). Cheap, so it runs per host on top of the shared, cached matches.
 */
import type { Finding } from '../../../shared/protocol.ts';
import type { EpssScore } from '../feeds/epss.ts';
import type { RawMatch } from './match.ts';
import { addDays, type DuePolicy } from './policy.ts';
import { isActionable } from './status.ts';

export interface KevInfo {
  dueDate: string;
}

export type { EpssScore };

export interface HistoryEntry {
  firstSeen: string;
  resolvedAt: string | null;
  /** For resolved findings: what was last reported. */
  last?: Finding;
}

export interface RiskException {
  advisory: string;
  /** Absent: every package the advisory touches. */
  package?: string | undefined;
  owner: string;
  reason: string;
  expires: string;
}

export interface FindingContext {
  policy: DuePolicy;
  now: Date;
  kev: ReadonlyMap<string, KevInfo>;
  /** EPSS scores by CVE; absent or empty: no EPSS feed loaded, findings carry `epss: null`. */
  epss?: ReadonlyMap<string, EpssScore>;
  /** Per `${advisory}\0${package}`: when this host first had it. */
  history?: ReadonlyMap<string, HistoryEntry>;
  exceptions?: readonly RiskException[];
}

export function historyKey(advisory: string, pkg: string): string {
  return `${advisory}\u0000${pkg}`;
}

/** The exceptions in force, by advisory id: one map lookup per match, not a scan of every exception. */
function exceptionsByAdvisory(exceptions: readonly RiskException[] | undefined, nowIso: string): Map<string, RiskException[]> {
  const out = new Map<string, RiskException[]>();
  for (const e of exceptions ?? []) {
    if (e.expires <= nowIso) continue;
    const list = out.get(e.advisory);
    if (list === undefined) out.set(e.advisory, [e]);
    else list.push(e);
  }
  return out;
}

/** The highest-scored of the CVEs, with its percentile: an advisory is as likely to be exploited as its likeliest CVE. */
export function topEpss(cves: readonly string[], epss: ReadonlyMap<string, EpssScore> | undefined): { cve: string; score: number; percentile: number } | null {
  if (epss === undefined || epss.size === 0) return null;
  let top: { cve: string; score: number; percentile: number } | null = null;
  for (const cve of cves) {
    const s = epss.get(cve);
    if (s !== undefined && (top === null || s.score > top.score || (s.score === top.score && cve < top.cve))) top = { cve, score: s.score, percentile: s.percentile };
  }
  return top;
}

export function buildFindings(matches: readonly RawMatch[], ctx: FindingContext): Finding[] {
  const nowIso = ctx.now.toISOString();
  const today = nowIso.slice(0, 10);
  const exceptions = exceptionsByAdvisory(ctx.exceptions, nowIso);
  const out: Finding[] = [];
  for (const m of matches) {
    const hk = historyKey(m.advisory.id, m.package);
    const hist = ctx.history?.get(hk);
    const firstSeen = hist !== undefined && hist.resolvedAt === null ? hist.firstSeen : nowIso;
    const published = m.advisory.published?.slice(0, 10) ?? null;
    const kevDue = m.advisory.cves.map((c) => ctx.kev.get(c)?.dueDate).filter((d): d is string => d !== undefined).sort()[0];
    const epss = topEpss(m.advisory.cves, ctx.epss);
    let status: Finding['status'] = m.status;
    let why = m.why;
    let due: string | null = null;
    if (isActionable(status)) {
      const start = ctx.policy.clockStart === 'published' && published !== null ? published : firstSeen.slice(0, 10);
      due = addDays(start, ctx.policy.days[m.advisory.severity]);
      if (kevDue !== undefined && ctx.policy.kevDueDates && kevDue < due) {
        due = kevDue;
        why += `; known exploited (CISA KEV due ${kevDue})`;
      }
      // Off unless the policy sets it: an EPSS score alone moves no deadline.
      const rule = ctx.policy.epssDueDays;
      if (rule !== undefined && epss !== null && epss.score >= rule.threshold) {
        const epssDue = addDays(start, rule.days);
        if (epssDue < due) {
          due = epssDue;
          why += `; EPSS ${epss.score} (${epss.cve}) >= ${rule.threshold}: due in ${rule.days} days by policy`;
        }
      }
    }
    const exc = exceptions.get(m.advisory.id)?.find((e) => e.package === undefined || e.package === m.package);
    if (exc !== undefined && isActionable(status)) {
      status = 'accepted';
      why += `; risk accepted by ${exc.owner} until ${exc.expires.slice(0, 10)}: ${exc.reason}`;
      due = null;
    }
    out.push({
      advisory: m.advisory.id,
      source: m.advisory.source,
      cves: [...m.advisory.cves],
      package: m.package,
      // Sorted by the plan already: a sorted list costs TimSort one pass.
      binaries: [...m.binaries].sort(),
      installed: m.installed,
      fixed: m.fixed,
      status,
      severity: m.advisory.severity,
      kev: kevDue !== undefined,
      epss,
      published,
      firstSeen,
      due,
      overdue: due !== null && due < today,
      resolvedAt: null,
      why,
    });
  }
  if (ctx.history !== undefined) {
    const current = new Set(out.map((f) => historyKey(f.advisory, f.package)));
    for (const [k, h] of ctx.history) {
      if (current.has(k) || h.last === undefined) continue;
      out.push({ ...h.last, status: 'resolved', due: null, overdue: false, resolvedAt: h.resolvedAt ?? nowIso, why: `no longer applies (was: ${h.last.why})` });
    }
  }
  out.sort((a, b) => (a.package < b.package ? -1 : a.package > b.package ? 1 : a.advisory < b.advisory ? -1 : a.advisory > b.advisory ? 1 : 0));
  return out;
}
