/**
 * Hosts: each agent's current state as its last stored report left it, with its finding
 * counts. One paging API for every caller (API, dashboard, rollouts, CLI): every filter,
 * keyset paging by (hostname, agent id), stable while hosts report in between pages.
 * Reads flush the agents' batched last-seen times first, so a listing never lags an
 * unchanged report.
 */
import { LIMITS } from '../../shared/protocol.ts';
import type { Agents } from './agents.ts';
import type { Db } from './db.ts';

export interface HostSummary {
  agentId: string;
  hostname: string;
  ecosystem: string | null;
  packageCount: number;
  kernelRelease: string;
  kernelManaged: boolean;
  rebootRequired: boolean;
  lastReportId: string;
  lastReportAt: string;
  openFindings: number;
  overdueFindings: number;
  connected: boolean;
  lastSeen: string | null;
  revokedAt: string | null;
  tags: string[];
}

export interface HostListItem extends HostSummary {
  machineId: string | null;
  /** The packagesHash of the last stored inventory: hosts sharing it share their matches. */
  contentHash: string;
}

/** The largest page, and the page `all` walks with. */
export const MAX_PAGE = 1000;

export interface HostFilter {
  ecosystem?: string | undefined;
  /**
   * Coverage (collector/domain/correlate/coverage.ts), as the caller judged it from the feeds:
   * `in`: hosts of these ecosystems whose inventory is readable; `out`: every other host.
   */
  coverage?: { in: readonly string[] } | { out: readonly string[] } | undefined;
  rebootRequired?: boolean | undefined;
  /** ISO date-time (toISOString form, as the store writes): agents seen at or after it. */
  seenSince?: string | undefined;
  tag?: string | undefined;
  /** Host name prefix, case-sensitive (the store keeps names as the agent reported them). */
  hostnamePrefix?: string | undefined;
}

export interface HostPageQuery extends HostFilter {
  /** Hosts after this (hostname, agent id) in the listing order: the previous page's last host. */
  after?: readonly [string, string] | undefined;
  /** 1..MAX_PAGE. */
  limit: number;
}

interface HostRow {
  agent_id: string;
  hostname: string;
  ecosystem: string | null;
  package_count: number;
  kernel_release: string;
  kernel_managed: number;
  reboot_required: number;
  last_report_id: string;
  last_report_at: string;
  open_findings: number;
  overdue_findings: number;
  connected: number;
  last_seen: string | null;
  revoked_at: string | null;
  tags: string;
  machine_id: string | null;
  content_hash: string;
}

function hostOf(r: HostRow): HostListItem {
  return {
    agentId: r.agent_id,
    hostname: r.hostname,
    ecosystem: r.ecosystem,
    packageCount: r.package_count,
    kernelRelease: r.kernel_release,
    kernelManaged: r.kernel_managed === 1,
    rebootRequired: r.reboot_required === 1,
    lastReportId: r.last_report_id,
    lastReportAt: r.last_report_at,
    openFindings: r.open_findings,
    overdueFindings: r.overdue_findings,
    connected: r.connected === 1,
    lastSeen: r.last_seen,
    revokedAt: r.revoked_at,
    tags: JSON.parse(r.tags) as string[],
    machineId: r.machine_id,
    contentHash: r.content_hash,
  };
}

/**
 * The smallest string greater than every string starting with `prefix`, for a range scan
 * on the hostname index; the API only lets ASCII letters, digits and `._-` through, so
 * the last character has a successor.
 */
function prefixEnd(prefix: string): string {
  const last = prefix.charCodeAt(prefix.length - 1);
  return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}

export class Hosts {
  readonly #agents: Agents;
  readonly #page;
  readonly #byId;
  readonly #ids;
  readonly #setFindings;
  readonly #adoptContent;
  readonly #setContentCounts;

