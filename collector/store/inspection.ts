/**
 * Figures the benches check a run against (scripts/bench*.ts): row counts, what the store
 * holds after a run, a raw pass over the hosts' finding counts as a baseline. Read-only
 * but for the WAL truncation before a size is measured; no serving path uses it.
 */
import type { Db } from './db.ts';

const COUNTED = ['agents', 'hosts', 'reports', 'inventory_contents', 'advisories', 'content_findings', 'finding_history'] as const;
export type CountedTable = (typeof COUNTED)[number];

export interface HostFindingsRow {
  agentId: string;
  open: number;
  overdue: number;
  content: string | null;
}

export class StoreInspection {
  readonly #db: Db;
  readonly #rows: ReadonlyMap<CountedTable, () => number>;
  readonly #maxReportsPerAgent;
  readonly #hostsWithOpenFindings;
  readonly #raisedAdvisories;
  readonly #hostFindings;

  constructor(db: Db) {
    this.#db = db;
    // Table names come from the list above, never from a caller's string.
    this.#rows = new Map(
      COUNTED.map((table) => {
        const count = db.prepare<[], number>(`SELECT count(*) FROM ${table}`).pluck();
        return [table, () => count.get() ?? 0];
      }),
    );
    this.#maxReportsPerAgent = db.prepare<[], number>('SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM reports GROUP BY agent_id)').pluck();
    this.#hostsWithOpenFindings = db.prepare<[], number>('SELECT count(*) FROM hosts WHERE open_findings > 0').pluck();
    this.#raisedAdvisories = db.prepare<[], string>('SELECT DISTINCT advisory FROM content_findings').pluck();
    this.#hostFindings = db.prepare<[string, number], HostFindingsRow>(
      'SELECT agent_id AS agentId, open_findings AS open, overdue_findings AS overdue, findings_content AS content FROM hosts WHERE agent_id > ? ORDER BY agent_id LIMIT ?',
    );
  }

  rows(table: CountedTable): number {
    return (this.#rows.get(table) as () => number)();
  }

  maxReportsPerAgent(): number {
    return this.#maxReportsPerAgent.get() ?? 0;
  }

  hostsWithOpenFindings(): number {
    return this.#hostsWithOpenFindings.get() ?? 0;
  }

  /** Advisories some inventory content matches now or matched before. */
  raisedAdvisories(): string[] {
    return this.#raisedAdvisories.all();
  }

  /** Every host's stored finding counts, a page at a time (the fan-out bench's baseline: one read of them all). */
  *hostFindings(): Generator<HostFindingsRow> {
    for (let after = ''; ; ) {
      const rows = this.#hostFindings.all(after, 1000);
      yield* rows;
      const last = rows[rows.length - 1];
      if (rows.length < 1000 || last === undefined) return;
      after = last.agentId;
    }
  }

  /** Moves the WAL into the database file and empties it, so the file's size is the store's. */
  truncateWal(): void {
    this.#db.pragma('wal_checkpoint(TRUNCATE)');
  }
}
