/**
 * Figures the benches check a run against (scripts/bench*.ts): row counts, what the store
 * holds after a run, a raw pass over the hosts' finding counts as a baseline. Read-only
 * but for SQLite's WAL truncation before a size is measured; no serving path uses it.
 * Benches that read a SQLite file of their own make it over that file's connection
 * (`new StoreInspection(new SqliteDatabase(db))`).
 */
import type { SqlExecutor } from './sql/executor.ts';
import { type Query, sql } from './sql/query.ts';

const COUNTED = ['agents', 'hosts', 'reports', 'inventory_contents', 'advisories', 'content_findings', 'finding_history'] as const;
export type CountedTable = (typeof COUNTED)[number];

export interface HostFindingsRow {
  agentId: string;
  open: number;
  overdue: number;
  content: string | null;
}

// Table names come from the list above, never from a caller's string.
const rowCounts: ReadonlyMap<CountedTable, Query> = new Map(COUNTED.map((table) => [table, sql(`SELECT count(*) AS n FROM ${table}`)]));
const maxReportsPerAgent = sql('SELECT coalesce(max(n), 0) AS n FROM (SELECT count(*) AS n FROM reports GROUP BY agent_id) AS per_agent');
const hostsWithOpenFindings = sql('SELECT count(*) AS n FROM hosts WHERE open_findings > 0');
const raisedAdvisories = sql('SELECT DISTINCT advisory FROM content_findings');
const hostFindingsPage = sql(
  'SELECT agent_id AS "agentId", open_findings AS open, overdue_findings AS overdue, findings_content AS content FROM hosts WHERE agent_id > ? ORDER BY agent_id LIMIT ?',
);
// SQLite's alone: truncateWal() runs nothing on PostgreSQL, whose text here is never sent.
const walCheckpoint = sql({ sqlite: 'PRAGMA wal_checkpoint(TRUNCATE)', postgres: 'SELECT 1' });

const PAGE = 1000;

export class StoreInspection {
  readonly #ex: SqlExecutor;

  constructor(ex: SqlExecutor) {
    this.#ex = ex;
  }

  async rows(table: CountedTable): Promise<number> {
    const query = rowCounts.get(table);
    if (query === undefined) throw new Error(`not a counted table: ${table}`);
    return (await this.#ex.get<{ n: number }>(query))?.n ?? 0;
  }

  async maxReportsPerAgent(): Promise<number> {
    return (await this.#ex.get<{ n: number }>(maxReportsPerAgent))?.n ?? 0;
  }

  async hostsWithOpenFindings(): Promise<number> {
    return (await this.#ex.get<{ n: number }>(hostsWithOpenFindings))?.n ?? 0;
  }

  /** Advisories some inventory content matches now or matched before. */
  async raisedAdvisories(): Promise<string[]> {
    return (await this.#ex.all<{ advisory: string }>(raisedAdvisories)).map((r) => r.advisory);
  }

  /** Every host's stored finding counts, a page per step (the fan-out bench's baseline: one read of them all). */
  async *hostFindings(): AsyncGenerator<HostFindingsRow> {
    for (let after = ''; ; ) {
      const rows = await this.#ex.all<HostFindingsRow>(hostFindingsPage, [after, PAGE]);
      yield* rows;
      const last = rows[rows.length - 1];
      if (rows.length < PAGE || last === undefined) return;
      after = last.agentId;
    }
  }

  /**
   * Moves the WAL into the database file and empties it, so the file's size is the store's.
   * PostgreSQL's WAL is the server's, not the store's size: there is nothing to move.
   */
  async truncateWal(): Promise<void> {
    if (this.#ex.dialect === 'sqlite') await this.#ex.run(walCheckpoint);
  }
}
