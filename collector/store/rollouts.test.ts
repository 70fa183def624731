import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { instructionSignatureValid, signInstruction, type Instruction } from '../../shared/instructions.ts';
import { generateKeyPair } from '../../shared/signing.ts';
import { makeBench, NOW, resultFor } from '../../shared/testing/rollout-bench.ts';

const MIN = 60_000;
const at = (m: number) => new Date(NOW.getTime() + m * MIN);

describe('InstructionOutbox', () => {
  it('keeps signed entries per agent, oldest first, until a result, expiry or withdrawal', async (t) => {
    const b = await makeBench(t);
    const a1 = await b.addHost({ hostname: 'alma-1' });
    const a2 = await b.addHost({ hostname: 'alma-2' });
    const rolloutId = await b.engine.create({ name: 'outbox', target: { agentIds: [a1] }, action: { kind: 'refresh' }, waves: { canary: { hosts: 1 } } }, 'cli:test');
    const make = (agentId: string, expiresMin: number) => {
      const i: Instruction = { schema: 'patchwarden.instruction/1', kind: 'refresh', id: randomUUID(), agentId, issuedAt: NOW.toISOString(), notBefore: NOW.toISOString(), expiresAt: at(expiresMin).toISOString(), rolloutId: null, dryRun: false };
      const s = signInstruction(i, b.key.privateKeyPem);
      return { id: i.id, agentId, payload: s.payload, signature: s.signature, expiresAt: i.expiresAt };
    };
    const e1 = make(a1, 60);
    const e2 = make(a1, 10);
    const e3 = make(a2, 60);
    const e4 = make(a1, 60);
    b.outbox.enqueue({ ...e1, rolloutId: null }, at(0));
    b.outbox.enqueue({ ...e2, rolloutId: null }, at(1));
    b.outbox.enqueue({ ...e3, rolloutId: null }, at(2));
    b.outbox.enqueue({ ...e4, rolloutId }, at(3));
    assert.deepEqual(b.outbox.pendingFor(a1, at(4)).map((e) => e.id), [e1.id, e2.id, e4.id]);
    assert.deepEqual(b.outbox.pendingFor(a2, at(4)), [e3]);
    for (const e of b.outbox.pendingFor(a1, at(4))) assert.ok(instructionSignatureValid(e, b.key.publicKey));
    assert.equal(instructionSignatureValid(e1, generateKeyPair().publicKey), false);

    b.outbox.markSent(e1.id, at(5));
    b.outbox.markSent(e1.id, at(6));
    assert.equal(b.outbox.get(e1.id)?.sentAt, at(5).toISOString(), 'the first delivery time is kept');

    assert.equal(b.outbox.recordResult(a2, resultFor(e1.id, 'succeeded', at(6)), at(6)), false, "another agent's result");
    assert.equal(b.outbox.recordResult(a1, resultFor(randomUUID(), 'succeeded', at(6)), at(6)), false, 'unknown id');
    assert.equal(b.outbox.recordResult(a1, { ...resultFor(e1.id, 'refused', at(6)), instructionId: null }, at(6)), false, 'no id');
    assert.equal(b.outbox.recordResult(a1, resultFor(e1.id, 'succeeded', at(6)), at(6)), true);
    assert.equal(b.outbox.recordResult(a1, resultFor(e1.id, 'failed', at(7)), at(7)), true, 'a re-sent result is accepted');
    assert.equal(b.outbox.get(e1.id)?.result?.status, 'succeeded', 'and changes nothing');
    assert.deepEqual(b.outbox.pendingFor(a1, at(8)).map((e) => e.id), [e2.id, e4.id]);

    assert.deepEqual(b.outbox.pendingFor(a1, at(10)).map((e) => e.id), [e4.id], 'an entry past its expiry is not pending even before expire() runs');
    assert.equal(b.outbox.expire(at(10)), 1);
    assert.equal(b.outbox.expire(at(10)), 0);
    assert.equal(b.outbox.get(e2.id)?.expiredAt, at(10).toISOString());
    assert.equal(b.outbox.recordResult(a1, resultFor(e2.id, 'refused', at(11)), at(11)), true, 'a late result is still recorded');

    assert.deepEqual(b.outbox.withdraw(rolloutId, at(12)), [{ id: e4.id, agentId: a1 }]);
    assert.deepEqual(b.outbox.pendingFor(a1, at(12)), []);
    assert.deepEqual(b.outbox.pendingFor(a2, at(12)).map((e) => e.id), [e3.id]);

    b.restart();
    assert.deepEqual(b.outbox.pendingFor(a2, at(12)).map((e) => e.id), [e3.id], 'the outbox survives a restart');
  });
});

describe('RolloutStore updates', () => {
  it('writes the fields given, a null included, and leaves the others as they were', async (t) => {
    const b = await makeBench(t);
    const a1 = await b.addHost({ hostname: 'alma-1' });
    const store = b.store.rollouts;
    const id = await b.engine.create({ name: 'fields', target: { agentIds: [a1] }, action: { kind: 'refresh' }, waves: { canary: { hosts: 1 } } }, 'cli:test');
    store.insertHosts(id, new Map([[a1, 0]]), at(0));
    store.updateHost(id, a1, { state: 'sent', step: 'refresh', steps: ['refresh'], instructionId: 'i-1', bootId: 'b-1', code: 'X', detail: 'why' }, at(1));
    store.updateHost(id, a1, { step: null, detail: null }, at(2));
    const h = store.host(id, a1);
    assert.deepEqual([h?.state, h?.step, h?.steps, h?.instructionId, h?.bootId, h?.code, h?.detail, h?.updatedAt], ['sent', null, ['refresh'], 'i-1', 'b-1', 'X', null, at(2).toISOString()]);

    store.setApproved(id, 'cli:bob', at(3));
    store.setStarted(id, 2, at(4));
    store.setWaveDone(id, at(5));
    store.setWave(id, 1, at(6));
    store.setLastError(id, { code: 'PW_ERR_X', message: 'm', at: at(6).toISOString() }, at(6));
    const r = store.get(id);
    assert.deepEqual(
      [r?.approvedBy, r?.approvedAt, r?.startedAt, r?.waveCount, r?.currentWave, r?.waveDoneAt, r?.lastError?.code, r?.updatedAt],
      ['cli:bob', at(3).toISOString(), at(4).toISOString(), 2, 1, null, 'PW_ERR_X', at(6).toISOString()],
    );
    store.setLastError(id, null, at(7));
    assert.equal(store.get(id)?.lastError, null);
  });
});
