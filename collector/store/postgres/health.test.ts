import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPostgres, type Postgres } from '../../../shared/testing/postgres.ts';
import { needs, TOOLS } from '../../../shared/testing/system-tools.ts';
import type { StoreHealthReport } from '../health.ts';
import { PostgresDatabase } from '../sql/postgres.ts';
import { sql } from '../sql/query.ts';
import { PostgresHealth } from './health.ts';
import { migratePostgres } from './migrate.ts';

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('/healthz of a collector on PostgreSQL', { skip: needs(TOOLS.postgres) }, () => {
  let cluster: Postgres;
  let db: PostgresDatabase;
  before(async () => {
    cluster = await startPostgres();
    db = new PostgresDatabase({ url: cluster.url, max: 2, connectionTimeoutMs: 1000 });
    await migratePostgres(db);
  });
  after(async () => {
    await db.close();
    await cluster.stop();
  });

  test('healthy once its heartbeat commits; unhealthy with a code while PostgreSQL is down; healthy again after', async (t) => {
    const changes: StoreHealthReport[] = [];
    const health = new PostgresHealth(db, { writeIntervalMs: 100, probeTimeoutMs: 1000, onChange: (r) => changes.push(r) });
    assert.deepEqual(health.check().problems.map((p) => p.code), ['PW_ERR_STORE_UNWRITABLE'], 'nothing committed before the first probe');
    await health.start();
    t.after(() => health.stop());
    const ok = health.check();
    assert.equal(ok.ok, true, JSON.stringify(ok.problems));
    assert.equal(ok.answers, true);
    assert.equal(ok.integrity, 'off');
    assert.deepEqual(await db.get(sql({ postgres: 'SELECT pid FROM store_heartbeat WHERE id = 1' })), { pid: process.pid });

    await cluster.kill();
    await until('the outage seen', () => !health.check().ok);
    const down = health.check();
    assert.equal(down.writable, false);
    assert.ok(down.problems.every((p) => p.code === 'PW_ERR_STORE' || p.code === 'PW_ERR_STORE_UNWRITABLE'), JSON.stringify(down.problems));

    await cluster.start();
    await until('healthy again', () => health.check().ok);
    // Told once per change of state (its problem codes), not at every probe: an outage may be
    // told twice as its codes change (no answer, then no heartbeat either), never the same twice running.
    const codes = changes.map((c) => c.problems.map((p) => p.code).join(','));
    assert.ok(codes.every((c, i) => i === 0 || c !== codes[i - 1]), JSON.stringify(codes));
    assert.deepEqual(
      changes.map((c) => c.ok).filter((ok, i, all) => i === 0 || ok !== all[i - 1]),
      [false, true, false, true],
    );
  });

  test('a probe that never answers counts as failed, and a stale probe is reported', async () => {
    const hung = { dialect: 'postgres' as const, get: () => new Promise<never>(() => undefined), all: () => Promise.resolve([]), run: () => Promise.resolve(0) };
    const health = new PostgresHealth(hung, { writeIntervalMs: 50, probeTimeoutMs: 100 });
    await health.probe();
    const r = health.check();
    assert.equal(r.ok, false);
    assert.match(r.problems[0]?.message ?? '', /no answer within 100 ms/);
    await sleep(200);
    assert.ok(health.check().problems.some((p) => /no heartbeat probe finished/.test(p.message)));
  });
});
