/**
 * The audit log: who changed what and when. A change that is audited writes its row inside
 * the change's own transaction (the caller's), so the log never misses a change and never
 * records one that was rolled back.
 */
import type { SqlExecutor } from './sql/executor.ts';
import { sql } from './sql/query.ts';

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  action: string;
  target: string | null;
  detail: string | null;
  /** The unix uid of the process that wrote the row (null on rows older than migration 10, or off unix). */
  uid: number | null;
}

export interface AuditQuery {
  actor?: string | undefined;
  action?: string | undefined;
  /** Entries with an id below this one (the previous page's last id): newest first. */
  beforeId?: number | undefined;
  limit: number;
}

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

export class AuditLog {
  readonly #ex: SqlExecutor;

  constructor(ex: SqlExecutor) {
    this.#ex = ex;
  }

  /**
   * One audit row. `uid` is the unix user of the process that writes it: for the CLI the
   * operator (the actor `cli:<name>` is only what the passwd entry said), for `serve` the
   * service account, whose API rows name the token as the actor.
   */
  async record(actor: string, action: string, target: string | null, detail: string | null, now = new Date()): Promise<void> {
    await this.#ex.run(insert, [now.toISOString(), actor, action, target, detail, process.getuid?.() ?? null]);
  }

  /** Newest first; `more` says whether another page follows the last entry. */
  async list(q: AuditQuery): Promise<{ entries: AuditEntry[]; more: boolean }> {
    const actor = q.actor ?? null;
    const action = q.action ?? null;
    const before = q.beforeId ?? null;
    const rows = await this.#ex.all<AuditEntry>(list, [actor, actor, action, action, before, before, q.limit + 1]);
    return { entries: rows.slice(0, q.limit), more: rows.length > q.limit };
  }
}
