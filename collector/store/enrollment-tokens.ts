/**
 * Enrollment tokens: one-time or counted, with a lifetime. Only the sha256 of a token is
 * stored; the token itself is shown once, to whoever made it.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { PartScope } from './part-scope.ts';
import { sql } from './sql/query.ts';

export type TokenRefusal = 'unknown' | 'expired' | 'used-up';

export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

const insert = sql('INSERT INTO enrollment_tokens (hash, uses_left, expires_at, created_at, created_by, note) VALUES (?, ?, ?, ?, ?, ?) RETURNING id');
// One statement, so two agents enrolling at once can never both take a token's last use.
const take = sql('UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE hash = ? AND uses_left > 0 AND expires_at > ? RETURNING id');
const byHash = sql('SELECT id, uses_left, expires_at FROM enrollment_tokens WHERE hash = ?');

export class EnrollmentTokens {
  readonly #scope: PartScope;

  constructor(scope: PartScope) {
    this.#scope = scope;
  }

  async create(opts: { uses: number; ttlMs: number; createdBy: string; note?: string | null }, now = new Date()): Promise<{ token: string; id: number; expiresAt: string }> {
    if (!Number.isInteger(opts.uses) || opts.uses < 1) throw new RangeError('an enrollment token needs at least one use');
    if (!Number.isFinite(opts.ttlMs) || opts.ttlMs <= 0) throw new RangeError('an enrollment token needs a positive lifetime');
    // One base64url token in 64 starts with '-', which `enroll --token T` reads as an option.
    let token: string;
    do token = randomBytes(32).toString('base64url');
    while (token.startsWith('-'));
    const expiresAt = new Date(now.getTime() + opts.ttlMs).toISOString();
    const id = await this.#scope.atomic(async (s) => {
      const row = await s.ex.get<{ id: number }>(insert, [tokenHash(token), opts.uses, expiresAt, now.toISOString(), opts.createdBy, opts.note ?? null]);
      const tokenId = Number(row?.id);
      await s.store.audit.record(opts.createdBy, 'enrollment-token.create', `token:${tokenId}`, JSON.stringify({ uses: opts.uses, expiresAt, note: opts.note ?? null }), now);
      return tokenId;
    });
    return { token, id, expiresAt };
  }

  /**
   * Whether the token has a use left now, without taking it (and without locking its row):
   * what `consume` would answer unless another enrollment takes the last use meanwhile.
   */
  async check(token: string, now = new Date()): Promise<{ ok: true; tokenId: number } | { ok: false; reason: TokenRefusal }> {
    const row = await this.#scope.ex.get<{ id: number; uses_left: number; expires_at: string }>(byHash, [tokenHash(token)]);
    if (row === undefined) return { ok: false, reason: 'unknown' };
    if (row.expires_at <= now.toISOString()) return { ok: false, reason: 'expired' };
    if (row.uses_left <= 0) return { ok: false, reason: 'used-up' };
    return { ok: true, tokenId: row.id };
  }

  /** Takes one use of the token; the reason says why not when it cannot. */
  async consume(token: string, now = new Date()): Promise<{ ok: true; tokenId: number } | { ok: false; reason: TokenRefusal }> {
    const hash = tokenHash(token);
    const taken = await this.#scope.ex.get<{ id: number }>(take, [hash, now.toISOString()]);
    if (taken !== undefined) return { ok: true, tokenId: taken.id };
    const row = await this.#scope.ex.get<{ id: number; uses_left: number; expires_at: string }>(byHash, [hash]);
    if (row === undefined) return { ok: false, reason: 'unknown' };
    return { ok: false, reason: row.expires_at <= now.toISOString() ? 'expired' : 'used-up' };
  }
}
