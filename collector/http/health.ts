/**
 * `/healthz`, for load balancers and systemd watchdogs: no auth, no detail an attacker
 * could use. 200 `{status:'ok', db:true}` when the database answers a query, else 503.
 */
import { Hono } from 'hono';
import type { Db } from '../store/db.ts';

export function healthRoutes(db: Db): Hono {
  const app = new Hono();
  const ping = db.prepare('SELECT 1 AS ok');
  app.get('/healthz', (c) => {
    c.header('Cache-Control', 'no-store');
    let ok = false;
    try {
      ok = db.open && (ping.get() as { ok: number } | undefined)?.ok === 1;
    } catch {
      ok = false;
    }
    return ok ? c.json({ status: 'ok', db: true }) : c.json({ status: 'error', db: false }, 503);
  });
  return app;
}
