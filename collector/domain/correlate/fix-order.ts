/**
 * "What to fix first": overdue findings, then known exploited (CISA KEV), then the
 * likeliest to be exploited soon (EPSS, highest first; a finding with no score after every
 * scored one), then severity, then the sooner due date. Findings that need no action
 * (resolved, accepted, mitigated) come after every actionable one. Used by the API's
 * `sort=fix-first` and the dashboard's host page.
 */
import type { Finding, Severity } from '../../../shared/protocol.ts';
import { isActionable } from './status.ts';

const SEVERITY_RANK: Readonly<Record<Severity, number>> = { critical: 0, high: 1, medium: 2, low: 3, unknown: 4 };

export function fixFirst(a: Finding, b: Finding): number {
  return (
    Number(isActionable(b.status)) - Number(isActionable(a.status)) ||
    Number(b.overdue) - Number(a.overdue) ||
    Number(b.kev) - Number(a.kev) ||
    (b.epss?.score ?? -1) - (a.epss?.score ?? -1) ||
    SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity] ||
    (a.due ?? '9').localeCompare(b.due ?? '9') ||
    (a.advisory < b.advisory ? -1 : a.advisory > b.advisory ? 1 : 0) ||
    (a.package < b.package ? -1 : a.package > b.package ? 1 : 0)
  );
}

export const FINDING_SORTS = ['package', 'fix-first'] as const;
export type FindingSort = (typeof FINDING_SORTS)[number];

/** A copy in the asked order; `package` is the order the correlator gives (by package, then advisory). */
export function sortFindings(findings: readonly Finding[], sort: FindingSort): Finding[] {
  return sort === 'fix-first' ? [...findings].sort(fixFirst) : [...findings];
}
