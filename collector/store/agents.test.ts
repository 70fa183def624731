import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { generateKeyPair } from '../../shared/signing.ts';
import { onEachEngine } from '../../shared/testing/store-engines.ts';
import { rowCount as count, enrollAgent as enroll, FLEET_NOW } from '../../shared/testing/store-fixtures.ts';
import { sql } from './sql/query.ts';

const NOW = FLEET_NOW;
const HOUR = 3600_000;

const usesLeft = sql('SELECT uses_left FROM enrollment_tokens WHERE id = ?');
const actions = sql('SELECT action FROM audit ORDER BY id');
const lastSeen = sql('SELECT last_seen FROM agents WHERE id = ?');

onEachEngine('Agents', (engine) => {
  test('enrollWithToken: a key enrolled already is refused and does not use up the token', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const { token, id } = await store.tokens.create({ uses: 2, ttlMs: HOUR, createdBy: 'test' }, NOW);
    const key = generateKeyPair().publicKey;
    const first = await store.agents.enrollWithToken(token, { publicKey: key, hostname: 'web-1', machineId: null }, NOW);
    assert.equal(first.ok, true);
    await assert.rejects(store.agents.enrollWithToken(token, { publicKey: key, hostname: 'web-1', machineId: null }, NOW), { name: 'AgentRefusedError', code: 'PW_ERR_ALREADY_ENROLLED', reason: 'already-enrolled' });
    assert.equal((await db.get<{ uses_left: number }>(usesLeft, [id]))?.uses_left, 1);
    assert.equal(await count(db, 'agents'), 1);
  });

  test('enrollWithToken returns the refusal reason and stores no agent', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const r = await store.agents.enrollWithToken('y'.repeat(43), { publicKey: generateKeyPair().publicKey, hostname: 'web-1', machineId: null }, NOW);
    assert.deepEqual(r, { ok: false, reason: 'unknown' });
    assert.equal(await count(db, 'agents'), 0);
  });

  test('get, revoke (once, audited), setConnected, tags', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const id = await enroll(store);
    assert.equal((await store.agents.get(id))?.revokedAt, null);
    await store.agents.setConnected(id, true, NOW);
    assert.equal((await store.agents.get(id))?.connected, true);
    assert.equal(await store.agents.revoke(id, 'cli:root', NOW), true);
    assert.equal(await store.agents.revoke(id, 'cli:root', NOW), false);
    assert.equal(await store.agents.revoke(randomUUID(), 'cli:root', NOW), false);
    const a = await store.agents.get(id);
    assert.equal(a?.revokedAt, NOW.toISOString());
    assert.equal(a.connected, false);
    assert.equal(await store.agents.get(randomUUID()), undefined);
    assert.equal(await store.agents.setTags(id, ['prod', 'eu', 'prod'], 'cli:root', NOW), true);
    assert.deepEqual((await store.agents.get(id))?.tags, ['eu', 'prod']);
    const rows = await db.all<{ action: string }>(actions);
    assert.deepEqual(rows.map((r) => r.action), ['agent.enroll', 'agent.revoke', 'agent.tags']);
  });

  test('two agents enrolling at once with the last use of a token: one is enrolled, the other refused as used-up', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const { token, id } = await store.tokens.create({ uses: 1, ttlMs: HOUR, createdBy: 'test' }, NOW);
    const results = await Promise.all(
      ['web-1', 'web-2'].map((hostname) => store.agents.enrollWithToken(token, { publicKey: generateKeyPair().publicKey, hostname, machineId: null }, NOW)),
    );
    assert.deepEqual(results.map((r) => r.ok).sort(), [false, true]);
    assert.deepEqual(results.find((r) => !r.ok), { ok: false, reason: 'used-up' });
    assert.equal((await db.get<{ uses_left: number }>(usesLeft, [id]))?.uses_left, 0);
    assert.equal(await count(db, 'agents'), 1);
  });

  test('batched last-seen times: a read flushes them, a later touch never moves last_seen back, close writes them', async (t) => {
    const { store, sql: db, another } = await engine.open(t);
    const id = await enroll(store);
    const later = new Date(NOW.getTime() + HOUR);
    await store.agents.seenLater(id, later);
    await store.agents.seenLater(id, NOW);
    assert.equal((await db.get<{ last_seen: string | null }>(lastSeen, [id]))?.last_seen, null, 'batched, not written yet');
    assert.equal((await store.agents.get(id))?.lastSeen, later.toISOString(), 'a read writes them first; the latest time wins');
    await store.agents.touch([id], NOW);
    assert.equal((await store.agents.get(id))?.lastSeen, later.toISOString(), 'an older touch does not move last_seen back');

    // Another store's pending touch is written by its close().
    const other = await another();
    const latest = new Date(NOW.getTime() + 2 * HOUR);
    await other.agents.seenLater(id, latest);
    await other.close();
    assert.equal((await db.get<{ last_seen: string | null }>(lastSeen, [id]))?.last_seen, latest.toISOString());
  });

  test('a revocation by another store on the same database is seen by the next report state', async (t) => {
    const { store, another } = await engine.open(t);
    const id = await enroll(store);
    // Twice, so that SQLite's store holds the state in memory before the change.
    assert.deepEqual(await store.agents.reportState(id), { revokedAt: null, lastInventoryHash: null });
    assert.deepEqual(await store.agents.reportState(id), { revokedAt: null, lastInventoryHash: null });
    const other = await another();
    assert.equal(await other.agents.revoke(id, 'cli:root', NOW), true);
    assert.deepEqual(await store.agents.reportState(id), { revokedAt: NOW.toISOString(), lastInventoryHash: null });
  });

  test('a rolled-back transaction leaves no agent, no audit row and the token unused', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const { token, id } = await store.tokens.create({ uses: 1, ttlMs: HOUR, createdBy: 'test' }, NOW);
    await assert.rejects(
      store.transaction(async (tx) => {
        const r = await tx.agents.enrollWithToken(token, { publicKey: generateKeyPair().publicKey, hostname: 'web-1', machineId: null }, NOW);
        assert.equal(r.ok, true);
        throw new Error('changed my mind');
      }),
      /changed my mind/,
    );
    assert.equal(await count(db, 'agents'), 0);
    assert.deepEqual((await db.all<{ action: string }>(actions)).map((r) => r.action), ['enrollment-token.create']);
    assert.equal((await db.get<{ uses_left: number }>(usesLeft, [id]))?.uses_left, 1);
  });
});
