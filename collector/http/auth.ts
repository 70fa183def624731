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
import { type ApiTokenRecord, type ApiTokenStore, type Role, roleAtLeast } from '../store/access.ts';
import { forbidden, unauthenticated } from './errors.ts';

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

/** The token's principal; 401 PW_ERR_UNAUTHENTICATED for a missing, unknown or revoked one (which of them is not said). */
export function authenticateToken(tokens: ApiTokenStore, token: string | undefined): Principal {
  if (token === undefined) throw unauthenticated('an API token is required: Authorization: Bearer <token>');
  const t = tokens.lookup(token);
  if (t === undefined || t.revokedAt !== null) throw unauthenticated('the API token is unknown or revoked');
  return principalOf(t);
}

/** API middleware: every request needs a valid Bearer token (cookies are not read, so a forged cross-site request carries nothing). */
export function bearerAuth(tokens: ApiTokenStore): MiddlewareHandler<{ Variables: AuthVariables }> {
  return async (c, next) => {
    c.set('principal', authenticateToken(tokens, bearerToken(c.req.header('authorization'))));
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
  readonly #tokens: ApiTokenStore;
  readonly #now: () => Date;

  constructor(tokens: ApiTokenStore, now: () => Date = () => new Date()) {
    this.#tokens = tokens;
    this.#now = now;
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** Checks the token as the API does, then starts a session; returns its id for the cookie. */
  login(token: string): { id: string; principal: Principal } {
    const principal = authenticateToken(this.#tokens, token);
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
  principal(id: string | undefined): Principal | undefined {
    if (id === undefined) return undefined;
    const s = this.#sessions.get(id);
    if (s === undefined) return undefined;
    if (s.expires <= this.#now().getTime()) {
      this.#sessions.delete(id);
      return undefined;
    }
    const t = this.#tokens.byId(s.tokenId);
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
