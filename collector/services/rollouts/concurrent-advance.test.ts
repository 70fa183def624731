/**
 * A rollout advanced by several transactions at once, as on PostgreSQL: the results of a
 * wave's last hosts arrive on two replicas together, and a tick runs beside them. Only one
 * of them may start the next wave; the others find it started. And a replica that dies
 * between recording a result and advancing leaves the advance to the agent's re-sent result.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { inventoryHash } from '../../../shared/inventory-hash.ts';
import { signInstruction } from '../../../shared/instructions.ts';
import { generateKeyPair } from '../../../shared/signing.ts';
import { almaInventory } from '../../../shared/testing/http-fixture.ts';
import { NOW, resultFor } from '../../../shared/testing/rollout-bench.ts';
import { type Engine, onEachEngine } from '../../../shared/testing/store-engines.ts';
import { sql } from '../../store/sql/query.ts';
import { RolloutEngine, type RolloutEngineStore } from './engine.ts';

const KEY = generateKeyPair();
const agentRow = sql('INSERT INTO agents (id, public_key, hostname, enrolled_at) VALUES (?, ?, ?, ?)');

/** Enrolled agents with a stored inventory each (a rollout plans only such hosts). */
async function hosts(store: Awaited<ReturnType<Engine['open']>>['store'], db: Awaited<ReturnType<Engine['open']>>['sql'], n: number): Promise<string[]> {
  const agentIds: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = randomUUID();
    await db.run(agentRow, [id, generateKeyPair().publicKey, `alma-${i}`, NOW.toISOString()]);
    const inv = almaInventory(`alma-${i}`);
    await store.reports.ingest(id, randomUUID(), inventoryHash(inv), inv, NOW);
    agentIds.push(id);
  }
  return agentIds;
}

function engineOn(store: RolloutEngineStore): RolloutEngine {
  return new RolloutEngine({ store, findings: () => Promise.resolve([]), signer: (i) => signInstruction(i, KEY.privateKeyPem), now: () => NOW, onError: () => undefined });
}

onEachEngine('RolloutEngine advanced concurrently', (engine) => {
  test('results and ticks on two replicas at once start the next wave once: each host gets one instruction', async (t) => {
    const { store, sql: db, another } = await engine.open(t);
    // SQLite has one collector process (its transactions queue on one connection); PostgreSQL a replica per store.
    const other = engine.name === 'postgres' ? await another() : store;
    const agentIds = await hosts(store, db, 7);
    const [a, b] = [engineOn(store), engineOn(other)];
    const id = await a.create({ name: 'refresh', target: { agentIds }, action: { kind: 'refresh' }, waves: { canary: { hosts: 3 }, growth: { sizes: [4] } }, waitMinutes: 0 }, 'cli:alice');
    assert.equal(await a.submit(id, 'cli:alice'), 'running');
    const first = (await store.outbox.forRollout(id)).map((o) => ({ id: o.id, agentId: o.agentId }));
    assert.equal(first.length, 3, 'the canary wave');
    // The canary's results, each on a replica of its own, with ticks on both beside them.
    await Promise.all([
      ...first.map((o, i) => (i % 2 === 0 ? a : b).onResult(o.agentId, resultFor(o.id, 'succeeded', NOW))),
      a.tick(),
      b.tick(),
      a.tick(),
      b.tick(),
    ]);
    const entries = await store.outbox.forRollout(id);
    const perAgent = new Map<string, number>();
    for (const e of entries) perAgent.set(e.agentId, (perAgent.get(e.agentId) ?? 0) + 1);
    assert.deepEqual([...perAgent.values()], Array.from({ length: 7 }, () => 1), 'one instruction per host of both waves');
    const r = await a.get(id);
    assert.equal(r.currentWave, 1);
    assert.deepEqual(
      (await store.audit.list({ action: 'rollout.wave-start', limit: 10 })).entries.map((e) => (JSON.parse(e.detail ?? '{}') as { wave: number }).wave),
      [1, 0],
      'each wave started once',
    );
  });

  test('a result re-sent after the replica that recorded it died before advancing moves the rollout on', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const agentIds = await hosts(store, db, 3);
    const a = engineOn(store);
    const id = await a.create({ name: 'refresh', target: { agentIds }, action: { kind: 'refresh' }, waves: { canary: { hosts: 1 }, growth: { sizes: [2] } }, waitMinutes: 0 }, 'cli:alice');
    await a.submit(id, 'cli:alice');
    const [canary] = await store.outbox.forRollout(id);
    assert.ok(canary !== undefined);
    const result = resultFor(canary.id, 'succeeded', NOW);
    // What the dead replica committed: the result and its host, not the advance that was to follow.
    await store.transaction(async (tx) => {
      await tx.outbox.recordResult(canary.agentId, result, NOW);
      await tx.rollouts.updateHost(id, canary.agentId, { state: 'succeeded', steps: [], result }, NOW);
    });
    assert.equal((await a.get(id)).currentWave, 0);
    // The agent had no ack, so it sends the result again, to the replica it reaches next.
    assert.equal(await engineOn(store).onResult(canary.agentId, result), true);
    assert.equal((await a.get(id)).currentWave, 1, 'the next wave started without waiting for a tick');
    assert.equal((await store.outbox.forRollout(id)).length, 3);
  });
});
