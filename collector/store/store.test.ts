import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { generateKeyPair } from '../../shared/signing.ts';
import { openDatabase } from './db.ts';
import { openStore, storeOn } from './store.ts';

const NOW = new Date('2026-11-26T18:00:00.000Z');

async function tempPath(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-store-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return join(dir, 'c.db');
}

function enroll(store: ReturnType<typeof openStore>, hostname: string): string {
  return store.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname, machineId: null, tokenId: null }, NOW);
}

describe('openStore (sqlite)', () => {
  it('makes and migrates the file; every part shares the one connection', async (t) => {
    const store = openStore({ kind: 'sqlite', path: await tempPath(t) });
    t.after(() => {
      store.close();
    });
    assert.equal(store.kind, 'sqlite');
    const id = enroll(store, 'web-1');
    assert.equal(store.agents.get(id)?.hostname, 'web-1');
    assert.deepEqual(store.audit.list({ limit: 10 }).entries.map((e) => e.action), ['agent.enroll']);
    assert.deepEqual(store.advisories.feeds(), []);
    assert.deepEqual(await store.async.apiTokens.list(), []);
    assert.equal((await store.async.rollouts.list()).length, 0);
    assert.equal(store.reportImports.lastSeq(), 0);
  });

  it('inTransaction: a throw rolls back every part written inside it', async (t) => {
    const store = openStore({ kind: 'sqlite', path: await tempPath(t) });
    t.after(() => {
      store.close();
    });
    assert.throws(
      () =>
        store.inTransaction(() => {
          enroll(store, 'web-1');
          // API tokens and exceptions are on the asynchronous store now: the synchronous audit log stands in as the second part.
          store.audit.record('test', 'api-token.create', 'api-token:ci', null, NOW);
          throw new Error('changed my mind');
        }),
      /changed my mind/,
    );
    assert.deepEqual([await store.async.apiTokens.list(), store.audit.list({ limit: 10 }).entries], [[], []]);
    assert.equal(store.inTransaction(() => enroll(store, 'web-2')).length, 36);
  });

  // What RolloutEngine (inTransaction, inImmediateTransaction) and HostFindings (transactional) rely on.
  const ways: { name: string; run: (store: ReturnType<typeof openStore>, fn: () => string) => string }[] = [
    { name: 'inTransaction', run: (store, fn) => store.inTransaction(fn) },
    { name: 'inImmediateTransaction', run: (store, fn) => store.inImmediateTransaction(fn) },
    { name: 'transactional', run: (store, fn) => store.transactional(fn)() },
  ];
  for (const way of ways) {
    it(`${way.name}: all of it commits or none, and an inner call rolls back alone`, async (t) => {
      const store = openStore({ kind: 'sqlite', path: await tempPath(t) });
      t.after(() => {
        store.close();
      });
      assert.throws(
        () =>
          way.run(store, () => {
            enroll(store, 'web-1');
            store.audit.record('cli:test', 'exception.add', 'exception:1', null, NOW);
            throw new Error('changed my mind');
          }),
        /changed my mind/,
      );
      assert.deepEqual([store.audit.list({ limit: 10 }).entries, (await store.async.summary.counts()).agents.enrolled], [[], 0]);
      const id = way.run(store, () => {
        const kept = enroll(store, 'web-2');
        assert.throws(() =>
          store.inTransaction(() => {
            enroll(store, 'web-3');
            throw new Error('inner only');
          }),
        );
        return kept;
      });
      assert.deepEqual(store.audit.list({ limit: 10 }).entries.map((e) => e.target), [`agent:${id}`]);
      assert.equal((await store.async.summary.counts()).agents.enrolled, 1);
    });
  }

  it('inImmediateTransaction takes the write lock at its start; inTransaction only at its first write', async (t) => {
    const path = await tempPath(t);
    const store = openStore({ kind: 'sqlite', path });
    const other = openDatabase(path);
    t.after(() => {
      other.close();
      store.close();
    });
    other.pragma('busy_timeout = 0');
    const otherWriter = (): boolean => {
      try {
        other.prepare('BEGIN IMMEDIATE').run();
        other.prepare('ROLLBACK').run();
        return true;
      } catch (err) {
        assert.match(String(err), /database is locked/);
        return false;
      }
    };
    assert.equal(store.inTransaction(otherWriter), true, 'a deferred transaction that has not written holds no lock');
    assert.equal(store.inImmediateTransaction(otherWriter), false, 'another writer waits for the immediate one');
    assert.equal(store.health.check().answers, true);
  });

  it('close writes the batched last-seen times first', async (t) => {
    const path = await tempPath(t);
    const store = openStore({ kind: 'sqlite', path });
    const id = enroll(store, 'web-1');
    store.agents.seenLater(id, NOW);
    store.close();
    store.close();
    const reader = openStore({ kind: 'sqlite', path, readonly: true });
    t.after(() => {
      reader.close();
    });
    assert.equal(reader.agents.get(id)?.lastSeen, NOW.toISOString());
    assert.throws(() => enroll(reader, 'web-2'), /readonly/);
  });

  it('storeOn: a store over a connection the caller holds', async (t) => {
    const db = openDatabase(await tempPath(t));
    const store = storeOn(db);
    assert.equal(store.db, db);
    assert.equal(store.agents.get(randomUUID()), undefined);
    store.close();
    assert.equal(db.open, false);
  });
});
