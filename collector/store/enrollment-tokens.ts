/**
 * Enrollment tokens: one-time or counted, with a lifetime. Only the sha256 of a token is
 * stored; the token itself is shown once, to whoever made it.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { AuditLog } from './audit-log.ts';
import type { Db } from './db.ts';

export type TokenRefusal = 'unknown' | 'expired' | 'used-up';

export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export class EnrollmentTokens {
  readonly #db: Db;
  readonly #audit: AuditLog;
  readonly #insert;
  readonly #take;
  readonly #byHash;

  constructor(db: Db, audit: AuditLog) {
    this.#db = db;
    this.#audit = audit;
    this.#insert = db.prepare<[string, number, string, string, string, string | null]>(
      'INSERT INTO enrollment_tokens (hash, uses_left, expires_at, created_at, created_by, note) VALUES (?, ?, ?, ?, ?, ?)',
    );
    // One statement, so two agents enrolling at once can never both take a token's last use.
    this.#take = db.prepare<[string, string], { id: number }>(
      'UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE hash = ? AND uses_left > 0 AND expires_at > ? RETURNING id',
    );
    this.#byHash = db.prepare<[string], { uses_left: number; expires_at: string }>('SELECT uses_left, expires_at FROM enrollment_tokens WHERE hash = ?');
  }

  create(opts: { uses: number; ttlMs: number; createdBy: string; note?: string | null }, now = new Date()): { token: string; id: number; expiresAt: string } {
    if (!Number.isInteger(opts.uses) || opts.uses < 1) throw new RangeError('an enrollment token needs at least one use');
    if (!Number.isFinite(opts.ttlMs) || opts.ttlMs <= 0) throw new RangeError('an enrollment token needs a positive lifetime');
    // One base64url token in 64 starts with '-', which `enroll --token T` reads as an option.
    let token: string;
    do token = randomBytes(32).toString('base64url');
    while (token.startsWith('-'));
    const expiresAt = new Date(now.getTime() + opts.ttlMs).toISOString();
    const id = this.#db.transaction(() => {
      const r = this.#insert.run(tokenHash(token), opts.uses, expiresAt, now.toISOString(), opts.createdBy, opts.note ?? null);
      const tokenId = Number(r.lastInsertRowid);
      this.#audit.record(opts.createdBy, 'enrollment-token.create', `token:${tokenId}`, JSON.stringify({ uses: opts.uses, expiresAt, note: opts.note ?? null }), now);
      return tokenId;
    })();
    return { token, id, expiresAt };
  }

  /** Takes one use of the token; the reason says why not when it cannot. */
  consume(token: string, now = new Date()): { ok: true; tokenId: number } | { ok: false; reason: TokenRefusal } {
    const hash = tokenHash(token);
    const taken = this.#take.get(hash, now.toISOString());
    if (taken !== undefined) return { ok: true, tokenId: taken.id };
    const row = this.#byHash.get(hash);
    if (row === undefined) return { ok: false, reason: 'unknown' };
    return { ok: false, reason: row.expires_at <= now.toISOString() ? 'expired' : 'used-up' };
  }
}
