import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { generateKeyPair } from '../../shared/signing.ts';
import { audited, onEachEngine } from '../../shared/testing/store-engines.ts';
import { rowCount as count, enrollAgent as enroll, FLEET_NOW } from '../../shared/testing/store-fixtures.ts';
import type { ReplicaIdentity } from './replicas.ts';
import { sql } from './sql/query.ts';
import type { AsyncStore } from './store.ts';

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

  test('get, revoke (once, audited), markConnected, tags', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const id = await enroll(store);
    assert.equal((await store.agents.get(id))?.revokedAt, null);
    await store.agents.markConnected(id, 'replica-a', NOW);
    assert.equal((await store.agents.get(id))?.connected, true);
    assert.equal(await store.agents.revoke(id, 'cli:root', NOW), true);
    assert.equal(await store.agents.revoke(id, 'cli:root', NOW), false);
    assert.equal(await store.agents.revoke(randomUUID(), 'cli:root', NOW), false);
    const a = await store.agents.get(id);
    assert.equal(a?.revokedAt, NOW.toISOString());
    assert.equal(a.connected, false);
    assert.equal(a.connectedBy, null);
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
    // The refused one's agent row and audit row rolled back with it (on PostgreSQL both pass the check, one loses at the use).
    assert.deepEqual((await audited(db)).map((r) => r[1]), ['enrollment-token.create', 'agent.enroll']);
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

  test('a disconnect clears the mark only while its replica holds it: a late close of an old connection leaves the newer one marked', async (t) => {
    const { store } = await engine.open(t);
    const id = await enroll(store);
    const later = new Date(NOW.getTime() + HOUR);
    await store.agents.markConnected(id, 'replica-a', NOW);
    // The agent reconnected to replica b before a noticed its old connection had gone.
    await store.agents.markConnected(id, 'replica-b', later);
    assert.equal(await store.agents.markDisconnected(id, 'replica-a', later), false);
    let a = await store.agents.get(id);
    assert.deepEqual([a?.connected, a?.connectedBy, a?.lastSeen], [true, 'replica-b', later.toISOString()]);
    assert.equal(await store.agents.markDisconnected(id, 'replica-b', later), true);
    a = await store.agents.get(id);
    assert.deepEqual([a?.connected, a?.connectedBy], [false, null]);
    assert.equal(await store.agents.markDisconnected(id, 'replica-b', later), false, 'cleared once');
  });

  test('the sweep clears the marks of replicas whose heartbeat expired, and of none known; a live replica keeps its own', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const [live, dead, older, orphan] = [await enroll(store), await enroll(store), await enroll(store), await enroll(store)];
    await store.replicas.beat(identity('replica-live'), HOUR, () => []);
    // Stopped beating a minute ago (the database's clock is the machine's here).
    const beatAt = new Date(Date.now() - 60_000);
    await db.run(insertReplica, ['replica-dead', 'h2', 2, beatAt.toISOString(), beatAt.toISOString(), new Date(beatAt.getTime() + 15_000).toISOString()]);
    // Dead for longer than a day: its row goes too once its marks are cleared.
    await db.run(insertReplica, ['replica-older', 'h3', 3, '2000-01-01T00:00:00.000Z', '2000-01-01T00:00:00.000Z', '2000-01-01T00:00:15.000Z']);
    await store.agents.markConnected(live, 'replica-live', NOW);
    await store.agents.markConnected(dead, 'replica-dead', NOW);
    await store.agents.markConnected(older, 'replica-older', NOW);
    await store.agents.markConnected(orphan, 'a-replica-of-no-row', NOW);

    assert.deepEqual(await store.replicas.sweep({ orphans: false }), {
      replicas: [
        { id: 'replica-dead', heartbeatAt: beatAt.toISOString(), agents: 1 },
        { id: 'replica-older', heartbeatAt: '2000-01-01T00:00:00.000Z', agents: 1 },
      ],
      orphans: 0,
    });
    assert.deepEqual(await marks(store, [live, dead, older, orphan]), ['replica-live', null, null, 'a-replica-of-no-row']);
    assert.deepEqual((await store.replicas.list()).map((r) => [r.id, r.live]), [['replica-dead', false], ['replica-live', true]]);
    assert.deepEqual(await store.replicas.sweep({ orphans: true }), { replicas: [], orphans: 1 });
    assert.deepEqual(await marks(store, [live, dead, older, orphan]), ['replica-live', null, null, null]);
    assert.equal((await store.agents.get(dead))?.connected, false);
    // Connection marks are the collector's own bookkeeping: nothing of them is audited.
    assert.deepEqual((await db.all<{ action: string }>(actions)).map((r) => r.action), ['agent.enroll', 'agent.enroll', 'agent.enroll', 'agent.enroll']);
  });

  test('a replica that leaves clears its own marks and its row, not the others\'', async (t) => {
    const { store } = await engine.open(t);
    const [mine, theirs] = [await enroll(store), await enroll(store)];
    await store.replicas.beat(identity('replica-a'), HOUR, () => []);
    await store.replicas.beat(identity('replica-b'), HOUR, () => []);
    await store.agents.markConnected(mine, 'replica-a', NOW);
    await store.agents.markConnected(theirs, 'replica-b', NOW);
    assert.equal(await store.replicas.leave('replica-a'), 1);
    assert.deepEqual(await marks(store, [mine, theirs]), [null, 'replica-b']);
    assert.deepEqual((await store.replicas.list()).map((r) => r.id), ['replica-b']);
  });

  test('a replica whose heartbeat had expired marks its connections again, except those another replica holds now', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const [kept, moved, revoked] = [await enroll(store), await enroll(store), await enroll(store)];
    const self = identity('replica-a');
    assert.deepEqual(await store.replicas.beat(self, HOUR, () => []), { revived: true, remarked: 0 }, 'the first beat');
    for (const id of [kept, moved, revoked]) await store.agents.markConnected(id, 'replica-a', NOW);
    assert.deepEqual(await store.replicas.beat(self, HOUR, () => [kept, moved, revoked]), { revived: false, remarked: 0 });

    // Cut off from the database for longer than its lease: another replica swept its marks.
    await db.run(expireReplica, ['replica-a']);
    assert.equal((await store.replicas.sweep({ orphans: false })).replicas[0]?.agents, 3);
    await store.agents.markConnected(moved, 'replica-b', NOW);
    assert.equal(await store.agents.revoke(revoked, 'cli:root', NOW), true);

    assert.deepEqual(await store.replicas.beat(self, HOUR, () => [kept, moved, revoked]), { revived: true, remarked: 1 });
    assert.deepEqual(await marks(store, [kept, moved, revoked]), ['replica-a', 'replica-b', null]);
    const row = (await store.replicas.list()).find((r) => r.id === 'replica-a');
    assert.equal(row?.live, true);
    assert.equal(row.host, 'test-host');
    assert.equal(row.pid, 4242);
    assert.ok(row.expiresAt > row.heartbeatAt, `expires ${row.expiresAt} after its heartbeat ${row.heartbeatAt}`);
  });
});

const insertReplica = sql('INSERT INTO replicas (id, host, pid, started_at, heartbeat_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)');
const expireReplica = sql("UPDATE replicas SET expires_at = '2000-01-01T00:00:00.000Z' WHERE id = ?");

function identity(id: string): ReplicaIdentity {
  return { id, host: 'test-host', pid: 4242, startedAt: NOW.toISOString() };
}

async function marks(store: AsyncStore, ids: readonly string[]): Promise<(string | null)[]> {
  const out: (string | null)[] = [];
  for (const id of ids) {
    const a = await store.agents.get(id);
    assert.ok(a !== undefined, id);
    assert.equal(a.connected, a.connectedBy !== null, 'connected exactly when a replica is named');
    out.push(a.connectedBy);
  }
  return out;
}
