import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { instructionSignatureValid, signInstruction, type Instruction } from '../../shared/instructions.ts';
import { generateKeyPair } from '../../shared/signing.ts';
import { NOW, resultFor } from '../../shared/testing/rollout-bench.ts';
import { onEachEngine } from '../../shared/testing/store-engines.ts';
import { parsePlan } from '../domain/rollout/plan.ts';
import { InstructionOutbox, OUTBOX_CHANNEL, type RolloutStore } from './rollouts.ts';
import type { SqlDatabase } from './sql/executor.ts';
import { PostgresDatabase } from './sql/postgres.ts';
import { sql } from './sql/query.ts';

const MIN = 60_000;
const at = (m: number) => new Date(NOW.getTime() + m * MIN);
const KEY = generateKeyPair();

const agentRow = sql('INSERT INTO agents (id, public_key, hostname, enrolled_at) VALUES (?, ?, ?, ?)');

/** Enrolled agents, as rows: the outbox and a rollout's hosts name agents by foreign key. */
async function agents(db: SqlDatabase, ...names: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const name of names) {
    const id = randomUUID();
    await db.run(agentRow, [id, generateKeyPair().publicKey, name, NOW.toISOString()]);
    ids.push(id);
  }
  return ids;
}

/** A draft rollout refreshing these agents, stored as the engine's create() stores it. */
async function draft(rollouts: RolloutStore, agentIds: string[], name = 'outbox'): Promise<string> {
  const id = randomUUID();
  await rollouts.insert(id, parsePlan({ name, target: { agentIds }, action: { kind: 'refresh' }, waves: { canary: { hosts: 1 } } }), 'cli:test', NOW);
  return id;
}

/** A signed refresh instruction for the agent, as an outbox entry. */
function entry(agentId: string, expiresMin: number, kind: 'refresh' | 'patch' = 'refresh') {
  const base = { schema: 'patchwarden.instruction/1' as const, id: randomUUID(), agentId, issuedAt: NOW.toISOString(), notBefore: NOW.toISOString(), expiresAt: at(expiresMin).toISOString(), rolloutId: null, dryRun: false };
  const i: Instruction = kind === 'refresh' ? { ...base, kind } : { ...base, kind, packages: [{ name: 'bind-libs', version: null }, { name: 'bind-utils', version: null }], advisories: ['ALSA-2026:54510'] };
  const s = signInstruction(i, KEY.privateKeyPem);
  return { id: i.id, agentId, payload: s.payload, signature: s.signature, expiresAt: i.expiresAt };
}

