/**
 * API tokens (only their sha256 is stored), which the HTTP API reads and the CLI writes.
 * Changes are audited through the fleet's audit log in the same transaction as the change,
 * so the log never misses one and never records one that was rolled back.
 */
import { randomBytes } from 'node:crypto';
import type { AuditLog } from './audit-log.ts';
import type { Db } from './db.ts';
import { tokenHash } from './enrollment-tokens.ts';

export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** viewer < operator < admin: a role may do whatever the roles before it may. */
export function roleAtLeast(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

/**
 * `pwa_` + 32 random bytes in base64url. The prefix lets secret scanners (and people)
 * recognise a leaked token; the 256 random bits make the unsalted sha256 we store safe to
 * keep, since nothing can be guessed from it.
 */
export const API_TOKEN = /^pwa_[A-Za-z0-9_-]{43}$/;
export const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

export function newApiToken(): string {
  return `pwa_${randomBytes(32).toString('base64url')}`;
}

export interface ApiTokenRecord {
  id: number;
  name: string;
  role: Role;
  createdAt: string;
  createdBy: string;
  revokedAt: string | null;
}

interface TokenRow {
  id: number;
  name: string;
  role: Role;
  created_at: string;
  created_by: string;
  revoked_at: string | null;
}

function tokenOf(r: TokenRow): ApiTokenRecord {
  return { id: r.id, name: r.name, role: r.role, createdAt: r.created_at, createdBy: r.created_by, revokedAt: r.revoked_at };
}

export class ApiTokenStore {
  readonly #db: Db;
  readonly #audit: Pick<AuditLog, 'record'>;
  readonly #insert;
  readonly #byHash;
  readonly #byName;
  readonly #byId;
  readonly #revoke;
  readonly #list;

  constructor(db: Db, audit: Pick<AuditLog, 'record'>) {
    this.#db = db;
    this.#audit = audit;
    this.#insert = db.prepare<[string, string, Role, string, string]>('INSERT INTO api_tokens (name, hash, role, created_at, created_by) VALUES (?, ?, ?, ?, ?)');
    this.#byHash = db.prepare<[string], TokenRow>('SELECT id, name, role, created_at, created_by, revoked_at FROM api_tokens WHERE hash = ?');
    this.#byName = db.prepare<[string], TokenRow>('SELECT id, name, role, created_at, created_by, revoked_at FROM api_tokens WHERE name = ?');
    this.#byId = db.prepare<[number], TokenRow>('SELECT id, name, role, created_at, created_by, revoked_at FROM api_tokens WHERE id = ?');
    this.#revoke = db.prepare<[string, string]>('UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL');
    this.#list = db.prepare<[], TokenRow>('SELECT id, name, role, created_at, created_by, revoked_at FROM api_tokens ORDER BY id');
  }

  /** Makes a token; the caller shows it once, since only its hash is kept. Names are unique, revoked ones too (the audit log names them). */
  create(opts: { name: string; role: Role; createdBy: string }, now = new Date()): { token: string; record: ApiTokenRecord } {
    if (!TOKEN_NAME.test(opts.name)) throw new RangeError(`token name ${JSON.stringify(opts.name)} is not 1-64 letters, digits, '.', '_', '@' or '-'`);
    const token = newApiToken();
    const at = now.toISOString();
    const id = this.#db.transaction(() => {
      const r = this.#insert.run(opts.name, tokenHash(token), opts.role, at, opts.createdBy);
      const tokenId = Number(r.lastInsertRowid);
      this.#audit.record(opts.createdBy, 'api-token.create', `api-token:${opts.name}`, JSON.stringify({ role: opts.role }), now);
      return tokenId;
    })();
    return { token, record: { id, name: opts.name, role: opts.role, createdAt: at, createdBy: opts.createdBy, revokedAt: null } };
  }

  /** The token's record, revoked or not; undefined for a string that is no token of ours. */
  lookup(token: string): ApiTokenRecord | undefined {
    if (!API_TOKEN.test(token)) return undefined;
    const r = this.#byHash.get(tokenHash(token));
    return r === undefined ? undefined : tokenOf(r);
  }

  byName(name: string): ApiTokenRecord | undefined {
    const r = this.#byName.get(name);
    return r === undefined ? undefined : tokenOf(r);
  }

  byId(id: number): ApiTokenRecord | undefined {
    const r = this.#byId.get(id);
    return r === undefined ? undefined : tokenOf(r);
  }

  /** false: no such token, or revoked already. */
  revoke(name: string, actor: string, now = new Date()): boolean {
    return this.#db.transaction(() => {
      const changed = this.#revoke.run(now.toISOString(), name).changes === 1;
      if (changed) this.#audit.record(actor, 'api-token.revoke', `api-token:${name}`, null, now);
      return changed;
    })();
  }

  list(): ApiTokenRecord[] {
    return this.#list.all().map(tokenOf);
  }
}
