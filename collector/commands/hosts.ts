/**
 * `hosts [--db FILE] [--json]`: every host that has reported, for operators on the
 * collector's machine: hostname, ecosystem, package count, running kernel, reboot
 * pending, last seen, and the agent id that `agent revoke` takes.
 */
import { openDatabase } from '../store/db.ts';
import { FleetStore, type HostSummary, MAX_PAGE } from '../store/fleet.ts';
import { parse } from './args.ts';
import { DEFAULT_DB } from './feed.ts';

type Io = { stdout: NodeJS.WritableStream };

export function allHosts(fleet: FleetStore): HostSummary[] {
  const out: HostSummary[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = fleet.listHosts({ limit: MAX_PAGE, cursor });
    out.push(...page.hosts);
    if (page.nextCursor === null) return out;
    cursor = page.nextCursor;
  }
}

export function hostsTable(hosts: readonly HostSummary[]): string {
  const header = ['HOSTNAME', 'ECOSYSTEM', 'PACKAGES', 'KERNEL', 'REBOOT', 'LAST SEEN', 'AGENT'];
  const rows = hosts.map((h) => [
    h.hostname,
    h.ecosystem ?? '-',
    String(h.packageCount),
    h.kernelRelease + (h.kernelManaged ? '' : ' (unmanaged)'),
    h.rebootRequired ? 'yes' : 'no',
    (h.lastSeen ?? h.lastReportAt) + (h.connected ? ' (connected)' : '') + (h.revokedAt === null ? '' : ' REVOKED'),
    h.agentId,
  ]);
  const widths = header.map((_, i) => Math.max(header[i]?.length ?? 0, ...rows.map((r) => r[i]?.length ?? 0)));
  return [header, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n') + '\n';
}

export function hostsCommand(argv: string[], io: Io): Promise<number> {
  try {
    const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, json: { type: 'boolean', default: false } });
    const db = openDatabase(values.db, { readonly: true });
    try {
      const hosts = allHosts(new FleetStore(db));
      io.stdout.write(values.json ? JSON.stringify(hosts, null, 2) + '\n' : hostsTable(hosts));
    } finally {
      db.close();
    }
    return Promise.resolve(0);
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}