onEachEngine('InstructionOutbox', (engine) => {
  test('keeps signed entries per agent, oldest first, until a result, expiry or withdrawal', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const outbox = store.outbox;
    const [a1 = '', a2 = ''] = await agents(db, 'alma-1', 'alma-2');
    const rolloutId = await draft(store.rollouts, [a1]);
    const e1 = entry(a1, 60);
    const e2 = entry(a1, 10);
    const e3 = entry(a2, 60);
    const e4 = entry(a1, 60);
    await outbox.enqueue({ ...e1, rolloutId: null }, at(0));
    await outbox.enqueue({ ...e2, rolloutId: null }, at(1));
    await outbox.enqueue({ ...e3, rolloutId: null }, at(2));
    await outbox.enqueue({ ...e4, rolloutId }, at(3));
    assert.deepEqual((await outbox.pendingFor(a1, at(4))).map((e) => e.id), [e1.id, e2.id, e4.id]);
    assert.deepEqual(await outbox.pendingFor(a2, at(4)), [e3]);
    for (const e of await outbox.pendingFor(a1, at(4))) assert.ok(instructionSignatureValid(e, KEY.publicKey));
    assert.equal(instructionSignatureValid(e1, generateKeyPair().publicKey), false);

    await outbox.markSent(e1.id, at(5));
    await outbox.markSent(e1.id, at(6));
    assert.equal((await outbox.get(e1.id))?.sentAt, at(5).toISOString(), 'the first delivery time is kept');

    assert.equal(await outbox.recordResult(a2, resultFor(e1.id, 'succeeded', at(6)), at(6)), false, "another agent's result");
    assert.equal(await outbox.recordResult(a1, resultFor(randomUUID(), 'succeeded', at(6)), at(6)), false, 'unknown id');
    assert.equal(await outbox.recordResult(a1, { ...resultFor(e1.id, 'refused', at(6)), instructionId: null }, at(6)), false, 'no id');
    assert.equal(await outbox.recordResult(a1, resultFor(e1.id, 'succeeded', at(6)), at(6)), true);
    assert.equal(await outbox.recordResult(a1, resultFor(e1.id, 'failed', at(7)), at(7)), true, 'a re-sent result is accepted');
    assert.equal((await outbox.get(e1.id))?.result?.status, 'succeeded', 'and changes nothing');
    assert.deepEqual((await outbox.pendingFor(a1, at(8))).map((e) => e.id), [e2.id, e4.id]);

    assert.deepEqual((await outbox.pendingFor(a1, at(10))).map((e) => e.id), [e4.id], 'an entry past its expiry is not pending even before expire() runs');
    assert.equal(await outbox.expire(at(10)), 1);
    assert.equal(await outbox.expire(at(10)), 0);
    assert.equal((await outbox.get(e2.id))?.expiredAt, at(10).toISOString());
    assert.equal(await outbox.recordResult(a1, resultFor(e2.id, 'refused', at(11)), at(11)), true, 'a late result is still recorded');

    assert.deepEqual(await outbox.withdraw(rolloutId, at(12)), [{ id: e4.id, agentId: a1 }]);
    assert.deepEqual(await outbox.pendingFor(a1, at(12)), []);
    assert.deepEqual((await outbox.pendingFor(a2, at(12))).map((e) => e.id), [e3.id]);

    // A collector restarting reads the outbox from the database: here, another connection to it.
    assert.deepEqual((await new InstructionOutbox(db).pendingFor(a2, at(12))).map((e) => e.id), [e3.id], 'the outbox survives a restart');
  });

  test('reads many agents\' pending entries in one statement, each agent\'s as pendingFor has them, and marks many sent', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const outbox = store.outbox;
    const ids = await agents(db, 'alma-1', 'alma-2', 'alma-3');
    const [a1 = '', a2 = '', a3 = ''] = ids;
    const entries = [entry(a1, 60), entry(a2, 60), entry(a1, 60), entry(a3, 10), entry(a2, 60)];
    for (const [i, e] of entries.entries()) await outbox.enqueue({ ...e, rolloutId: null }, at(i % 2));
    const many = await outbox.pendingForAgents([a1, a2, a3, "x' OR '1'='1", '"]'], at(5));
    for (const a of ids) {
      assert.deepEqual(
        many.filter((e) => e.agentId === a),
        await outbox.pendingFor(a, at(5)),
        `${a}: the same entries in the same order`,
      );
    }
    assert.equal(many.length, entries.length, 'a hostile id matches nothing and breaks nothing');
    assert.deepEqual(await outbox.pendingForAgents([], at(5)), []);
    assert.deepEqual((await outbox.pendingForAgents([a3], at(10))).map((e) => e.id), [], 'expired entries are not read');

    await outbox.markSent(entries[0]?.id ?? '', at(6));
    await outbox.markManySent([entries[0]?.id ?? '', entries[1]?.id ?? '', 'no-such-id'], at(7));
    await outbox.markManySent([], at(8));
    assert.equal((await outbox.get(entries[0]?.id ?? ''))?.sentAt, at(6).toISOString(), 'the first delivery time is kept');
    assert.equal((await outbox.get(entries[1]?.id ?? ''))?.sentAt, at(7).toISOString());
    assert.equal((await outbox.get(entries[2]?.id ?? ''))?.sentAt, null, 'entries not named stay unsent');
  });

  test('entries enqueued at the same instant stay in the order they were enqueued (rowid on SQLite, seq on PostgreSQL)', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const [a1 = ''] = await agents(db, 'alma-1');
    const rolloutId = await draft(store.rollouts, [a1]);
    const entries = Array.from({ length: 12 }, () => entry(a1, 60));
    for (const e of entries) await store.outbox.enqueue({ ...e, rolloutId }, at(0));
    const ids = entries.map((e) => e.id);
    assert.deepEqual((await store.outbox.pendingFor(a1, at(1))).map((e) => e.id), ids);
    assert.deepEqual((await store.outbox.forRollout(rolloutId)).map((e) => e.id), ids);
  });

  test('agents with unsent and with pending entries; stopResends after a halt; patchedFor', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const outbox = store.outbox;
    const [a1 = '', a2 = '', a3 = ''] = await agents(db, 'alma-1', 'alma-2', 'alma-3');
    const rolloutId = await draft(store.rollouts, [a1, a2, a3]);
    assert.deepEqual(await outbox.agentsWithUnsent(at(0)), []);
    assert.deepEqual(await outbox.agentsWithPending(at(0)), []);
    const sent = entry(a1, 60, 'patch');
    const unsent = entry(a2, 60);
    const expired = entry(a3, 5);
    const refused = entry(a1, 60, 'patch');
    for (const e of [sent, unsent, expired, refused]) await outbox.enqueue({ ...e, rolloutId }, at(0));
    await outbox.markSent(sent.id, at(1));
    await outbox.markSent(refused.id, at(1));
    assert.deepEqual((await outbox.agentsWithUnsent(at(2))).sort(), [a2, a3].sort());
    assert.deepEqual(await outbox.agentsWithPending(at(2)), [a1, a2, a3].sort(), 'sorted by agent id');
    assert.deepEqual(await outbox.agentsWithUnsent(at(6)), [a2], 'an expired entry is not waiting to be sent');
    assert.deepEqual(await outbox.agentsWithPending(at(6)), [a1, a2].sort());

    assert.equal(await outbox.recordResult(a1, resultFor(refused.id, 'refused', at(2)), at(2)), true);
    assert.deepEqual(await outbox.patchedFor(rolloutId, a1), new Set(), 'a refused patch upgraded nothing');
    // Halted: the delivered, unanswered entry is never sent again; the undelivered one is withdraw()'s.
    assert.equal(await outbox.stopResends(rolloutId, at(3)), 1);
    assert.equal((await outbox.get(sent.id))?.withdrawnAt, at(3).toISOString());
    assert.equal((await outbox.get(unsent.id))?.withdrawnAt, null);
    assert.deepEqual(await outbox.pendingFor(a1, at(3)), []);
    assert.equal(await outbox.recordResult(a1, resultFor(sent.id, 'succeeded', at(4)), at(4)), true, 'its result is still taken');
    assert.deepEqual(await outbox.patchedFor(rolloutId, a1), new Set(['bind-libs', 'bind-utils']));
    assert.deepEqual(await outbox.patchedFor(rolloutId, a2), new Set());
  });

  test('an enqueue in a transaction that rolls back leaves no entry; concurrent enqueues all land', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const [a1 = ''] = await agents(db, 'alma-1');
    const lost = entry(a1, 60);
    await assert.rejects(
      store.transaction(async (tx) => {
        await tx.outbox.enqueue({ ...lost, rolloutId: null }, at(0));
        throw new Error('the step failed');
      }),
      /the step failed/,
    );
    assert.equal(await store.outbox.get(lost.id), undefined);
    const many = Array.from({ length: 16 }, () => entry(a1, 60));
    await Promise.all(many.map((e, i) => store.transaction((tx) => tx.outbox.enqueue({ ...e, rolloutId: null }, at(i)))));
    assert.deepEqual((await store.outbox.pendingFor(a1, at(30))).map((e) => e.id), many.map((e) => e.id), 'oldest first');
  });

  if (engine.name === 'postgres') {
    test('an enqueue is announced to listeners at commit, never on a rollback', async (t) => {
      const { store, sql: db } = await engine.open(t);
      assert.ok(db instanceof PostgresDatabase);
      const [a1 = '', a2 = '', a3 = ''] = await agents(db, 'alma-1', 'alma-2', 'alma-3');
      await db.session(async (client) => {
        const heard: string[] = [];
        const hear = (n: { channel: string; payload?: string }): void => {
          if (n.channel === OUTBOX_CHANNEL) heard.push(n.payload ?? '');
        };
        client.on('notification', hear);
        await client.query(`LISTEN ${OUTBOX_CHANNEL}`);
        const until = async (agentId: string): Promise<void> => {
          for (let waited = 0; !heard.includes(agentId); waited += 20) {
            if (waited > 5000) assert.fail(`no notification for ${agentId}; heard ${JSON.stringify(heard)}`);
            await sleep(20);
          }
        };
        try {
          await store.outbox.enqueue({ ...entry(a1, 60), rolloutId: null }, at(0));
          await until(a1);
          await assert.rejects(
            store.transaction(async (tx) => {
              await tx.outbox.enqueue({ ...entry(a2, 60), rolloutId: null }, at(1));
              throw new Error('rolled back');
            }),
            /rolled back/,
          );
          await store.transaction(async (tx) => {
            await tx.outbox.enqueue({ ...entry(a3, 60), rolloutId: null }, at(2));
            await sleep(200);
            assert.deepEqual(heard, [a1], 'not before the commit');
          });
          await until(a3);
          // Notifications arrive in commit order: a2's would have come before a3's.
          assert.deepEqual(heard, [a1, a3]);
        } finally {
          await client.query(`UNLISTEN ${OUTBOX_CHANNEL}`);
          client.off('notification', hear);
        }
      });
    });
  }
});

