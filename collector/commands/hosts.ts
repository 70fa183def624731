/**
 * `hosts [--db FILE] [--json] [--policy FILE]`: every host that has reported, for
 * operators on the collector's machine: hostname, ecosystem, assessment (whether a fresh
 * loaded feed covers it, correlate/coverage.ts; the policy's staleFeedHours decides
 * fresh), package count, running kernel, reboot pending, last seen, and the agent id
 * that `agent revoke` takes.
 */
import { CoverageView, inventoryReadable, type HostAssessment } from '../domain/correlate/coverage.ts';
import { openCollector } from '../open-collector.ts';
import type { HostSummary } from '../services/fleet/host-list.ts';
import { parse } from './args.ts';
import { DEFAULT_DB } from './feed.ts';
import { readPolicyFile } from './scan.ts';

type Io = { stdout: NodeJS.WritableStream };

export type AssessedHostSummary = HostSummary & { assessment: { state: HostAssessment['state']; reason: string } };

export function assessHosts(hosts: readonly HostSummary[], view: CoverageView): AssessedHostSummary[] {
  return hosts.map((h) => {
    const a = view.assess({ ecosystem: h.ecosystem, inventoryReadable: inventoryReadable(h) });
    return { ...h, assessment: { state: a.state, reason: a.reason } };
  });
}

export function hostsTable(hosts: readonly AssessedHostSummary[]): string {
  const header = ['HOSTNAME', 'ECOSYSTEM', 'ASSESSMENT', 'PACKAGES', 'KERNEL', 'REBOOT', 'LAST SEEN', 'AGENT'];
  const rows = hosts.map((h) => [
    h.hostname,
    h.ecosystem ?? '-',
    h.assessment.state,
    String(h.packageCount),
    h.kernelRelease + (h.kernelManaged ? '' : ' (unmanaged)'),
    h.rebootRequired ? 'yes' : 'no',
    (h.lastSeen ?? h.lastReportAt) + (h.connected ? ' (connected)' : '') + (h.revokedAt === null ? '' : ' REVOKED'),
    h.agentId,
  ]);
  const widths = header.map((_, i) => Math.max(header[i]?.length ?? 0, ...rows.map((r) => r[i]?.length ?? 0)));
  return [header, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n') + '\n';
}

export async function hostsCommand(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, json: { type: 'boolean', default: false }, policy: { type: 'string' } });
  const policy = await readPolicyFile(values.policy);
  const collector = await openCollector({ store: { kind: 'sqlite', path: values.db, readonly: true } });
  try {
    const view = new CoverageView(await collector.feeds.coverage(), new Date(), policy.staleFeedHours);
    const hosts = assessHosts(await collector.hosts.summaries(), view);
    io.stdout.write(values.json ? JSON.stringify(hosts, null, 2) + '\n' : hostsTable(hosts));
  } finally {
    await collector.close();
  }
  return 0;
}
