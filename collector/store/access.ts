/**
 * API tokens (only their sha256 is stored), which the HTTP API reads and the CLI writes, on
 * the shared executor (SQLite and PostgreSQL, issue 12). Changes are audited through the
 * store's audit part in the same atomic step as the change, so the log never misses one and
 * never records one that was rolled back.
 */
import { randomBytes } from 'node:crypto';
import { StoreError } from './db.ts';
import { tokenHash } from './enrollment-tokens.ts';
import type { PartScope } from './part-scope.ts';
import { sql } from './sql/query.ts';

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

const COLUMNS = 'id, name, role, created_at, created_by, revoked_at';
// A taken name (revoked ones too) inserts nothing: the conflict is reported as such, not as
// an engine's unique-constraint error that PostgreSQL's transaction would run again first.
const insert = sql('INSERT INTO api_tokens (name, hash, role, created_at, created_by) VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING id');
const byHash = sql(`SELECT ${COLUMNS} FROM api_tokens WHERE hash = ?`);
const byName = sql(`SELECT ${COLUMNS} FROM api_tokens WHERE name = ?`);
const byId = sql(`SELECT ${COLUMNS} FROM api_tokens WHERE id = ?`);
const revoke = sql('UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL');
const list = sql(`SELECT ${COLUMNS} FROM api_tokens ORDER BY id`);

export class ApiTokenStore {
  readonly #scope: PartScope;

  constructor(scope: PartScope) {
    this.#scope = scope;
  }

  /**
   * Makes a token; the caller shows it once, since only its hash is kept. Names are unique,
   * revoked ones too (the audit log names them): a taken one is refused with PW_ERR_STORE.
   */
  async create(opts: { name: string; role: Role; createdBy: string }, now = new Date()): Promise<{ token: string; record: ApiTokenRecord }> {
    if (!TOKEN_NAME.test(opts.name)) throw new RangeError(`token name ${JSON.stringify(opts.name)} is not 1-64 letters, digits, '.', '_', '@' or '-'`);
    const token = newApiToken();
    const at = now.toISOString();
    const id = await this.#scope.atomic(async (s) => {
      const r = await s.ex.get<{ id: number }>(insert, [opts.name, tokenHash(token), opts.role, at, opts.createdBy]);
      if (r === undefined) return undefined;
      await s.store.audit.record(opts.createdBy, 'api-token.create', `api-token:${opts.name}`, JSON.stringify({ role: opts.role }), now);
      return r.id;
    });
    if (id === undefined) throw new StoreError(`an API token named ${opts.name} exists already (names stay taken after revocation)`);
    return { token, record: { id, name: opts.name, role: opts.role, createdAt: at, createdBy: opts.createdBy, revokedAt: null } };
  }

  /** The token's record, revoked or not; undefined for a string that is no token of ours. */
  async lookup(token: string): Promise<ApiTokenRecord | undefined> {
    if (!API_TOKEN.test(token)) return undefined;
    const r = await this.#scope.ex.get<TokenRow>(byHash, [tokenHash(token)]);
    return r === undefined ? undefined : tokenOf(r);
  }

  async byName(name: string): Promise<ApiTokenRecord | undefined> {
    const r = await this.#scope.ex.get<TokenRow>(byName, [name]);
    return r === undefined ? undefined : tokenOf(r);
  }

  async byId(id: number): Promise<ApiTokenRecord | undefined> {
    const r = await this.#scope.ex.get<TokenRow>(byId, [id]);
    return r === undefined ? undefined : tokenOf(r);
  }

  /** false: no such token, or revoked already. */
  revoke(name: string, actor: string, now = new Date()): Promise<boolean> {
    return this.#scope.atomic(async (s) => {
      const changed = (await s.ex.run(revoke, [now.toISOString(), name])) === 1;
      if (changed) await s.store.audit.record(actor, 'api-token.revoke', `api-token:${name}`, null, now);
      return changed;
    });
  }

  async list(): Promise<ApiTokenRecord[]> {
    return (await this.#scope.ex.all<TokenRow>(list)).map(tokenOf);
  }
}
