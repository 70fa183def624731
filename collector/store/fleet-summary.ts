/**
 * Fleet-wide figures for the summary, the gauges and the count caches, each one aggregate
 * in SQL so that no host is loaded.
 */
import type { SqlExecutor } from './sql/executor.ts';
import { sql } from './sql/query.ts';

export interface FleetCounts {
  hosts: number;
  rebootRequired: number;
  byEcosystem: Record<string, number>;
  agents: { enrolled: number; connected: number; revoked: number };
}

/** Hosts that share what decides their coverage state (collector/domain/correlate/coverage.ts). */
export interface CoverageGroup {
  ecosystem: string | null;
  /** Whether the stored inventory is readable (it has 1 to `maxPackages` packages). */
  readable: boolean;
  n: number;
}

/** What changes when a host enrols or reports: a cache of fleet totals keys on it. */
export interface FleetSignature {
  hosts: number;
  /** The newest report's row id (0 before any). */
  lastReport: number;
}

const hostCounts = sql('SELECT count(*) AS n, sum(reboot_required) AS reboot FROM hosts');
const byEcosystem = sql('SELECT ecosystem, count(*) AS n FROM hosts GROUP BY ecosystem ORDER BY ecosystem');
const agentCounts = sql({
  sqlite: 'SELECT count(*) AS n, sum(connected = 1 AND revoked_at IS NULL) AS connected, sum(revoked_at IS NOT NULL) AS revoked FROM agents',
  postgres:
    'SELECT count(*) AS n, count(*) FILTER (WHERE connected = 1 AND revoked_at IS NULL) AS connected, count(*) FILTER (WHERE revoked_at IS NOT NULL) AS revoked FROM agents',
});
const coverageKeys = sql({
  sqlite: 'SELECT ecosystem, package_count BETWEEN 1 AND ? AS readable, count(*) AS n FROM hosts GROUP BY 1, 2',
  postgres: 'SELECT ecosystem, (package_count BETWEEN 1 AND ?)::int AS readable, count(*) AS n FROM hosts GROUP BY 1, 2',
});
const openFindings = sql('SELECT coalesce(sum(open_findings), 0) AS n FROM hosts');
const signature = sql({
  sqlite: 'SELECT (SELECT count(*) FROM hosts) AS n, (SELECT max(rowid) FROM reports) AS last',
  postgres: 'SELECT (SELECT count(*) FROM hosts) AS n, (SELECT max(seq) FROM reports) AS last',
});

export class FleetSummaryStore {
  readonly #ex: SqlExecutor;

  constructor(ex: SqlExecutor) {
    this.#ex = ex;
  }

  async counts(): Promise<FleetCounts> {
    // PostgreSQL's sum() of a bigint is a numeric, which pg hands over as a string.
    const hosts = await this.#ex.get<{ n: number; reboot: number | string | null }>(hostCounts);
    const agents = await this.#ex.get<{ n: number; connected: number | null; revoked: number | null }>(agentCounts);
    const ecosystems: Record<string, number> = {};
    // An inventory without a recognised ecosystem still counts, under a name no OSV ecosystem has.
    for (const r of await this.#ex.all<{ ecosystem: string | null; n: number }>(byEcosystem)) ecosystems[r.ecosystem ?? '(unknown)'] = r.n;
    return {
      hosts: hosts?.n ?? 0,
      rebootRequired: Number(hosts?.reboot ?? 0),
      byEcosystem: ecosystems,
      agents: { enrolled: agents?.n ?? 0, connected: agents?.connected ?? 0, revoked: agents?.revoked ?? 0 },
    };
  }

  /** Hosts grouped by ecosystem and inventory readability: one GROUP BY, so a scrape never loads a host. */
  async byCoverageKey(maxPackages: number): Promise<CoverageGroup[]> {
    const rows = await this.#ex.all<{ ecosystem: string | null; readable: number; n: number }>(coverageKeys, [maxPackages]);
    return rows.map((r) => ({ ecosystem: r.ecosystem, readable: r.readable === 1, n: r.n }));
  }

  /**
   * The sum of the counts HostFindings keeps per host as it correlates each report (exact,
   * history and exceptions applied), so a scrape never waits for a fleet-wide recount.
   */
  async openFindings(): Promise<number> {
    return Number((await this.#ex.get<{ n: number | string }>(openFindings))?.n ?? 0);
  }

  async signature(): Promise<FleetSignature> {
    const r = await this.#ex.get<{ n: number; last: number | null }>(signature);
    return { hosts: r?.n ?? 0, lastReport: r?.last ?? 0 };
  }
}
