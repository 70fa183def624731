import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPostgres, type Postgres } from '../../../shared/testing/postgres.ts';
import { needs, TOOLS } from '../../../shared/testing/system-tools.ts';
import { PostgresDatabase } from '../sql/postgres.ts';
import { PostgresLease } from './lease.ts';
import { migratePostgres } from './migrate.ts';
import { notify, PostgresListener } from './notifications.ts';

const ROOT = join(import.meta.dirname, '..', '..', '..');

/** Resolves with the first value `probe` gives that is not undefined, polling; rejects after `ms`. */
async function within<T>(ms: number, probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const end = performance.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (performance.now() > end) throw new Error(`nothing within ${ms} ms`);
    await sleep(20);
  }
}

describe('several collectors on one PostgreSQL', { skip: needs(TOOLS.postgres) }, () => {
  let cluster: Postgres;
  let db: PostgresDatabase;
  before(async () => {
    cluster = await startPostgres();
    db = new PostgresDatabase({ url: cluster.url, max: 4 });
    await migratePostgres(db);
  });
  after(async () => {
    await db.close();
    await cluster.stop();
  });

  test('a notification reaches another connection when its transaction commits, and never when it rolls back', async (t) => {
    const got: string[] = [];
    const listener = new PostgresListener({ url: cluster.url, channels: ['pw_outbox'], onNotification: (_c, p) => got.push(p) });
    t.after(() => listener.close());
    await listener.start();

    await notify(db, 'pw_outbox', 'agent-1');
    await within(1000, () => (got.includes('agent-1') ? true : undefined));

    let sentInside = false;
    await db.transaction(async (tx) => {
      await notify(tx, 'pw_outbox', 'agent-2');
      sentInside = true;
      await sleep(200);
      // Not yet: the transaction is open.
      assert.ok(!got.includes('agent-2'));
    });
    assert.ok(sentInside);
    await within(1000, () => (got.includes('agent-2') ? true : undefined));

    await assert.rejects(
      db.transaction(async (tx) => {
        await notify(tx, 'pw_outbox', 'agent-3');
        throw new Error('rolled back');
      }),
    );
    await notify(db, 'pw_outbox', 'after-3');
    await within(1000, () => (got.includes('after-3') ? true : undefined));
    assert.ok(!got.includes('agent-3'), 'a rolled-back notification is never delivered');
  });

  test('bad channel names and oversized payloads are refused before they reach the server', async () => {
    await assert.rejects(notify(db, 'pw; DROP TABLE agents', 'x'), RangeError);
    await assert.rejects(notify(db, 'pw_outbox', 'x'.repeat(8000)), RangeError);
    assert.throws(() => new PostgresListener({ url: cluster.url, channels: ['"quoted"'], onNotification: () => undefined }), RangeError);
  });

  test('a listener cut off by a PostgreSQL restart reconnects, says so, and hears what comes after', async (t) => {
    const got: string[] = [];
    let reconnects = 0;
    const listener = new PostgresListener({
      url: cluster.url,
      channels: ['pw_outbox'],
      onNotification: (_c, p) => got.push(p),
      onReconnect: () => reconnects++,
      retryMs: 50,
    });
    t.after(() => listener.close());
    await listener.start();
    await cluster.restart();
    await within(15_000, () => (reconnects > 0 && listener.listening ? true : undefined));
    await notify(db, 'pw_outbox', 'after-restart');
    await within(1000, () => (got.includes('after-restart') ? true : undefined));
  });

  test('one replica holds a lease; another takes it when it is given up, and the epoch counts holders', async () => {
    const a = new PostgresLease(db, { name: 'rollout-tick', holder: 'a', ttlMs: 2000 });
    const b = new PostgresLease(db, { name: 'rollout-tick', holder: 'b', ttlMs: 2000 });
    assert.equal(await a.tryAcquire(), true);
    assert.equal(await b.tryAcquire(), false);
    const first = a.epoch;
    assert.equal(typeof first, 'number');
    // Renewal by the holder keeps its epoch.
    assert.equal(await a.tryAcquire(), true);
    assert.equal(a.epoch, first);
    assert.deepEqual(await a.holderNow(), { holder: 'a', epoch: first });
    await a.stop();
    assert.equal(a.held, false);
    assert.equal(await b.tryAcquire(), true);
    assert.equal(b.epoch, (first as number) + 1);
    await b.stop();
  });

  test('a holder that stops renewing loses the lease by its own clock before another takes it', async () => {
    const changes: (number | null)[] = [];
    const stale = new PostgresLease(db, { name: 'feed-sync', holder: 'stale', ttlMs: 600, onChange: (e) => changes.push(e) });
    assert.equal(await stale.tryAcquire(), true);
    const next = new PostgresLease(db, { name: 'feed-sync', holder: 'next', ttlMs: 600 });
    await within(3000, async () => ((await next.tryAcquire()) ? true : undefined));
    // By the time the row expired, the stale holder had stopped believing it held the lease.
    assert.equal(stale.held, false);
    assert.deepEqual(changes, [1, null]);
    assert.equal(next.epoch, 2);
    await next.stop();
  });

  test('when the process holding a lease is SIGKILLed, another replica takes over within a lease period', async (t) => {
    const ttlMs = 1500;
    const script = `
      import { PostgresDatabase } from './collector/store/sql/postgres.ts';
      import { PostgresLease } from './collector/store/postgres/lease.ts';
      const db = new PostgresDatabase({ url: process.env.PW_PG_URL, max: 1 });
      const lease = new PostgresLease(db, { name: 'housekeeping', holder: 'child-' + process.pid, ttlMs: ${ttlMs},
        onChange: (e) => { if (e !== null) console.log('held ' + e); } });
      lease.start();
      setInterval(() => undefined, 1000);
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: ROOT,
      env: { ...process.env, PW_PG_URL: cluster.url },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(() => child.kill('SIGKILL'));
    const lines = createInterface({ input: child.stdout });
    const [line] = (await once(lines, 'line')) as [string];
    assert.match(line, /^held \d+$/);

    const heir = new PostgresLease(db, { name: 'housekeeping', holder: 'heir', ttlMs });
    // Renewed by the child (every ttl/3) for longer than one ttl: the heir is kept out.
    await sleep(ttlMs * 1.5);
    assert.equal(await heir.tryAcquire(), false);
    child.kill('SIGKILL');
    await once(child, 'exit');
    const killedAt = performance.now();
    await within(ttlMs + 2000, async () => ((await heir.tryAcquire()) ? true : undefined));
    const tookMs = performance.now() - killedAt;
    assert.ok(tookMs <= ttlMs + 2000, `taken over after ${Math.round(tookMs)} ms`);
    await heir.stop();
  });
});
