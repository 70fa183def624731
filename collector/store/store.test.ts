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

function enroll(store: ReturnType<typeof openStore>, hostname: string): Promise<string> {
  return store.async.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname, machineId: null, tokenId: null }, NOW);
}

describe('openStore (sqlite)', () => {
  it('makes and migrates the file; every part shares the one connection', async (t) => {
    const store = openStore({ kind: 'sqlite', path: await tempPath(t) });
    t.after(() => {
      store.close();
    });
    assert.equal(store.kind, 'sqlite');
    const id = await enroll(store, 'web-1');
    assert.equal((await store.async.agents.get(id))?.hostname, 'web-1');
    assert.deepEqual((await store.async.audit.list({ limit: 10 })).entries.map((e) => e.action), ['agent.enroll']);
    assert.deepEqual(await store.async.advisories.feeds(), []);
    assert.deepEqual(await store.async.apiTokens.list(), []);
    assert.equal((await store.async.rollouts.list()).length, 0);
    assert.equal(await store.async.reportImports.lastSeq(), 0);
  });

  // What the rollout engine, the findings service and every audited change rely on.
  it('AsyncStore.transaction: all of it commits or none, and an inner call rolls back alone', async (t) => {
    const store = openStore({ kind: 'sqlite', path: await tempPath(t) });
    t.after(() => {
      store.close();
    });
    const parts = store.async;
    const enrollOn = (tx: typeof parts, hostname: string) => tx.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname, machineId: null, tokenId: null }, NOW);
    await assert.rejects(
      parts.transaction(async (tx) => {
        await enrollOn(tx, 'web-1');
        await tx.exceptions.add({ advisory: 'ALSA-2025:1', owner: 'sec', reason: 'waf', expires: '2027-01-01T00:00:00.000Z' }, 'cli:test', NOW);
        throw new Error('changed my mind');
      }),
      /changed my mind/,
    );
    assert.deepEqual([await parts.exceptions.all(), (await parts.audit.list({ limit: 10 })).entries, (await parts.summary.counts()).agents.enrolled], [[], [], 0]);
    const id = await parts.transaction(async (tx) => {
      const kept = await enrollOn(tx, 'web-2');
      await assert.rejects(
        tx.transaction(async (inner) => {
          await enrollOn(inner, 'web-3');
          throw new Error('inner only');
        }),
      );
      return kept;
    });
    assert.deepEqual((await parts.audit.list({ limit: 10 })).entries.map((e) => e.target), [`agent:${id}`]);
    assert.equal((await parts.summary.counts()).agents.enrolled, 1);
  });

  it('a transaction takes the write lock at its start: a writer in another process waits for it, not the reverse after its reads', async (t) => {
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
    assert.equal(otherWriter(), true, 'no transaction open: the other process writes');
    assert.equal(await store.async.transaction(() => Promise.resolve(otherWriter())), false, 'another writer waits for the open transaction');
    assert.equal((await store.async.health.check()).answers, true);
  });

  it('close writes the batched last-seen times first', async (t) => {
    const path = await tempPath(t);
    const store = openStore({ kind: 'sqlite', path });
    const id = await enroll(store, 'web-1');
    await store.async.agents.seenLater(id, NOW);
    store.close();
    store.close();
    const reader = openStore({ kind: 'sqlite', path, readonly: true });
    t.after(() => {
      reader.close();
    });
    assert.equal((await reader.async.agents.get(id))?.lastSeen, NOW.toISOString());
    await assert.rejects(enroll(reader, 'web-2'), /readonly/);
  });

  it('storeOn: a store over a connection the caller holds', async (t) => {
    const db = openDatabase(await tempPath(t));
    const store = storeOn(db);
    assert.equal(store.db, db);
    assert.equal(await store.async.agents.get(randomUUID()), undefined);
    store.close();
    assert.equal(db.open, false);
  });
});
