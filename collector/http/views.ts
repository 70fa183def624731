/**
 * The API's documents (hosts, one host, the fleet summary, rollouts), shared by the JSON routes and
 * the dashboard so both always show the same figures.
 */
import { type FindingSort, sortFindings } from '../domain/correlate/fix-order.ts';
import type { Assessment, HostAssessment } from '../domain/correlate/coverage.ts';
import type { Findings, Inventory } from '../../shared/protocol.ts';
import type { HostListItem } from '../store/hosts.ts';
import { countFindings, emptyCounts, type FeedHealth, type FindingCounts } from '../services/findings/fleet-findings.ts';
import { cursorScope, decodeHostCursor, DEFAULT_LIMIT, type HostsQuery } from './query.ts';
import type { Services } from './services.ts';

// The rollout documents are the CLI's too (`rollout list|show --json`): they live with the rollouts service.
export { listRollouts, rolloutDetail, type RolloutDetailJson, type RolloutHostJson, type RolloutJson } from '../services/rollouts/rollout-json.ts';

export interface HostJson {
  id: string;
  hostname: string;
  ecosystem: string | null;
  packageCount: number;
  kernel: { release: string; managed: boolean };
  rebootRequired: boolean;
  connected: boolean;
  lastSeen: string | null;
  lastReportAt: string;
  tags: string[];
  revokedAt: string | null;
  findings: { open: number; overdue: number };
  /** Whether a fresh loaded feed covers the host: zero findings on a not-assessed host mean nobody looked. */
  assessment: { state: Assessment; reason: string };
}

export function hostJson(h: HostListItem, c: FindingCounts, a: HostAssessment): HostJson {
  return {
    id: h.agentId,
    hostname: h.hostname,
    ecosystem: h.ecosystem,
    packageCount: h.packageCount,
    kernel: { release: h.kernelRelease, managed: h.kernelManaged },
    rebootRequired: h.rebootRequired,
    connected: h.connected,
    lastSeen: h.lastSeen,
    lastReportAt: h.lastReportAt,
    tags: h.tags,
    revokedAt: h.revokedAt,
    findings: { open: c.open, overdue: c.overdue },
    assessment: { state: a.state, reason: a.reason },
  };
}

export async function listHosts(s: Services, q: HostsQuery): Promise<{ items: HostJson[]; nextCursor: string | null }> {
  const { limit = DEFAULT_LIMIT, cursor, ...filters } = q;
  const scope = cursorScope('hosts', filters);
  const after = cursor === undefined ? undefined : decodeHostCursor(s.cursors, scope, cursor);
  const view = await s.findings.coverage();
  const coverage =
    filters.assessment === undefined ? undefined : filters.assessment === 'not-assessed' ? { out: view.covered() } : { in: view.ecosystems(filters.assessment) };
  const page = await s.hosts.page({
    ecosystem: filters.ecosystem,
    coverage,
    rebootRequired: filters.rebootRequired,
    seenSince: filters.seenSince,
    tag: filters.tag,
    hostnamePrefix: filters.q,
    after,
    limit,
  });
  const last = page.hosts[page.hosts.length - 1];
  const counts = await s.findings.countsOf(page.hosts);
  return {
    items: page.hosts.map((h, i) => hostJson(h, counts[i] ?? emptyCounts(), s.findings.assessment(h, view))),
    nextCursor: page.more && last !== undefined ? s.cursors.encode(scope, [last.hostname, last.agentId]) : null,
  };
}

export interface HostDocument {
  host: HostJson;
  inventory: Inventory;
  findings: Findings;
}

/** `sort`: `package` (the correlator's order) or `fix-first` (collector/domain/correlate/fix-order.ts). */
export async function hostDocument(s: Services, agentId: string, sort: FindingSort = 'package'): Promise<HostDocument | undefined> {
  const r = await s.findings.forHost(agentId);
  if (r === undefined) return undefined;
  const host = hostJson(r.host, countFindings(r.findings), r.assessment);
  return { host, inventory: r.inventory, findings: { ...r.findings, findings: sortFindings(r.findings.findings, sort) } };
}

export interface Summary {
  generatedAt: string;
  /**
   * `byAssessment`: hosts by coverage state; `compliant`: assessed hosts with no overdue
   * finding (a stale or not-assessed host is never compliant).
   */
  hosts: { total: number; rebootRequired: number; byEcosystem: Record<string, number>; byAssessment: Record<Assessment, number>; compliant: number };
  agents: { enrolled: number; connected: number; revoked: number };
  findings: FindingCounts & { hostsWithOverdue: number };
  feeds: FeedHealth[];
  staleFeeds: number;
}

export async function summary(s: Services): Promise<Summary> {
  const totals = await s.findings.totals();
  const counts = await s.deps.store.summary.counts();
  const feeds = await s.findings.feedHealth();
  return {
    generatedAt: s.now().toISOString(),
    hosts: { total: counts.hosts, rebootRequired: counts.rebootRequired, byEcosystem: counts.byEcosystem, byAssessment: totals.byAssessment, compliant: totals.compliant },
    agents: counts.agents,
    findings: { ...totals.counts, hostsWithOverdue: totals.hostsWithOverdue },
    feeds,
    staleFeeds: feeds.filter((f) => f.stale).length,
  };
}

/** One loaded feed as the Feeds page shows it: its health (as the summary judges it), size and coverage. */
export interface FeedJson extends FeedHealth {
  records: number;
  /** The ecosystems its own advisories name (table feed_coverage); empty for a KEV list, which names none. */
  ecosystems: string[];
}

/** `Debian:9` before `Debian:10`. */
function byRelease(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** Every loaded feed by name; staleness comes from feedHealth so the page and the summary never disagree. */
export async function listFeeds(s: Services): Promise<FeedJson[]> {
  const store = s.deps.store.advisories;
  const records = new Map((await store.feeds()).map((f) => [f.source, f.records]));
  const coverage = new Map((await store.coverage()).map((c) => [c.source, c.ecosystems]));
  return (await s.findings.feedHealth()).map((f) => ({ ...f, records: records.get(f.source) ?? 0, ecosystems: [...(coverage.get(f.source) ?? [])].sort(byRelease) }));
}
