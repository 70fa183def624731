/**
 * The audit log's statements on the shared executor, for the PostgreSQL store only, until
 * audit-log.ts itself moves (issue 12 step 2): the fleet's parts (tokens, agents, report
 * imports) write their audit rows through `scope.store.audit.record(...)` in their own
 * transactions, and on PostgreSQL there is no synchronous AuditLog to reach. On SQLite the
 * store keeps the synchronous AuditLog (its synchronous parts write through it); this file
 * goes when audit-log.ts is rewritten on the executor behind the same interface.
 */
import type { AuditEntry, AuditLog, AuditQuery } from './audit-log.ts';
import type { Promisified } from './promisified.ts';
import type { SqlExecutor } from './sql/executor.ts';
import { sql } from './sql/query.ts';

const insert = sql('INSERT INTO audit (at, actor, action, target, detail, uid) VALUES (?, ?, ?, ?, ?, ?)');
// Cast: a bare `$1 IS NULL` has no type on PostgreSQL.
const list = sql({
  sqlite: `SELECT id, at, actor, action, target, detail, uid FROM audit
           WHERE (? IS NULL OR actor = ?) AND (? IS NULL OR action = ?) AND (? IS NULL OR id < ?)
           ORDER BY id DESC LIMIT ?`,
  postgres: `SELECT id, at, actor, action, target, detail, uid FROM audit
             WHERE (?::text IS NULL OR actor = ?::text) AND (?::text IS NULL OR action = ?::text) AND (?::bigint IS NULL OR id < ?::bigint)
             ORDER BY id DESC LIMIT ?::bigint`,
});

export class ExecutorAudit implements Promisified<AuditLog> {
  readonly #ex: SqlExecutor;

  constructor(ex: SqlExecutor) {
    this.#ex = ex;
  }

  /** As AuditLog.record: `uid` is the unix user of the process that writes the row. */
  async record(actor: string, action: string, target: string | null, detail: string | null, now = new Date()): Promise<void> {
    await this.#ex.run(insert, [now.toISOString(), actor, action, target, detail, process.getuid?.() ?? null]);
  }

  async list(q: AuditQuery): Promise<{ entries: AuditEntry[]; more: boolean }> {
    const actor = q.actor ?? null;
    const action = q.action ?? null;
    const before = q.beforeId ?? null;
    const rows = await this.#ex.all<AuditEntry>(list, [actor, actor, action, action, before, before, q.limit + 1]);
    return { entries: rows.slice(0, q.limit), more: rows.length > q.limit };
  }
}
