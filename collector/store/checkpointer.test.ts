import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { createLogger } from '../logger.ts';
import { BACKSTOP_PAGES, WalCheckpointer } from './checkpointer.ts';
import type { Db } from './db.ts';
import { tempDatabase } from '../../shared/testing/store-fixtures.ts';

async function tempDb(t: TestContext): Promise<{ db: Db; path: string }> {
  const fx = await tempDatabase(t, 'checkpoint');
  fx.db.exec('CREATE TABLE IF NOT EXISTS bulk (id INTEGER PRIMARY KEY, body TEXT NOT NULL)');
  return fx;
}

async function until(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Pages the WAL holds that are not yet in the database file, as the main connection sees them. */
function walBacklog(db: Db): number {
  // PASSIVE from the main connection here only measures: the worker has done the work.
  const [r] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
  return r === undefined ? -1 : r.log - r.checkpointed;
}

describe('WalCheckpointer: WAL checkpoints on a worker thread', () => {
  it('checkpoints what the main connection commits, which keeps only the backstop threshold', async (t) => {
    const { db, path } = await tempDb(t);
    const cp = new WalCheckpointer(db, { path, intervalMs: 20, logger: createLogger({ level: 'silent' }) });
    t.after(() => cp.stop());
    assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), BACKSTOP_PAGES);
    const insert = db.prepare('INSERT INTO bulk (body) VALUES (?)');
    const body = 'x'.repeat(3000);
    // 40 commits of about 100 pages each (4x the default automatic threshold of 1,000),
    // a little slower than the worker's interval, as reports trickle in.
    for (let c = 0; c < 40; c++) {
      db.transaction(() => {
        for (let i = 0; i < 100; i++) insert.run(body);
      })();
      await new Promise((r) => setTimeout(r, 40));
    }
    await until('a background checkpoint', () => cp.stats.checkpoints > 0 && cp.stats.walFrames > 0);
    assert.equal(cp.stats.failures, 0);
    // The worker keeps up: nothing, or almost nothing, is left for the main connection.
    await until('the WAL to be checkpointed', () => walBacklog(db) === 0);
    // Checkpointed between commits, the WAL was restarted from its start rather than grown
    // by every commit (12 MB were written through it).
    assert.ok(statSync(`${path}-wal`).size < 4 * 1024 * 1024, `WAL is ${String(statSync(`${path}-wal`).size)} bytes`);
    assert.equal((db.prepare('SELECT count(*) AS n FROM bulk').get() as { n: number }).n, 4000);
  });

  it('stop() makes a last checkpoint and ends the worker; a second stop() is a no-op', async (t) => {
    const { db, path } = await tempDb(t);
    const cp = new WalCheckpointer(db, { path, intervalMs: 60_000, logger: createLogger({ level: 'silent' }) });
    db.prepare('INSERT INTO bulk (body) VALUES (?)').run('only row');
    await cp.stop();
    await cp.stop();
    assert.equal(cp.stats.checkpoints, 1, 'the checkpoint at stop, none from the (minute-long) timer');
    assert.equal(walBacklog(db), 0);
  });

  it('a database the worker cannot open: the failure is counted and logged, the main connection keeps its backstop', async (t) => {
    const { db } = await tempDb(t);
    const lines: string[] = [];
    const logger = createLogger({ level: 'warn', destination: { write: (s: string) => lines.push(s) } });
    const cp = new WalCheckpointer(db, { path: join(tmpdir(), 'pw-no-such-dir', 'absent.db'), intervalMs: 20, logger });
    t.after(() => cp.stop());
    await until('the worker failure', () => cp.stats.failures > 0);
    assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), BACKSTOP_PAGES);
    assert.ok(lines.some((l) => l.includes('PW_ERR_STORE')), lines.join('\n'));
  });
});
