/**
 * Reports that arrived in files (collector/services/airgap/report-import.ts) rather than over the
 * gateway. They go through the fleet's own ingest (reports.ts), with the time the agent wrote the file
 * as the report's time, inside one transaction that also decides:
 *
 *   - already imported (the same report id from the same agent): `duplicate`, nothing
 *     written, so importing a directory twice is harmless. A report id is its signer's
 *     own (migration 13): another agent's file under the same id is another report, so
 *     one host cannot hide another's by taking its id first;
 *   - older than, or as old as, the newest inventory stored for the host: refused
 *     (PW_ERR_FILE_STALE), since storing it would roll the host back to an older state;
 *   - otherwise stored (or `unchanged`), with a row in report_imports and the audit log.
 */
import { PatchwardenError } from '../../shared/errors.ts';
import type { Inventory } from '../../shared/protocol.ts';
import type { PartScope } from './part-scope.ts';
import type { IngestResult } from './reports.ts';
import { sql } from './sql/query.ts';

export interface FileReport {
  agentId: string;
  reportId: string;
  hash: string;
  inventory: Inventory;
  /** When the agent wrote the file (its signed header). */
  createdAt: Date;
  fileSha256: string;
}

export type ImportStatus = 'stored' | 'unchanged' | 'duplicate';

const imported = sql('SELECT 1 AS one FROM report_imports WHERE agent_id = ? AND report_id = ?');
const reported = sql('SELECT 1 AS one FROM reports WHERE agent_id = ? AND id = ?');
const lastReport = sql('SELECT last_report_at FROM hosts WHERE agent_id = ?');
const insert = sql(
  'INSERT INTO report_imports (report_id, agent_id, status, created_at, file_sha256, imported_at, imported_by) VALUES (?, ?, ?, ?, ?, ?, ?)',
);
const lastSeq = sql('SELECT coalesce(max(seq), 0) AS seq FROM report_imports');
const since = sql('SELECT seq, agent_id FROM report_imports WHERE seq > ? ORDER BY seq');

export class ReportImports {
  readonly #scope: PartScope;

  constructor(scope: PartScope) {
    this.#scope = scope;
  }

  import(r: FileReport, actor: string, now = new Date()): Promise<ImportStatus> {
    return this.#scope.atomic(async (s): Promise<ImportStatus> => {
      if (((await s.ex.get(imported, [r.agentId, r.reportId])) ?? (await s.ex.get(reported, [r.agentId, r.reportId]))) !== undefined) return 'duplicate';
      const createdAt = r.createdAt.toISOString();
      const last = (await s.ex.get<{ last_report_at: string }>(lastReport, [r.agentId]))?.last_report_at;
      if (last !== undefined && createdAt <= last) {
        throw new PatchwardenError(
          `the report was written at ${createdAt}, but the collector holds a newer inventory of this host (${last}): storing it would roll the host back`,
          'PW_ERR_FILE_STALE',
        );
      }
      const result: IngestResult = await s.store.reports.ingest(r.agentId, r.reportId, r.hash, r.inventory, r.createdAt);
      const status = result.status === 'stored' ? 'stored' : 'unchanged';
      await s.ex.run(insert, [r.reportId, r.agentId, status, createdAt, r.fileSha256, now.toISOString(), actor]);
      await s.store.audit.record(actor, 'report.import', `agent:${r.agentId}`, JSON.stringify({ report: r.reportId, status, createdAt, sha256: r.fileSha256 }), now);
      return status;
    });
  }

  async lastSeq(): Promise<number> {
    return (await this.#scope.ex.get<{ seq: number }>(lastSeq))?.seq ?? 0;
  }

  /** Imports after `seq`, oldest first: what a serving collector has not correlated yet. */
  async since(seq: number): Promise<{ seq: number; agentId: string }[]> {
    return (await this.#scope.ex.all<{ seq: number; agent_id: string }>(since, [seq])).map((r) => ({ seq: r.seq, agentId: r.agent_id }));
  }
}
