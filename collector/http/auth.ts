/**
 * Who is asking. The JSON API takes `Authorization: Bearer <api token>` only; the
 * dashboard takes a session cookie that its login form sets after checking the same API
 * token. Tokens are checked against their sha256 in `api_tokens` on every request, so a
 * revoked token stops working at once, sessions made with it included.
 *
 * Sessions live in this process's memory (a restart logs everyone out; several collectors
 * behind one address need sticky sessions): the cookie carries a random session id, never
 * the token, so logging out ends the session on the server too.
 */
import { randomBytes } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { Logger } from '../logger.ts';
import { API_TOKEN, type ApiTokenRecord, type Role, roleAtLeast } from '../store/access.ts';
import type { AsyncStore } from '../store/store.ts';
import { AUTH_FAILURE_BURST, AUTH_FAILURE_REFILL_MS, type AuthFailureLimiter, sourceAddress, sourceKey } from './auth-limiter.ts';
import { type ApiError, forbidden, RateLimitedError, unauthenticated } from './errors.ts';
import type { Counter } from './metrics.ts';

export interface Principal {
  tokenId: number;
  name: string;
  role: Role;
  /** The audit log's actor: `api:<token name>`. */
  actor: string;
}

export interface AuthVariables {
  principal: Principal | undefined;
}

function principalOf(t: ApiTokenRecord): Principal {
  return { tokenId: t.id, name: t.name, role: t.role, actor: `api:${t.name}` };
}

/** The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive, RFC 7235). */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer +([^\s]+) *$/i.exec(header);
  return m?.[1];
}

/**
 * Why authentication or a call was refused: the `reason` label of
 * patchwarden_auth_refused_total and the `reason` field of the log line. A fixed set, so
 * the metric's series stay few; the source address goes to the log, never to a label.
 */
export const REFUSAL_REASONS = ['no-token', 'malformed', 'unknown', 'revoked', 'rate-limited', 'forbidden'] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

export type TokenCheck = { ok: true; principal: Principal } | { ok: false; reason: Exclude<RefusalReason, 'rate-limited' | 'forbidden'>; record?: ApiTokenRecord };

/** The token's principal, or why not. */
export async function checkToken(tokens: Pick<AsyncStore['apiTokens'], 'lookup'>, token: string | undefined): Promise<TokenCheck> {
  if (token === undefined || token === '') return { ok: false, reason: 'no-token' };
  const t = await tokens.lookup(token);
  if (t === undefined) return { ok: false, reason: API_TOKEN.test(token) ? 'unknown' : 'malformed' };
  if (t.revokedAt !== null) return { ok: false, reason: 'revoked', record: t };
  return { ok: true, principal: principalOf(t) };
}

/** The token's principal; 401 PW_ERR_UNAUTHENTICATED for a missing, unknown or revoked one (which of them is not said). */
export async function authenticateToken(tokens: Pick<AsyncStore['apiTokens'], 'lookup'>, token: string | undefined): Promise<Principal> {
  const r = await checkToken(tokens, token);
  if (r.ok) return r.principal;
  throw unauthenticated(r.reason === 'no-token' ? 'an API token is required: Authorization: Bearer <token>' : 'the API token is unknown or revoked');
}

export interface AuthGuardDeps {
  tokens: Pick<AsyncStore['apiTokens'], 'lookup'>;
  limiter: AuthFailureLimiter;
  /** patchwarden_auth_refused_total{reason}. */
  refused: Counter<'reason'>;
  logger: Logger;
  audit: Pick<AsyncStore['audit'], 'record'>;
  now: () => Date;
}

/**
 * Every authentication of the API and the dashboard goes through here, and every refusal
 * leaves a trace: a log line (reason, source address, never the token), the refusal
 * counter, and a failure against the source's allowance (auth-limiter.ts). Audit rows are
 * written for what names someone: a revoked token used again, a 403 to a known token, a
 * source that hit the limit. One row per failed guess from an unauthenticated peer would
 * let anyone grow the audit table; those are in the log and the counter instead.
 */
export class AuthGuard {
  readonly #d: AuthGuardDeps;

  constructor(deps: AuthGuardDeps) {
    this.#d = deps;
  }

  /** The principal of `token` from `source`; 429 PW_ERR_RATE_LIMITED while the source is over its allowance, else 401 PW_ERR_UNAUTHENTICATED. */
  async authenticate(source: string, token: string | undefined, via: 'api' | 'login'): Promise<Principal> {
    const d = this.#d;
    const waitMs = d.limiter.retryAfterMs(source);
    if (waitMs > 0) {
      d.refused.inc({ reason: 'rate-limited' });
      const seconds = Math.max(1, Math.ceil(waitMs / 1000));
      throw new RateLimitedError(`too many failed authentications from this address: try again in ${seconds} s`, seconds);
    }
    const r = await checkToken(d.tokens, token);
    if (r.ok) return r.principal;
    d.refused.inc({ reason: r.reason });
    const locked = d.limiter.fail(source);
    const tokenName = r.record?.name;
    d.logger.warn({ code: 'PW_ERR_UNAUTHENTICATED', reason: r.reason, source, via, ...(tokenName === undefined ? {} : { tokenName }) }, 'authentication refused');
    const now = d.now();
    if (r.record !== undefined) {
      await d.audit.record(`api:${r.record.name}`, 'auth.refused', `api-token:${r.record.name}`, JSON.stringify({ reason: r.reason, source, via }), now);
    }
    if (locked) {
      const limit = { burst: AUTH_FAILURE_BURST, refillSeconds: AUTH_FAILURE_REFILL_MS / 1000 };
      d.logger.warn({ code: 'PW_ERR_RATE_LIMITED', source, via, ...limit }, 'too many failed authentications from this address: refusing it until its allowance refills');
      await d.audit.record('anonymous', 'auth.rate-limited', `source:${sourceKey(source)}`, JSON.stringify({ source, via, reason: r.reason }), now);
    }
    throw unauthenticated(r.reason === 'no-token' ? 'an API token is required: Authorization: Bearer <token>' : 'the API token is unknown or revoked');
  }

