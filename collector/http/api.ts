/**
 * The JSON API under /api/v1. Every request needs `Authorization: Bearer <api token>`;
 * viewer reads hosts, the summary, the feeds and rollouts, operator creates and moves rollouts
 * (rollouts.ts), admin reads the audit log and revokes agents.
 */
import { Hono } from 'hono';
import * as z from 'zod';
import { bearerAuth, type AuthVariables, requireRole } from './auth.ts';
import { conflict, notFound } from './errors.ts';
import { AuditQuerySchema, cursorScope, decodeAuditCursor, DEFAULT_LIMIT, EmptyQuerySchema, HostQuerySchema, HostsQuerySchema, parseQuery } from './query.ts';
import type { Services } from './services.ts';
import { rolloutRoutes } from './rollouts.ts';
import { hostDocument, listFeeds, listHosts, summary } from './views.ts';

const AgentId = z.uuid();

function agentIdParam(raw: string): string {
  // Not a uuid: no agent has that id, and saying "not found" echoes nothing back.
  const r = AgentId.safeParse(raw);
  if (!r.success) throw notFound('no such host');
  return r.data;
}

export function apiRoutes(s: Services): Hono<{ Variables: AuthVariables }> {
  const api = new Hono<{ Variables: AuthVariables }>();
  api.use('*', bearerAuth(s.guard));

  api.get('/whoami', requireRole('viewer'), (c) => {
    parseQuery(EmptyQuerySchema, c.req.queries());
    const p = c.get('principal');
    return c.json({ name: p?.name, role: p?.role });
  });

  api.get('/hosts', requireRole('viewer'), async (c) => {
    const q = parseQuery(HostsQuerySchema, c.req.queries());
    return c.json(await listHosts(s, q));
  });

  api.get('/hosts/:id', requireRole('viewer'), async (c) => {
    const { sort } = parseQuery(HostQuerySchema, c.req.queries());
    const doc = await hostDocument(s, agentIdParam(c.req.param('id')), sort);
    if (doc === undefined) throw notFound('no such host (or it has not reported yet)');
    return c.json(doc);
  });

  api.get('/summary', requireRole('viewer'), async (c) => {
    parseQuery(EmptyQuerySchema, c.req.queries());
    return c.json(await summary(s));
  });

  // What the Feeds page shows, for scripts and monitoring: coverage, freshness, size, last error.
  api.get('/feeds', requireRole('viewer'), async (c) => {
    parseQuery(EmptyQuerySchema, c.req.queries());
    return c.json({ items: await listFeeds(s) });
  });

  api.get('/audit', requireRole('admin'), async (c) => {
    const { limit = DEFAULT_LIMIT, cursor, ...filters } = parseQuery(AuditQuerySchema, c.req.queries());
    const scope = cursorScope('audit', filters);
    const beforeId = cursor === undefined ? undefined : decodeAuditCursor(s.cursors, scope, cursor);
    const { entries, more } = await s.audit.list({ ...filters, beforeId, limit });
    const last = entries[entries.length - 1];
    return c.json({ items: entries, nextCursor: more && last !== undefined ? s.cursors.encode(scope, last.id) : null });
  });

  api.post('/agents/:id/revoke', requireRole('admin'), async (c) => {
    parseQuery(EmptyQuerySchema, c.req.queries());
    const id = agentIdParam(c.req.param('id'));
    const agent = await s.deps.store.agents.get(id);
    if (agent === undefined) throw notFound('no such agent');
    if (agent.revokedAt !== null) throw conflict(`agent ${id} was revoked already at ${agent.revokedAt}`);
    const principal = c.get('principal');
    const now = s.now();
    // Revoked between the read above and here: another admin was quicker.
    if (!(await s.deps.store.agents.revoke(id, principal?.actor ?? 'api:unknown', now))) throw conflict(`agent ${id} was revoked already`);
    s.deps.onAgentRevoked?.(id);
    return c.json({ agent: { id, hostname: agent.hostname, revokedAt: now.toISOString() } });
  });

  api.route('/rollouts', rolloutRoutes(s));

  api.notFound((c) => c.json({ error: { code: 'PW_ERR_NOT_FOUND', message: 'no such API route' } }, 404));
  return api;
}
