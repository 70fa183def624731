/**
 * `/healthz`, for load balancers and systemd watchdogs: no auth. 200 when the store is
 * healthy (collector/store/health.ts: it answers, its last heartbeat committed, it has room,
 * its last quick_check found nothing), else 503 with each reason and its code. No path,
 * host or secret is in the body: only the store's state.
 */
import { Hono } from 'hono';
import type { HealthCheck } from './services.ts';

export function healthRoutes(health: HealthCheck): Hono {
  const app = new Hono();
  app.get('/healthz', async (c) => {
    c.header('Cache-Control', 'no-store');
    const r = await health.check();
    const body = {
      status: r.ok ? 'ok' : 'error',
      db: r.answers,
      store: {
        writable: r.writable,
        lastWriteAt: r.lastWriteAt,
        freeBytes: r.freeBytes,
        integrity: r.integrity,
        integrityCheckedAt: r.integrityCheckedAt,
        integrityAgeSeconds: r.integrityAgeSeconds,
        integrityIntervalSeconds: r.integrityIntervalSeconds,
      },
      ...(r.ok ? {} : { problems: r.problems }),
    };
    return r.ok ? c.json(body) : c.json(body, 503);
  });
  return app;
}