  /** A 403 answered to `principal` (undefined: a cross-site form post, before any login): logged, counted, and audited when someone is named. */
  async forbidden(c: Context, principal: Principal | undefined, err: ApiError, route: string): Promise<void> {
    const d = this.#d;
    const source = sourceAddress(c);
    d.refused.inc({ reason: 'forbidden' });
    d.logger.warn({ code: err.code, reason: 'forbidden', source, method: c.req.method, route, actor: principal?.actor ?? null }, `refused: ${err.message}`);
    if (principal !== undefined) {
      await d.audit.record(principal.actor, 'api.forbidden', `route:${c.req.method} ${route}`, JSON.stringify({ code: err.code, source, message: err.message }), d.now());
    }
  }
}

/** API middleware: every request needs a valid Bearer token (cookies are not read, so a forged cross-site request carries nothing). */
export function bearerAuth(guard: AuthGuard): MiddlewareHandler<{ Variables: AuthVariables }> {
  return async (c, next) => {
    c.set('principal', await guard.authenticate(sourceAddress(c), bearerToken(c.req.header('authorization')), 'api'));
    await next();
  };
}

/** After bearerAuth or sessionAuth: 403 PW_ERR_FORBIDDEN unless the principal's role is at least `role`. */
export function requireRole(role: Role): MiddlewareHandler<{ Variables: AuthVariables }> {
  return async (c, next) => {
    const p = c.get('principal');
    if (p === undefined) throw unauthenticated('an API token is required: Authorization: Bearer <token>');
    if (!roleAtLeast(p.role, role)) throw forbidden(`this needs the ${role} role; token ${p.name} has ${p.role}`);
    await next();
  };
}

export const SESSION_COOKIE = 'pw_session';
/** A working day: an operator logs in again the next morning. */
export const SESSION_TTL_MS = 12 * 3600_000;
/** Far more than people who log in; the oldest go first past it, so a login loop cannot grow memory. */
export const MAX_SESSIONS = 10_000;

interface Session {
  tokenId: number;
  expires: number;
}

export class SessionStore {
  readonly #sessions = new Map<string, Session>();
  readonly #tokens: Pick<AsyncStore['apiTokens'], 'byId'>;
  readonly #now: () => Date;

  constructor(tokens: Pick<AsyncStore['apiTokens'], 'byId'>, now: () => Date = () => new Date()) {
    this.#tokens = tokens;
    this.#now = now;
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** Starts a session for a principal the AuthGuard has let in; returns its id for the cookie. */
  start(principal: Principal): { id: string; principal: Principal } {
    const now = this.#now().getTime();
    for (const [id, s] of this.#sessions) if (s.expires <= now) this.#sessions.delete(id);
    while (this.#sessions.size >= MAX_SESSIONS) {
      const oldest = this.#sessions.keys().next().value;
      if (oldest === undefined) break;
      this.#sessions.delete(oldest);
    }
    const id = randomBytes(32).toString('base64url');
    this.#sessions.set(id, { tokenId: principal.tokenId, expires: now + SESSION_TTL_MS });
    return { id, principal };
  }

  /** The session's principal while the session lasts and its token is not revoked. */
  async principal(id: string | undefined): Promise<Principal | undefined> {
    if (id === undefined) return undefined;
    const s = this.#sessions.get(id);
    if (s === undefined) return undefined;
    if (s.expires <= this.#now().getTime()) {
      this.#sessions.delete(id);
      return undefined;
    }
    const t = await this.#tokens.byId(s.tokenId);
    if (t === undefined || t.revokedAt !== null) {
      this.#sessions.delete(id);
      return undefined;
    }
    return principalOf(t);
  }

  logout(id: string | undefined): void {
    if (id !== undefined) this.#sessions.delete(id);
  }
}

/** HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Secure over https. */
export function setSessionCookie(c: Context, id: string): void {
  setCookie(c, SESSION_COOKIE, id, {
    httpOnly: true,
    sameSite: 'Strict',
    secure: new URL(c.req.url).protocol === 'https:',
    path: '/',
    maxAge: SESSION_TTL_MS / 1000,
  });
}

export function clearSessionCookie(c: Context): void {
  deleteCookie(c, SESSION_COOKIE, { path: '/', secure: new URL(c.req.url).protocol === 'https:' });
}

export function sessionId(c: Context): string | undefined {
  return getCookie(c, SESSION_COOKIE);
}