onEachEngine('RolloutStore', (engine) => {
  test('updates write the fields given, a null included, and leave the others as they were', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const rollouts = store.rollouts;
    const [a1 = ''] = await agents(db, 'alma-1');
    const id = await draft(rollouts, [a1], 'fields');
    await rollouts.insertHosts(id, new Map([[a1, 0]]), at(0));
    await rollouts.updateHost(id, a1, { state: 'sent', step: 'refresh', steps: ['refresh'], instructionId: 'i-1', bootId: 'b-1', code: 'X', detail: 'why' }, at(1));
    await rollouts.updateHost(id, a1, { step: null, detail: null }, at(2));
    const h = await rollouts.host(id, a1);
    assert.deepEqual([h?.state, h?.step, h?.steps, h?.instructionId, h?.bootId, h?.code, h?.detail, h?.updatedAt], ['sent', null, ['refresh'], 'i-1', 'b-1', 'X', null, at(2).toISOString()]);
    const result = resultFor('i-1', 'succeeded', at(3));
    await rollouts.updateHost(id, a1, { result }, at(3));
    assert.deepEqual((await rollouts.host(id, a1))?.result, result);
    await rollouts.updateHost(id, a1, { result: null }, at(3));
    assert.equal((await rollouts.host(id, a1))?.result, null);

    await rollouts.setApproved(id, 'cli:bob', at(3));
    await rollouts.setStarted(id, 2, at(4));
    await rollouts.setWaveDone(id, at(5));
    await rollouts.setWave(id, 1, at(6));
    await rollouts.setLastError(id, { code: 'PW_ERR_X', message: 'm', at: at(6).toISOString() }, at(6));
    const r = await rollouts.get(id);
    assert.deepEqual(
      [r?.approvedBy, r?.approvedAt, r?.startedAt, r?.waveCount, r?.currentWave, r?.waveDoneAt, r?.lastError?.code, r?.updatedAt],
      ['cli:bob', at(3).toISOString(), at(4).toISOString(), 2, 1, null, 'PW_ERR_X', at(6).toISOString()],
    );
    await rollouts.setLastError(id, null, at(7));
    assert.equal((await rollouts.get(id))?.lastError, null);
    await rollouts.setSubmitted(id, 'cli:carol', at(8));
    await rollouts.setHaltedReason(id, 'the gate', at(8));
    await rollouts.setFinished(id, at(9));
    const done = await rollouts.get(id);
    assert.deepEqual([done?.submittedBy, done?.haltedReason, done?.finishedAt, done?.plan.name, done?.createdBy], ['cli:carol', 'the gate', at(9).toISOString(), 'fields', 'cli:test']);
  });

  test('lists and counts rollouts by state, and their hosts by state; finds hosts by instruction and awaiting a reboot', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const rollouts = store.rollouts;
    const [a1 = '', a2 = '', a3 = ''] = await agents(db, 'alma-1', 'alma-2', 'alma-3');
    const r1 = await draft(rollouts, [a1, a2], 'first');
    const r2 = await draft(rollouts, [a3], 'second');
    await rollouts.setState(r1, 'running', at(1));
    await rollouts.insertHosts(r1, new Map([[a1, 0], [a2, 1]]), at(1));
    await rollouts.insertHosts(r2, new Map([[a3, 0]]), at(1));
    assert.deepEqual((await rollouts.list()).map((r) => r.name).sort(), ['first', 'second']);
    assert.deepEqual(await rollouts.countByState(), { draft: 1, 'awaiting-approval': 0, running: 1, paused: 0, halted: 0, completed: 0, cancelled: 0 });
    assert.deepEqual(await rollouts.idsInState('running'), [r1]);
    assert.deepEqual(await rollouts.idsInState('paused'), []);

    await rollouts.updateHost(r1, a1, { state: 'sent', step: 'reboot', instructionId: 'i-reboot', bootId: 'boot-1' }, at(2));
    await rollouts.updateHost(r2, a3, { state: 'sent', step: 'reboot-if-needed', instructionId: 'i-other' }, at(2));
    const counts = (await rollouts.hostStateCounts()).sort((x, y) => `${x.rolloutId}${x.state}`.localeCompare(`${y.rolloutId}${y.state}`));
    assert.deepEqual(counts, [
      { rolloutId: r1, state: 'pending', n: 1 },
      { rolloutId: r1, state: 'sent', n: 1 },
      { rolloutId: r2, state: 'sent', n: 1 },
    ].sort((x, y) => `${x.rolloutId}${x.state}`.localeCompare(`${y.rolloutId}${y.state}`)));
    assert.equal((await rollouts.hostByInstruction('i-reboot', a1))?.rolloutId, r1);
    assert.equal(await rollouts.hostByInstruction('i-reboot', a2), undefined, "another agent's instruction");
    assert.deepEqual((await rollouts.awaitingReboot(a1)).map((h) => [h.rolloutId, h.bootId]), [[r1, 'boot-1']]);
    assert.deepEqual(await rollouts.awaitingReboot(a3), [], 'a draft rollout waits for no reboot');
    await rollouts.setState(r1, 'paused', at(3));
    assert.equal((await rollouts.awaitingReboot(a1)).length, 1, 'a paused one still does');
    await rollouts.setState(r1, 'cancelled', at(4));
    assert.deepEqual(await rollouts.awaitingReboot(a1), []);
  });

  test('insertHosts writes every host in its wave at once; rolled back with its step, it leaves none', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const ids = await agents(db, ...Array.from({ length: 40 }, (_, i) => `web-${i}`));
    const waves = new Map(ids.map((id, i) => [id, Math.min(3, Math.floor(Math.log2(i + 1)))]));
    const kept = await draft(store.rollouts, ids, 'kept');
    const lost = await draft(store.rollouts, ids, 'lost');
    await store.transaction(async (tx) => {
      await tx.rollouts.insertHosts(kept, waves, at(1));
      await assert.rejects(
        tx.transaction(async (step) => {
          await step.rollouts.insertHosts(lost, waves, at(1));
          throw new Error('the step failed');
        }),
        /the step failed/,
      );
    });
    const hosts = await store.rollouts.hosts(kept);
    assert.equal(hosts.length, ids.length);
    assert.deepEqual(
      hosts.map((h) => [h.agentId, h.wave, h.state, h.steps, h.step, h.updatedAt]),
      [...waves].sort((x, y) => x[1] - y[1] || (x[0] < y[0] ? -1 : 1)).map(([id, wave]) => [id, wave, 'pending', [], null, at(1).toISOString()]),
      'ordered by wave, then agent',
    );
    assert.deepEqual(await store.rollouts.hosts(lost), [], 'the savepoint rolled back alone');
    await store.rollouts.insertHosts(lost, new Map(), at(2));
    assert.deepEqual(await store.rollouts.hosts(lost), []);
  });
});
