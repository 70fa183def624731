/**
 * Query strings at the boundary: each listing's parameters are a strict zod schema, so a
 * parameter we do not know, a repeated one, or a value outside its grammar is a 400
 * PW_ERR_BAD_REQUEST before anything reaches the store. The grammars are tighter than
 * what could be stored on purpose: a filter value that no host can have is a client bug
 * worth reporting, and hostile strings (SQL, HTML, shell) never get as far as a query.
 */
import * as z from 'zod';
import { ECOSYSTEM } from '../../shared/protocol.ts';
import { ASSESSMENTS } from '../domain/correlate/coverage.ts';
import { FINDING_SORTS } from '../domain/correlate/fix-order.ts';
import type { CursorCodec } from './cursor.ts';
import { badCursor, badRequest } from './errors.ts';

export const MAX_LIMIT = 500;
export const DEFAULT_LIMIT = 100;

const limit = z
  .string()
  .regex(/^[0-9]{1,4}$/, 'must be a whole number')
  .transform(Number)
  .pipe(z.number().int().min(1, `must be 1..${MAX_LIMIT}`).max(MAX_LIMIT, `must be 1..${MAX_LIMIT}`));
const cursor = z.string().min(1).max(1024);

export const HostsQuerySchema = z.strictObject({
  ecosystem: z.string().max(128).regex(ECOSYSTEM, 'not an ecosystem name such as Debian:12 or AlmaLinux:9').optional(),
  rebootRequired: z.enum(['true', 'false'], 'must be true or false').transform((v) => v === 'true').optional(),
  assessment: z.enum(ASSESSMENTS, `must be one of ${ASSESSMENTS.join(', ')}`).optional(),
  seenSince: z.iso
    .datetime({ offset: true, error: 'must be an ISO 8601 date-time such as 2026-11-26T18:00:00Z' })
    .transform((v) => new Date(v).toISOString())
    .optional(),
  tag: z.string().min(1).max(128).regex(/^[A-Za-z0-9_.:=@/+-]+$/, "must be letters, digits and _.:=@/+-").optional(),
  q: z.string().min(1).max(253).regex(/^[A-Za-z0-9_.-]+$/, 'must be the start of a host name: letters, digits, _ . -').optional(),
  limit: limit.optional(),
  cursor: cursor.optional(),
});
export type HostsQuery = z.infer<typeof HostsQuerySchema>;

export const AuditQuerySchema = z.strictObject({
  actor: z.string().min(1).max(128).regex(/^[A-Za-z0-9_.:@-]+$/, 'must be an actor such as api:ops or cli:root').optional(),
  action: z.string().min(1).max(64).regex(/^[a-z][a-z0-9.-]*$/, 'must be an action such as agent.revoke').optional(),
  limit: limit.optional(),
  cursor: cursor.optional(),
});
export type AuditQuery = z.infer<typeof AuditQuerySchema>;

export const EmptyQuerySchema = z.strictObject({});

/** One host's document: `sort=fix-first` orders its findings overdue, KEV, EPSS, severity (collector/domain/correlate/fix-order.ts). */
export const HostQuerySchema = z.strictObject({
  sort: z.enum(FINDING_SORTS, `must be one of ${FINDING_SORTS.join(', ')}`).optional(),
});

const show = (key: string) => JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}…` : key);

/** `queries`: every parameter with all its values (hono's `c.req.queries()`). */
export function parseQuery<S extends z.ZodType>(schema: S, queries: Record<string, string[]>): z.infer<S> {
  const flat: Record<string, string> = {};
  for (const [k, values] of Object.entries(queries)) {
    if (values.length !== 1) throw badRequest(`query parameter ${show(k)} is given ${values.length} times; give it once`);
    flat[k] = values[0] as string;
  }
  const r = schema.safeParse(flat);
  if (r.success) return r.data;
  const messages = r.error.issues.slice(0, 5).map((i) => {
    if (i.code === 'unrecognized_keys') return `unknown query parameter${i.keys.length > 1 ? 's' : ''} ${i.keys.slice(0, 5).map(show).join(', ')}`;
    return `${i.path.map(String).join('.') || 'query'}: ${i.message}`;
  });
  throw badRequest(messages.join('; '));
}

/** A cursor's scope: the listing and its filters (not the page size, which may change between pages). */
export function cursorScope(listing: string, filters: Record<string, unknown>): string {
  const entries = Object.entries(filters)
    .filter(([k, v]) => k !== 'cursor' && k !== 'limit' && v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : 1));
  return `${listing}?${JSON.stringify(entries)}`;
}

const HostPosition = z.tuple([z.string().max(253), z.uuid()]);
const AuditPosition = z.number().int().positive();

export function decodeHostCursor(codec: CursorCodec, scope: string, cursor: string): [string, string] {
  const r = HostPosition.safeParse(codec.decode(scope, cursor));
  if (!r.success) throw badCursor('cursor is not one this collector issued: start again from the first page');
  return r.data;
}

export function decodeAuditCursor(codec: CursorCodec, scope: string, cursor: string): number {
  const r = AuditPosition.safeParse(codec.decode(scope, cursor));
  if (!r.success) throw badCursor('cursor is not one this collector issued: start again from the first page');
  return r.data;
}
