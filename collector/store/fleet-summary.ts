/**
 * Fleet-wide figures for the summary, the gauges and the count caches, each one aggregate
 * in SQL so that no host is loaded.
 */
import type { Db } from './db.ts';

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

export class FleetSummaryStore {
  readonly #hosts;
  readonly #byEcosystem;
  readonly #agents;
  readonly #byCoverageKey;
  readonly #openFindings;
  readonly #signature;

  constructor(db: Db) {
    this.#hosts = db.prepare<[], { n: number; reboot: number | null }>('SELECT count(*) AS n, sum(reboot_required) AS reboot FROM hosts');
    this.#byEcosystem = db.prepare<[], { ecosystem: string | null; n: number }>('SELECT ecosystem, count(*) AS n FROM hosts GROUP BY ecosystem ORDER BY ecosystem');
    this.#agents = db.prepare<[], { n: number; connected: number | null; revoked: number | null }>(
      'SELECT count(*) AS n, sum(connected = 1 AND revoked_at IS NULL) AS connected, sum(revoked_at IS NOT NULL) AS revoked FROM agents',
    );
    this.#byCoverageKey = db.prepare<[number], { ecosystem: string | null; readable: number; n: number }>(
      'SELECT ecosystem, package_count BETWEEN 1 AND ? AS readable, count(*) AS n FROM hosts GROUP BY 1, 2',
    );
    this.#openFindings = db.prepare<[], { n: number }>('SELECT coalesce(sum(open_findings), 0) AS n FROM hosts');
    this.#signature = db.prepare<[], { n: number; last: number | null }>('SELECT (SELECT count(*) FROM hosts) AS n, (SELECT max(rowid) FROM reports) AS last');
  }

  counts(): FleetCounts {
    const hosts = this.#hosts.get();
    const agents = this.#agents.get();
    const byEcosystem: Record<string, number> = {};
    // An inventory without a recognised ecosystem still counts, under a name no OSV ecosystem has.
    for (const r of this.#byEcosystem.all()) byEcosystem[r.ecosystem ?? '(unknown)'] = r.n;
    return {
      hosts: hosts?.n ?? 0,
      rebootRequired: hosts?.reboot ?? 0,
      byEcosystem,
      agents: { enrolled: agents?.n ?? 0, connected: agents?.connected ?? 0, revoked: agents?.revoked ?? 0 },
    };
  }

  /** Hosts grouped by ecosystem and inventory readability: one GROUP BY, so a scrape never loads a host. */
  byCoverageKey(maxPackages: number): CoverageGroup[] {
    return this.#byCoverageKey.all(maxPackages).map((r) => ({ ecosystem: r.ecosystem, readable: r.readable === 1, n: r.n }));
  }

  /**
   * The sum of the counts HostFindings keeps per host as it correlates each report (exact,
   * history and exceptions applied), so a scrape never waits for a fleet-wide recount.
   */
  openFindings(): number {
    return this.#openFindings.get()?.n ?? 0;
  }

  signature(): FleetSignature {
    const r = this.#signature.get();
    return { hosts: r?.n ?? 0, lastReport: r?.last ?? 0 };
  }
}
