/**
 * Hosts: each agent's current state as its last stored report left it, with its finding
 * counts. One paging API for every caller (API, dashboard, rollouts, CLI): every filter,
 * keyset paging by (hostname, agent id), stable while hosts report in between pages.
 * Reads flush the agents' batched last-seen times first, so a listing never lags an
 * unchanged report.
 */
import { LIMITS } from '../../shared/protocol.ts';
import type { PartScope } from './part-scope.ts';
import { sql } from './sql/query.ts';

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

const hostColumns = `h.agent_id, h.hostname, h.ecosystem, h.package_count, h.kernel_release, h.kernel_managed, h.reboot_required,
   h.last_report_id, h.last_report_at, h.open_findings, h.overdue_findings, a.connected, a.last_seen, a.revoked_at, a.tags,
   a.machine_id, r.content_hash
   FROM hosts h JOIN agents a ON a.id = h.agent_id JOIN reports r ON r.agent_id = h.agent_id AND r.id = h.last_report_id`;

/**
 * One statement for every filter combination: a NULL parameter switches its filter off.
 * Parameters: ecosystem x2, coveredIn x2, maxPackages, coveredOut x2, maxPackages, reboot x2,
 * seenSince x2, tag x2, prefix x2, prefixEnd, afterName x2, afterId, limit. On PostgreSQL
 * each parameter's type is cast (a bare `$1 IS NULL` has none), the JSON lists are read
 * with jsonb functions, and names compare and sort as bytes (COLLATE "C"), as SQLite's do:
 * the order of pages and the prefix range (prefixEnd) depend on it.
 */
const page = sql({
  sqlite: `SELECT ${hostColumns}
   WHERE (? IS NULL OR h.ecosystem = ?)
     AND (? IS NULL OR (h.ecosystem IN (SELECT value FROM json_each(?)) AND h.package_count BETWEEN 1 AND ?))
     AND (? IS NULL OR h.ecosystem IS NULL OR h.ecosystem NOT IN (SELECT value FROM json_each(?))
          OR h.package_count NOT BETWEEN 1 AND ?)
     AND (? IS NULL OR h.reboot_required = ?)
     AND (? IS NULL OR a.last_seen >= ?)
     AND (? IS NULL OR EXISTS (SELECT 1 FROM json_each(a.tags) t WHERE t.value = ?))
     AND (? IS NULL OR (h.hostname >= ? AND h.hostname < ?))
     AND (? IS NULL OR (h.hostname, h.agent_id) > (?, ?))
   ORDER BY h.hostname, h.agent_id LIMIT ?`,
  postgres: `SELECT ${hostColumns}
   WHERE (?::text IS NULL OR h.ecosystem = ?::text)
     AND (?::text IS NULL OR (h.ecosystem IN (SELECT jsonb_array_elements_text(?::jsonb)) AND h.package_count BETWEEN 1 AND ?::bigint))
     AND (?::text IS NULL OR h.ecosystem IS NULL OR h.ecosystem NOT IN (SELECT jsonb_array_elements_text(?::jsonb))
          OR h.package_count NOT BETWEEN 1 AND ?::bigint)
     AND (?::bigint IS NULL OR h.reboot_required = ?::bigint)
     AND (?::text IS NULL OR a.last_seen >= ?::text)
     AND (?::text IS NULL OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(a.tags::jsonb) t WHERE t = ?::text))
     AND (?::text IS NULL OR (h.hostname COLLATE "C" >= ?::text AND h.hostname COLLATE "C" < ?::text))
     AND (?::text IS NULL OR (h.hostname COLLATE "C", h.agent_id COLLATE "C") > (?::text, ?::text))
   ORDER BY h.hostname COLLATE "C", h.agent_id COLLATE "C" LIMIT ?::bigint`,
});
const byId = sql(`SELECT ${hostColumns} WHERE h.agent_id = ?`);
const ids = sql({ sqlite: 'SELECT agent_id FROM hosts ORDER BY agent_id', postgres: 'SELECT agent_id FROM hosts ORDER BY agent_id COLLATE "C"' });
const setFindings = sql('UPDATE hosts SET open_findings = ?, overdue_findings = ? WHERE agent_id = ?');
const adoptContent = sql(
  `UPDATE hosts SET findings_content = ?, findings_since = ? WHERE agent_id = ?
   AND findings_content IS NULL AND NOT EXISTS (SELECT 1 FROM finding_history WHERE host = hosts.agent_id)`,
);
const setContentCounts = sql(
  `UPDATE hosts SET open_findings = ?, overdue_findings = ? WHERE agent_id = ? AND findings_content = ?
   AND NOT EXISTS (SELECT 1 FROM exceptions e WHERE e.host = hosts.agent_id AND e.expires > ?)`,
);
/** The two above for a whole batch on PostgreSQL, a statement each (counts travel as text: arrays are text[]). */
const adoptContentMany = sql({
  postgres: `UPDATE hosts h SET findings_content = t.content, findings_since = ?
             FROM unnest(?::text[], ?::text[]) AS t (agent_id, content)
             WHERE h.agent_id = t.agent_id AND h.findings_content IS NULL
               AND NOT EXISTS (SELECT 1 FROM finding_history WHERE host = h.agent_id)`,
});
const setContentCountsMany = sql({
  postgres: `UPDATE hosts h SET open_findings = t.open::bigint, overdue_findings = t.overdue::bigint
             FROM unnest(?::text[], ?::text[], ?::text[], ?::text[]) AS t (agent_id, content, open, overdue)
             WHERE h.agent_id = t.agent_id AND h.findings_content = t.content
               AND NOT EXISTS (SELECT 1 FROM exceptions e WHERE e.host = h.agent_id AND e.expires > ?)
             RETURNING h.agent_id`,
});

