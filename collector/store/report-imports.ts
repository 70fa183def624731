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
import type { Db } from './db.ts';
import type { Fleet } from './fleet.ts';
import type { IngestResult } from './reports.ts';

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

export class ReportImports {
  readonly #importTx;
  readonly #since;
  readonly #lastSeq;

  constructor(db: Db, fleet: Fleet) {
    const imported = db.prepare<[string, string], { one: number }>('SELECT 1 AS one FROM report_imports WHERE agent_id = ? AND report_id = ?');
    const reported = db.prepare<[string, string], { one: number }>('SELECT 1 AS one FROM reports WHERE agent_id = ? AND id = ?');
    const lastReport = db.prepare<[string], string>('SELECT last_report_at FROM hosts WHERE agent_id = ?').pluck();
    const insert = db.prepare<[string, string, string, string, string, string, string]>(
      'INSERT INTO report_imports (report_id, agent_id, status, created_at, file_sha256, imported_at, imported_by) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.#lastSeq = db.prepare<[], number>('SELECT coalesce(max(seq), 0) FROM report_imports').pluck();
    this.#since = db.prepare<[number], { seq: number; agent_id: string }>('SELECT seq, agent_id FROM report_imports WHERE seq > ? ORDER BY seq');
    this.#importTx = db.transaction((r: FileReport, actor: string, now: Date): ImportStatus => {
      if ((imported.get(r.agentId, r.reportId) ?? reported.get(r.agentId, r.reportId)) !== undefined) return 'duplicate';
      const createdAt = r.createdAt.toISOString();
      const last = lastReport.get(r.agentId);
      if (last !== undefined && createdAt <= last) {
        throw new PatchwardenError(
          `the report was written at ${createdAt}, but the collector holds a newer inventory of this host (${last}): storing it would roll the host back`,
          'PW_ERR_FILE_STALE',
        );
      }
      const result: IngestResult = fleet.reports.ingest(r.agentId, r.reportId, r.hash, r.inventory, r.createdAt);
      const status = result.status === 'stored' ? 'stored' : 'unchanged';
      insert.run(r.reportId, r.agentId, status, createdAt, r.fileSha256, now.toISOString(), actor);
      fleet.audit.record(actor, 'report.import', `agent:${r.agentId}`, JSON.stringify({ report: r.reportId, status, createdAt, sha256: r.fileSha256 }), now);
      return status;
    });
  }

  import(report: FileReport, actor: string, now = new Date()): ImportStatus {
    return this.#importTx.immediate(report, actor, now);
  }

  lastSeq(): number {
    return this.#lastSeq.get() ?? 0;
  }

  /** Imports after `seq`, oldest first: what a serving collector has not correlated yet. */
  since(seq: number): { seq: number; agentId: string }[] {
    return this.#since.all(seq).map((r) => ({ seq: r.seq, agentId: r.agent_id }));
  }
}
