/**
 * The collector's HTTP side as one hono app: the JSON API (/api/v1), /healthz, /metrics
 * and the dashboard. createCollector (collector/server.ts) serves it with
 * @hono/node-server, beside the WebSocket gateway; tests call `app.request()`.
 *
 * Every API answer is JSON, errors `{error:{code,message}}` with a stable code; an
 * unexpected error is a 500 PW_ERR_INTERNAL that says nothing about its cause (the cause
 * goes to `onError`, the operator's log).
 */
import { Hono, type Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { matchedRoutes } from 'hono/route';
import { errorMessage } from '../../shared/errors.ts';
import { LIMITS } from '../../shared/protocol.ts';
import { ASSESSMENTS, type Assessment } from '../domain/correlate/coverage.ts';
import { apiRoutes } from './api.ts';
import { dashboardError, dashboardRoutes } from './dashboard.ts';
import type { Principal } from './auth.ts';
import { ApiError, errorBody, RateLimitedError } from './errors.ts';
import { healthRoutes } from './health.ts';
import { METRICS_CONTENT_TYPE } from './metrics.ts';
import { type AppDeps, makeServices, type Services } from './services.ts';

export type { AppDeps } from './services.ts';

/** The registered route pattern (`/api/v1/hosts/:id`), never the raw path, so the label set stays small. */
function routeLabel(c: Context): string {
  const routes = matchedRoutes(c).filter((r) => r.method !== 'ALL');
  return routes[routes.length - 1]?.path ?? 'unmatched';
}

const isApi = (c: Context) => c.req.path === '/api' || c.req.path.startsWith('/api/');

/** Gauges that mirror the store, refreshed at each scrape. */
function registerGauges(s: Services): void {
  const m = s.deps.metrics;
  m.registry.onCollect(async () => {
    const counts = await s.deps.store.summary.counts();
    m.hostsTotal.set(counts.hosts);
    m.agentsConnected.set(counts.agents.connected);
  });
  // Collect hooks are synchronous (metrics.ts): these read the store's synchronous parts, as FleetFindings' coverage() and feedHealth() do asynchronously.
  m.registry.onCollect(async () => {
    const view = await s.findings.coverage();
    const by: Record<Assessment, number> = { assessed: 0, stale: 0, 'not-assessed': 0 };
    for (const g of await s.deps.store.summary.byCoverageKey(LIMITS.packages)) by[g.readable ? view.stateOf(g.ecosystem) : 'not-assessed'] += g.n;
    for (const a of ASSESSMENTS) m.hostsByAssessment.set({ assessment: a }, by[a]);
  });
  m.registry.onCollect(async () => {
    const health = await s.findings.feedHealth();
    m.feedAgeSeconds.reset();
    for (const f of health) m.feedAgeSeconds.set({ feed: f.source }, f.ageSeconds ?? Infinity);
  });
  m.registry.onCollect(async () => {
    m.findingsOpen.set(await s.deps.store.summary.openFindings());
  });
}

export function createApp(deps: AppDeps): Hono {
  const s = makeServices(deps);
  const onError = deps.onError ?? ((err: unknown) => process.stderr.write(`patchwarden-collector: http: ${errorMessage(err)}\n`));
  registerGauges(s);
  const app = new Hono();

  app.use('*', async (c: Context, next) => {
    await next();
    c.header('X-Content-Type-Options', 'nosniff');
    if (isApi(c)) c.header('Cache-Control', 'no-store');
    deps.metrics.httpRequestsTotal.inc({ route: routeLabel(c), status: String(c.res.status) });
  });

  app.route('/', healthRoutes(deps.storeHealth ?? deps.store.health));
  app.get('/metrics', async (c) => {
    c.header('Content-Type', METRICS_CONTENT_TYPE);
    c.header('Cache-Control', 'no-store');
    return c.body(await deps.metrics.registry.render());
  });
  app.route('/api/v1', apiRoutes(s));
  app.route('/', dashboardRoutes(s));

  app.notFound((c) => {
    if (isApi(c)) return c.json(errorBody('PW_ERR_NOT_FOUND', 'no such API route'), 404);
    return dashboardError(c, new ApiError(404, 'PW_ERR_NOT_FOUND', 'There is no such page.'));
  });

  app.onError(async (err, c) => {
    let apiErr: ApiError;
    if (err instanceof ApiError) apiErr = err;
    else if (err instanceof HTTPException && err.status === 403) apiErr = new ApiError(403, 'PW_ERR_FORBIDDEN', 'cross-site form submission refused');
    else if (err instanceof HTTPException && err.status === 413) apiErr = new ApiError(413, 'PW_ERR_BAD_REQUEST', 'request body too large');
    else if (err instanceof HTTPException && err.status < 500) apiErr = new ApiError(400, 'PW_ERR_BAD_REQUEST', 'bad request');
    else {
      onError(err);
      apiErr = new ApiError(500, 'PW_ERR_INTERNAL', 'internal error; the collector log has the cause');
    }
    if (apiErr.status === 403) await s.guard.forbidden(c, c.get('principal' as never) as Principal | undefined, apiErr, routeLabel(c));
    if (apiErr instanceof RateLimitedError) c.header('Retry-After', String(apiErr.retryAfterSeconds));
    if (isApi(c)) {
      if (apiErr.status === 401) c.header('WWW-Authenticate', 'Bearer realm="patchwarden"');
      return c.json(errorBody(apiErr.code, apiErr.message), apiErr.status);
    }
    return dashboardError(c, apiErr);
  });

  return app;
}
