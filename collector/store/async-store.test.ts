import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { generateKeyPair } from '../../shared/signing.ts';
import { loadOsv } from '../../shared/testing/correlate-fixtures.ts';
import { dataPath } from '../../shared/testing/data.ts';
import { type AsyncStore, openStore, type Store } from './store.ts';

const NOW = new Date('2026-11-26T18:00:00.000Z');

async function tempStore(t: TestContext): Promise<Store> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-async-store-'));
  const store = openStore({ kind: 'sqlite', path: join(dir, 'c.db') });
  t.after(async () => {
    store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return store;
}

function enroll(store: AsyncStore, hostname: string): Promise<string> {
  return store.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname, machineId: null, tokenId: null }, NOW);
}

async function actions(store: AsyncStore): Promise<string[]> {
  return (await store.audit.list({ limit: 100 })).entries.map((e) => e.action).reverse();
}

describe('AsyncStore over SQLite', () => {
  it('a part’s results come back as promises, its refusals as rejections', async (t) => {
    const store = (await tempStore(t)).async;
    const id = await enroll(store, 'web-1');
    assert.equal((await store.agents.get(id))?.hostname, 'web-1');
    assert.equal(await store.agents.get('no-such-agent'), undefined);
    const agent = await store.agents.get(id);
    await assert.rejects(store.agents.enroll({ publicKey: agent?.publicKey ?? '', hostname: 'again', machineId: null, tokenId: null }, NOW), {
      name: 'AgentRefusedError',
    });
  });

  it('a transaction commits everything its function did, or, when it rejects, nothing', async (t) => {
    const store = (await tempStore(t)).async;
    await store.transaction(async (tx) => {
      await enroll(tx, 'kept');
      await tx.audit.record('test', 'test.kept', null, null, NOW);
    });
    await assert.rejects(
      store.transaction(async (tx) => {
        await enroll(tx, 'dropped');
        await tx.audit.record('test', 'test.dropped', null, null, NOW);
        throw new Error('changed my mind');
      }),
      /changed my mind/,
    );
    assert.deepEqual(await actions(store), ['agent.enroll', 'test.kept']);
  });

  it('a transaction inside a transaction is a savepoint: it rolls back alone and the outer one goes on', async (t) => {
    const store = (await tempStore(t)).async;
    await store.transaction(async (tx) => {
      await tx.audit.record('test', 'outer.before', null, null, NOW);
      await assert.rejects(
        tx.transaction(async (inner) => {
          await inner.audit.record('test', 'inner', null, null, NOW);
          throw new Error('inner refused');
        }),
        /inner refused/,
      );
      await tx.transaction((inner) => inner.audit.record('test', 'inner.kept', null, null, NOW));
      await tx.audit.record('test', 'outer.after', null, null, NOW);
    });
    assert.deepEqual(await actions(store), ['outer.before', 'inner.kept', 'outer.after']);
  });

  it('a statement issued while a transaction is open waits for its end, so a rollback never takes it along', async (t) => {
    const store = (await tempStore(t)).async;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const inside = store.transaction(async (tx) => {
      await tx.audit.record('test', 'inside', null, null, NOW);
      await held;
      throw new Error('rolled back');
    });
    // Issued while the transaction is open: it must not land inside it.
    const outside = store.audit.record('test', 'outside', null, null, NOW);
    const listed = actions(store);
    release();
    await assert.rejects(inside, /rolled back/);
    await outside;
    assert.deepEqual(await listed, ['outside']);
  });

  it('a generator method is an async generator that reads page by page; other statements run between its items', async (t) => {
    const store = await tempStore(t);
    // Real AlmaLinux 9 advisories: 1,783 of them, so two pages and a part of a paged read.
    const alma = await loadOsv(dataPath('osv', 'almalinux9.osv.jsonl.gz'));
    assert.ok(alma.length > 1500, `${alma.length} advisories`);
    await store.async.advisories.importFeed({ source: 'alma9', kind: 'file', location: null }, alma, [], NOW);
    const read: string[] = [];
    for await (const a of store.async.advisories.allAdvisories()) {
      read.push(`${a.source}/${a.id}`);
      // A write between items: with a cursor held open across items, better-sqlite3 refuses it.
      if (read.length % 1000 === 1) await store.async.audit.record('test', 'between', null, null, NOW);
    }
    assert.deepEqual(read, alma.map((a) => `${a.source}/${a.id}`).sort());
    const exported: string[] = [];
    for await (const r of store.async.advisories.feedRecords('alma9')) if ('advisory' in r) exported.push(r.advisory.id);
    assert.equal(exported.length, alma.length);
  });
});
