/**
 * The API's documents (hosts, one host, the fleet summary), shared by the JSON routes and
 * the dashboard so both always show the same figures.
 */
import type { Findings, Inventory } from '../../shared/protocol.ts';
import { fleetCounts, type HostListItem } from '../store/access.ts';
import { countFindings, emptyCounts, type FeedHealth, type FindingCounts } from './fleet-findings.ts';
import { cursorScope, decodeHostCursor, DEFAULT_LIMIT, type HostsQuery } from './query.ts';
import type { Services } from './services.ts';

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
}

export function hostJson(h: HostListItem, c: FindingCounts): HostJson {
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
  };
}

export async function listHosts(s: Services, q: HostsQuery): Promise<{ items: HostJson[]; nextCursor: string | null }> {
  const { limit = DEFAULT_LIMIT, cursor, ...filters } = q;
  const scope = cursorScope('hosts', filters);
  const after = cursor === undefined ? undefined : decodeHostCursor(s.cursors, scope, cursor);
  const page = s.hosts.list({
    ecosystem: filters.ecosystem,
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
    items: page.hosts.map((h, i) => hostJson(h, counts[i] ?? emptyCounts())),
    nextCursor: page.more && last !== undefined ? s.cursors.encode(scope, [last.hostname, last.agentId]) : null,
  };
}

export interface HostDocument {
  host: HostJson;
  inventory: Inventory;
  findings: Findings;
}

export function hostDocument(s: Services, agentId: string): HostDocument | undefined {
  const r = s.findings.forHost(agentId);
  if (r === undefined) return undefined;
  const host = hostJson(r.host, countFindings(r.findings));
  return { host, inventory: r.inventory, findings: r.findings };
}

export interface Summary {
  generatedAt: string;
  hosts: { total: number; rebootRequired: number; byEcosystem: Record<string, number> };
  agents: { enrolled: number; connected: number; revoked: number };
  findings: FindingCounts & { hostsWithOverdue: number };
  feeds: FeedHealth[];
  staleFeeds: number;
}

export async function summary(s: Services): Promise<Summary> {
  const totals = await s.findings.totals();
  const counts = fleetCounts(s.deps.db);
  const feeds = s.findings.feedHealth();
  return {
    generatedAt: s.now().toISOString(),
    hosts: { total: counts.hosts, rebootRequired: counts.rebootRequired, byEcosystem: counts.byEcosystem },
    agents: counts.agents,
    findings: { ...totals.counts, hostsWithOverdue: totals.hostsWithOverdue },
    feeds,
    staleFeeds: feeds.filter((f) => f.stale).length,
  };
}