  constructor(db: Db, agents: Agents) {
    this.#agents = agents;
    const hostColumns = `h.agent_id, h.hostname, h.ecosystem, h.package_count, h.kernel_release, h.kernel_managed, h.reboot_required,
       h.last_report_id, h.last_report_at, h.open_findings, h.overdue_findings, a.connected, a.last_seen, a.revoked_at, a.tags,
       a.machine_id, r.content_hash
       FROM hosts h JOIN agents a ON a.id = h.agent_id JOIN reports r ON r.agent_id = h.agent_id AND r.id = h.last_report_id`;
    // One statement for every filter combination: a NULL parameter switches its filter off.
    this.#page = db.prepare<Record<string, string | number | null>, HostRow>(
      `SELECT ${hostColumns}
       WHERE (@ecosystem IS NULL OR h.ecosystem = @ecosystem)
         AND (@coveredIn IS NULL OR (h.ecosystem IN (SELECT value FROM json_each(@coveredIn)) AND h.package_count BETWEEN 1 AND @maxPackages))
         AND (@coveredOut IS NULL OR h.ecosystem IS NULL OR h.ecosystem NOT IN (SELECT value FROM json_each(@coveredOut))
              OR h.package_count NOT BETWEEN 1 AND @maxPackages)
         AND (@reboot IS NULL OR h.reboot_required = @reboot)
         AND (@seenSince IS NULL OR a.last_seen >= @seenSince)
         AND (@tag IS NULL OR EXISTS (SELECT 1 FROM json_each(a.tags) t WHERE t.value = @tag))
         AND (@prefix IS NULL OR (h.hostname >= @prefix AND h.hostname < @prefixEnd))
         AND (@afterName IS NULL OR (h.hostname, h.agent_id) > (@afterName, @afterId))
       ORDER BY h.hostname, h.agent_id LIMIT @limit`,
    );
    this.#byId = db.prepare<[string], HostRow>(`SELECT ${hostColumns} WHERE h.agent_id = ?`);
    this.#ids = db.prepare<[], string>('SELECT agent_id FROM hosts ORDER BY agent_id').pluck();
    this.#setFindings = db.prepare<[number, number, string]>('UPDATE hosts SET open_findings = ?, overdue_findings = ? WHERE agent_id = ?');
    this.#adoptContent = db.prepare<[string, string, string]>(
      `UPDATE hosts SET findings_content = ?, findings_since = ? WHERE agent_id = ?
       AND findings_content IS NULL AND NOT EXISTS (SELECT 1 FROM finding_history WHERE host = hosts.agent_id)`,
    );
    this.#setContentCounts = db.prepare<[number, number, string, string, string]>(
      `UPDATE hosts SET open_findings = ?, overdue_findings = ? WHERE agent_id = ? AND findings_content = ?
       AND NOT EXISTS (SELECT 1 FROM exceptions e WHERE e.host = hosts.agent_id AND e.expires > ?)`,
    );
  }

  /** One page in (hostname, agent id) order; `more` says whether another follows its last host. */
  page(q: HostPageQuery): { hosts: HostListItem[]; more: boolean } {
    this.#agents.flushTouches();
    const limit = Math.min(Math.max(Math.trunc(q.limit), 1), MAX_PAGE);
    const prefix = q.hostnamePrefix === undefined || q.hostnamePrefix === '' ? null : q.hostnamePrefix;
    const rows = this.#page.all({
      ecosystem: q.ecosystem ?? null,
      coveredIn: q.coverage !== undefined && 'in' in q.coverage ? JSON.stringify(q.coverage.in) : null,
      coveredOut: q.coverage !== undefined && 'out' in q.coverage ? JSON.stringify(q.coverage.out) : null,
      maxPackages: LIMITS.packages,
      reboot: q.rebootRequired === undefined ? null : q.rebootRequired ? 1 : 0,
      seenSince: q.seenSince ?? null,
      tag: q.tag ?? null,
      prefix,
      prefixEnd: prefix === null ? null : prefixEnd(prefix),
      afterName: q.after?.[0] ?? null,
      afterId: q.after?.[1] ?? null,
      limit: limit + 1,
    });
    return { hosts: rows.slice(0, limit).map(hostOf), more: rows.length > limit };
  }

  /** Every host that passes the filter, in listing order, a page at a time. */
  *all(filter: HostFilter = {}, pageSize = MAX_PAGE): Generator<HostListItem> {
    let after: readonly [string, string] | undefined;
    for (;;) {
      const { hosts, more } = this.page({ ...filter, after, limit: pageSize });
      yield* hosts;
      const last = hosts[hosts.length - 1];
      if (!more || last === undefined) return;
      after = [last.hostname, last.agentId];
    }
  }

  /** One host as the listing shows it, or undefined before its first report. */
  get(agentId: string): HostListItem | undefined {
    this.#agents.flushTouches();
    const r = this.#byId.get(agentId);
    return r === undefined ? undefined : hostOf(r);
  }

  /** Agents that have a stored inventory, in id order. */
  ids(): string[] {
    return this.#ids.all();
  }

  setFindingCounts(agentId: string, open: number, overdue: number): void {
    this.#setFindings.run(open, overdue, agentId);
  }

  /**
   * Content groups' correlations (HostFindings): gives each host its content's counts when
   * its findings history is laid over that content (or it has none yet, and takes it from
   * now, as history.ts switchContent would) and it has no exception of its own in force;
   * returns how many, and the others (to be correlated one by one). Callers pass hosts in
   * agent id order: a fleet's hosts of one content lie all over the table, and in id order
   * each page of it is written once per batch instead of once per content.
   */
  setContentFindingCounts(items: readonly { agentId: string; content: string; open: number; overdue: number }[], now: Date): { set: number; others: string[] } {
    const at = now.toISOString();
    let set = 0;
    const others: string[] = [];
    for (const x of items) {
      this.#adoptContent.run(x.content, at, x.agentId);
      if (this.#setContentCounts.run(x.open, x.overdue, x.agentId, x.content, at).changes === 1) set++;
      else others.push(x.agentId);
    }
    return { set, others };
  }
}
