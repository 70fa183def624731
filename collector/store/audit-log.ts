/**
 * The audit log: who changed what and when. A change that is audited writes its row inside
 * the change's own transaction (the caller's), so the log never misses a change and never
 * records one that was rolled back.
 */
import type { Db } from './db.ts';

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

export class AuditLog {
  readonly #insert;
  readonly #list;

  constructor(db: Db) {
    this.#insert = db.prepare<[string, string, string, string | null, string | null, number | null]>(
      'INSERT INTO audit (at, actor, action, target, detail, uid) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.#list = db.prepare<Record<string, string | number | null>, AuditEntry>(
      `SELECT id, at, actor, action, target, detail, uid FROM audit
       WHERE (@actor IS NULL OR actor = @actor) AND (@action IS NULL OR action = @action) AND (@before IS NULL OR id < @before)
       ORDER BY id DESC LIMIT @limit`,
    );
  }

  /**
   * One audit row. `uid` is the unix user of the process that writes it: for the CLI the
   * operator (the actor `cli:<name>` is only what the passwd entry said), for `serve` the
   * service account, whose API rows name the token as the actor.
   */
  record(actor: string, action: string, target: string | null, detail: string | null, now = new Date()): void {
    this.#insert.run(now.toISOString(), actor, action, target, detail, process.getuid?.() ?? null);
  }

  /** Newest first; `more` says whether another page follows the last entry. */
  list(q: AuditQuery): { entries: AuditEntry[]; more: boolean } {
    const rows = this.#list.all({ actor: q.actor ?? null, action: q.action ?? null, before: q.beforeId ?? null, limit: q.limit + 1 });
    return { entries: rows.slice(0, q.limit), more: rows.length > q.limit };
  }
}