export class Hosts {
  readonly #scope: PartScope;

  constructor(scope: PartScope) {
    this.#scope = scope;
  }

  /** One page in (hostname, agent id) order; `more` says whether another follows its last host. */
  async page(q: HostPageQuery): Promise<{ hosts: HostListItem[]; more: boolean }> {
    await this.#scope.store.agents.flushBeforeRead();
    const limit = Math.min(Math.max(Math.trunc(q.limit), 1), MAX_PAGE);
    const prefix = q.hostnamePrefix === undefined || q.hostnamePrefix === '' ? null : q.hostnamePrefix;
    const ecosystem = q.ecosystem ?? null;
    const coveredIn = q.coverage !== undefined && 'in' in q.coverage ? JSON.stringify(q.coverage.in) : null;
    const coveredOut = q.coverage !== undefined && 'out' in q.coverage ? JSON.stringify(q.coverage.out) : null;
    const reboot = q.rebootRequired === undefined ? null : q.rebootRequired ? 1 : 0;
    const seenSince = q.seenSince ?? null;
    const tag = q.tag ?? null;
    const afterName = q.after?.[0] ?? null;
    const afterId = q.after?.[1] ?? null;
    const rows = await this.#scope.ex.all<HostRow>(page, [
      ecosystem,
      ecosystem,
      coveredIn,
      coveredIn,
      LIMITS.packages,
      coveredOut,
      coveredOut,
      LIMITS.packages,
      reboot,
      reboot,
      seenSince,
      seenSince,
      tag,
      tag,
      prefix,
      prefix,
      prefix === null ? null : prefixEnd(prefix),
      afterName,
      afterName,
      afterId,
      limit + 1,
    ]);
    return { hosts: rows.slice(0, limit).map(hostOf), more: rows.length > limit };
  }

  /** Every host that passes the filter, in listing order, a page (one query) at a time. */
  async *all(filter: HostFilter = {}, pageSize = MAX_PAGE): AsyncGenerator<HostListItem> {
    let after: readonly [string, string] | undefined;
    for (;;) {
      const { hosts, more } = await this.page({ ...filter, after, limit: pageSize });
      yield* hosts;
      const last = hosts[hosts.length - 1];
      if (!more || last === undefined) return;
      after = [last.hostname, last.agentId];
    }
  }

  /** One host as the listing shows it, or undefined before its first report. */
  async get(agentId: string): Promise<HostListItem | undefined> {
    await this.#scope.store.agents.flushBeforeRead();
    const r = await this.#scope.ex.get<HostRow>(byId, [agentId]);
    return r === undefined ? undefined : hostOf(r);
  }

  /** Agents that have a stored inventory, in id order. */
  async ids(): Promise<string[]> {
    return (await this.#scope.ex.all<{ agent_id: string }>(ids)).map((r) => r.agent_id);
  }

  async setFindingCounts(agentId: string, open: number, overdue: number): Promise<void> {
    await this.#scope.ex.run(setFindings, [open, overdue, agentId]);
  }

  /**
   * Content groups' correlations (HostFindings): gives each host its content's counts when
   * its findings history is laid over that content (or it has none yet, and takes it from
   * now, as history.ts switchContent would) and it has no exception of its own in force;
   * returns how many, and the others (to be correlated one by one). Callers pass hosts in
   * agent id order: a fleet's hosts of one content lie all over the table, and in id order
   * each page of it is written once per batch instead of once per content.
   */
  async setContentFindingCounts(
    items: readonly { agentId: string; content: string; open: number; overdue: number }[],
    now: Date,
  ): Promise<{ set: number; others: string[] }> {
    const at = now.toISOString();
    const ex = this.#scope.ex;
    if (ex.dialect === 'postgres') {
      if (items.length === 0) return { set: 0, others: [] };
      const ids = items.map((x) => x.agentId);
      await ex.run(adoptContentMany, [at, ids, items.map((x) => x.content)]);
      const done = new Set(
        (
          await ex.all<{ agent_id: string }>(setContentCountsMany, [ids, items.map((x) => x.content), items.map((x) => String(x.open)), items.map((x) => String(x.overdue)), at])
        ).map((r) => r.agent_id),
      );
      return { set: done.size, others: ids.filter((id) => !done.has(id)) };
    }
    let set = 0;
    const others: string[] = [];
    for (const x of items) {
      await ex.run(adoptContent, [x.content, at, x.agentId]);
      if ((await ex.run(setContentCounts, [x.open, x.overdue, x.agentId, x.content, at])) === 1) set++;
      else others.push(x.agentId);
    }
    return { set, others };
  }
}
