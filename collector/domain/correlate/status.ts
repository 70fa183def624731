/**
 * Which finding statuses still need someone to act before their due date. One list, so the
 * due dates (findings.ts), the open counts (hosts.open_findings, the summary, the gauges),
 * the fix-first order and a rollout's target selection never disagree about what "open" is.
 * `mitigated-livepatch`, `accepted` and `resolved` need no action.
 */
import type { FindingStatus } from '../../../shared/protocol.ts';

export const ACTIONABLE_STATUSES = ['open', 'unfixed', 'fixed-pending-reboot'] as const satisfies readonly FindingStatus[];
export type ActionableStatus = (typeof ACTIONABLE_STATUSES)[number];

const ACTIONABLE: ReadonlySet<FindingStatus> = new Set(ACTIONABLE_STATUSES);

export function isActionable(status: FindingStatus): status is ActionableStatus {
  return ACTIONABLE.has(status);
}
