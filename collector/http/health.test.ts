/**
 * /healthz against real SQLite files on a real collector (127.0.0.1:0): a file with table
 * pages overwritten by random bytes, a store that cannot commit, a store with no room to
 * grow. Each answered `{status:'ok'}` before, because `SELECT 1` still worked.
 */
import assert from 'node:assert/strict';
import { openSync, closeSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it, type TestContext } from 'node:test';
import { collectInventory } from '../../agent/inventory/inventory.ts';
import type { Inventory } from '../../shared/protocol.ts';
import { seededRandom } from '../../shared/testing/random.ts';
import { startCollector } from '../../shared/testing/collector-harness.ts';
import { openDatabase } from '../store/db.ts';
import { createCollector } from '../server.ts';
import { createLogger } from '../logger.ts';

interface Health {
  status: string;
  db: boolean;
  store: { writable: boolean; lastWriteAt: string | null; freeBytes: number | null; integrity: string; integrityCheckedAt: string | null; integrityAgeSeconds: number | null; integrityIntervalSeconds: number | null };
  problems?: { code: string; message: string }[];
}

async function health(url: string): Promise<{ status: number; body: Health }> {
  const res = await fetch(`${url}/healthz`);
  return { status: res.status, body: (await res.json()) as Health };
}

/** Polls until the first quick_check has a result. */
async function afterCheck(url: string, timeoutMs = 15_000): Promise<{ status: number; body: Health }> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const h = await health(url);
    if (h.body.store.integrity !== 'pending') return h;
    if (Date.now() > until) throw new Error('no quick_check result in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function codes(h: Health): string[] {
  return (h.problems ?? []).map((p) => p.code);
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-health-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const quiet = () => createLogger({ level: 'silent' });

let thisHost: Inventory;
before(async () => {
  thisHost = await collectInventory();
});

describe('/healthz tells the truth about the store', () => {
  it('a healthy store: 200 with a committed heartbeat, its room, and the quick_check result with its age', async (t) => {
    const tc = await startCollector(t, { health: { integrityFirstDelayMs: 0 } });
    const { status, body } = await afterCheck(tc.collector.url);
    assert.equal(status, 200);
    assert.equal(body.status, 'ok');
    assert.equal(body.db, true);
    assert.equal(body.store.writable, true);
    assert.ok(body.store.lastWriteAt !== null && Date.now() - Date.parse(body.store.lastWriteAt) < 60_000);
    assert.ok(body.store.freeBytes !== null && body.store.freeBytes > 0);
    assert.equal(body.store.integrity, 'ok');
    assert.ok(body.store.integrityCheckedAt !== null);
    assert.equal(typeof body.store.integrityAgeSeconds, 'number');
    assert.equal(body.store.integrityIntervalSeconds, 3600);
    assert.equal(body.problems, undefined);
    const beat = tc.collector.sqlite!.db.prepare('SELECT at FROM store_heartbeat WHERE id = 1').get() as { at: string } | undefined;
    assert.equal(beat?.at, body.store.lastWriteAt);
  });

  it('probes closer together than the write interval commit once: 50 probes, one heartbeat', async (t) => {
    const tc = await startCollector(t);
    const first = await health(tc.collector.url);
    const changes = tc.collector.sqlite!.db.prepare('SELECT total_changes() AS n').pluck();
    const before = changes.get() as number;
    for (let i = 0; i < 50; i++) assert.equal((await health(tc.collector.url)).body.store.lastWriteAt, first.body.store.lastWriteAt);
    // total_changes counts this connection's row writes: the heartbeat made none.
    assert.equal((changes.get() as number) - before, 0);
  });

  it('a real SQLite file with random table pages overwritten: 503 PW_ERR_STORE_INTEGRITY once the quick_check ran, though SELECT 1 still answers', async (t) => {
    const dir = await tempDir(t);
    const dbPath = join(dir, 'collector.db');
    // A store with an audit trail of ~1 MB: pages no start-up query reads, so the collector
    // starts and serves, as it did on the damaged file in the issue.
    const db = openDatabase(dbPath);
    const audit = db.prepare('INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)');
    const rnd = seededRandom(10_9);
    const detail = (): string => JSON.stringify({ note: Array.from({ length: 300 }, () => Math.floor(rnd() * 36).toString(36)).join('') });
    db.transaction(() => {
      for (let i = 0; i < 3000; i++) audit.run(new Date().toISOString(), 'test', 'token.create', `token:${i}`, detail());
    })();
    const pages = db
      .prepare<[], { pageno: number }>("SELECT pageno FROM dbstat WHERE name = 'audit' AND pagetype = 'leaf'")
      .all()
      .map((r) => r.pageno);
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    db.close(); // checkpoints the WAL into the file and removes it: the pages below are the live ones
    assert.ok(pages.length > 100, `${pages.length} audit pages`);
    const fd = openSync(dbPath, 'r+');
    try {
      for (let i = 0; i < 4; i++) {
        const page = pages[Math.floor(rnd() * (pages.length - 1))] as number; // never the last: new audit rows land there
        const junk = Buffer.alloc(pageSize);
        for (let b = 0; b < pageSize; b++) junk[b] = Math.floor(rnd() * 256);
        writeSync(fd, junk, 0, pageSize, (page - 1) * pageSize);
      }
    } finally {
      closeSync(fd);
    }

    const collector = await createCollector({ dbPath, listen: '127.0.0.1:0', logger: quiet(), health: { integrityFirstDelayMs: 0 } });
    t.after(() => collector.close());
    assert.equal((collector.sqlite!.db.prepare('SELECT 1 AS ok').get() as { ok: number }).ok, 1);
    const { status, body } = await afterCheck(collector.url);
    assert.equal(status, 503);
    assert.equal(body.status, 'error');
    assert.equal(body.db, true);
    assert.equal(body.store.integrity, 'corrupt');
    assert.ok(body.store.integrityCheckedAt !== null);
    assert.deepEqual(codes(body), ['PW_ERR_STORE_INTEGRITY']);
    assert.match(body.problems?.[0]?.message ?? '', /quick_check found the database damaged/);
  });

  it('a store that cannot commit (every write refused by SQLite, as on a read-only file): 503 PW_ERR_STORE_UNWRITABLE, then 200 once it can', async (t) => {
    const tc = await startCollector(t, { health: { writeIntervalMs: 0 } });
    assert.equal((await health(tc.collector.url)).status, 200);
    // query_only makes SQLite refuse every write with SQLITE_READONLY, the error a collector
    // gets from a file it may read but not write (a restore as another user, a read-only
    // mount). Root, which runs these tests, cannot be kept from writing a file by its mode.
    tc.collector.sqlite!.db.pragma('query_only = ON');
    await assert.rejects(tc.collector.store.tokens.create({ uses: 1, ttlMs: 60_000, createdBy: 'test' }), { code: 'SQLITE_READONLY' });
    const down = await health(tc.collector.url);
    assert.equal(down.status, 503);
    assert.equal(down.body.store.writable, false);
    assert.deepEqual(codes(down.body), ['PW_ERR_STORE_UNWRITABLE']);
    assert.match(down.body.problems?.[0]?.message ?? '', /cannot commit: attempt to write a readonly database \(SQLITE_READONLY\)/);
    tc.collector.sqlite!.db.pragma('query_only = OFF');
    assert.equal((await health(tc.collector.url)).status, 200);
  });

  it('a store with no room to grow (SQLite max_page_count reached): a report fails to store and /healthz answers 503 PW_ERR_STORE_FULL', async (t) => {
    const tc = await startCollector(t, { health: { writeIntervalMs: 0 } });
    const { client } = await tc.agent();
    assert.equal((await health(tc.collector.url)).status, 200);
    // SQLite refuses to grow the file past max_page_count with SQLITE_FULL ("database or
    // disk is full"), the error a full filesystem gives; it cannot be set below the pages in use.
    tc.collector.sqlite!.db.pragma(`max_page_count = ${String(tc.collector.sqlite!.db.pragma('page_count', { simple: true }))}`);
    await assert.rejects(client.report(thisHost), /PW_ERR_STORE/);
    const down = await health(tc.collector.url);
    assert.equal(down.status, 503);
    assert.equal(down.body.store.writable, false);
    assert.ok((down.body.store.freeBytes ?? Infinity) < 64 * 1024 * 1024);
    assert.deepEqual(codes(down.body), ['PW_ERR_STORE_FULL']);
  });

  it('a filesystem with less free space than the floor: 503 PW_ERR_STORE_FULL, from the real statfs', async (t) => {
    const tc = await startCollector(t, { health: { minFreeBytes: Number.MAX_SAFE_INTEGER } });
    const down = await health(tc.collector.url);
    assert.equal(down.status, 503);
    assert.deepEqual(codes(down.body), ['PW_ERR_STORE_FULL']);
    assert.match(down.body.problems?.[0]?.message ?? '', /bytes of room left/);
  });
});
