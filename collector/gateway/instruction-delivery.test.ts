/**
 * Instructions reach connected agents a run at a time: every connection the gateway is told
 * about in one event-loop turn (a burst of enqueues, a reconnection wave) is served by one
 * read of the outbox and one write of its sent marks, not a round trip each. Real collector,
 * real SQLite file, real WebSocket agents; the outbox's two batched methods are counted as
 * they pass through to the store.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import { type Instruction, signInstruction } from '../../shared/instructions.ts';
import type { CollectorMessage } from '../../shared/protocol.ts';
import { startCollector } from '../../shared/testing/collector-harness.ts';
import { TestAgent } from '../../shared/testing/fake-agent.ts';
import { readCollectorKey } from '../signing-key.ts';

const HOUR = 3_600_000;

/** Counts the outbox's batched reads and sent-marks as the gateway calls them; each still goes to the store. */
function countCalls(outbox: { pendingForAgents: (...a: never[]) => unknown; markManySent: (...a: never[]) => unknown }): { reads: number[]; marks: number[] } {
  const calls = { reads: [] as number[], marks: [] as number[] };
  const read = outbox.pendingForAgents.bind(outbox);
  const mark = outbox.markManySent.bind(outbox);
  Object.assign(outbox, {
    pendingForAgents: (ids: readonly string[], now: Date) => {
      calls.reads.push(ids.length);
      return (read as (i: readonly string[], n: Date) => unknown)(ids, now);
    },
    markManySent: (ids: readonly string[], now: Date) => {
      calls.marks.push(ids.length);
      return (mark as (i: readonly string[], n: Date) => unknown)(ids, now);
    },
  });
  return calls;
}

/** Every instruction frame the agent is sent from now on. */
function instructionsTo(client: TestAgent): string[] {
  const ids: string[] = [];
  client.listen({
    message: (m: CollectorMessage) => {
      if (m.type === 'instruction') ids.push((JSON.parse(m.payload) as Instruction).id);
    },
  });
  return ids;
}

async function waitFor(what: string, ms: number, done: () => boolean): Promise<void> {
  for (const end = Date.now() + ms; !done(); ) {
    if (Date.now() > end) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a burst of instructions for many connected agents is read and marked in one run, each sent once', async (t) => {
  const tc = await startCollector(t);
  const { collector } = tc;
  const key = readCollectorKey(join(tc.dir, 'collector.key'));
  const agents = [];
  for (let i = 0; i < 40; i++) agents.push(await tc.agent(`web-${i}`));
  const received = agents.map((a) => instructionsTo(a.client));
  const now = new Date();
  const enqueued: string[][] = agents.map(() => []);
  for (const [i, a] of agents.entries()) {
    // Two each, a millisecond apart: the order they arrive in is visible.
    for (let k = 0; k < 2; k++) {
      const id = randomUUID();
      const instruction: Instruction = { schema: 'patchwarden.instruction/1', kind: 'refresh', id, agentId: a.agentId, issuedAt: now.toISOString(), notBefore: now.toISOString(), expiresAt: new Date(now.getTime() + HOUR).toISOString(), rolloutId: null, dryRun: false };
      const signed = signInstruction(instruction, key.privateKeyPem);
      await collector.store.outbox.enqueue({ id, agentId: a.agentId, payload: signed.payload, signature: signed.signature, expiresAt: instruction.expiresAt, rolloutId: null }, new Date(now.getTime() + k));
      enqueued[i]?.push(id);
    }
  }
  const calls = countCalls(collector.store.outbox);
  // Told about every agent twice in one turn, as a tick's rescan beside the notifications would.
  for (const a of agents) collector.gateway.deliverInstructions(a.agentId);
  for (const a of agents) collector.gateway.deliverInstructions(a.agentId);
  await waitFor('every agent sent its two instructions', 10_000, () => received.every((r) => r.length >= 2));
  // A later turn's request finds nothing new to send: the connection remembers what it was sent.
  for (const a of agents) collector.gateway.deliverInstructions(a.agentId);
  await waitFor('the second run read the outbox', 10_000, () => calls.reads.length === 2);
  await new Promise((r) => setTimeout(r, 100));

  assert.deepEqual(received, enqueued, 'each agent got its own instructions, oldest first, once each');
  assert.deepEqual(calls.reads, [40, 40], 'one read for the burst, one for the later turn');
  assert.deepEqual(calls.marks, [80, 0], 'one write of the sent marks; nothing new sent by the second run');
  for (const id of enqueued.flat()) assert.ok((await collector.store.outbox.get(id))?.sentAt, `${id} is marked sent`);
});

test('an agent away when its instruction is enqueued is sent it by the run its welcome starts; the others are not held up', async (t) => {
  const tc = await startCollector(t);
  const { collector } = tc;
  const key = readCollectorKey(join(tc.dir, 'collector.key'));
  const [stays, leaves] = [await tc.agent('stays'), await tc.agent('leaves')];
  const got = instructionsTo(stays.client);
  leaves.client.ws.terminate();
  await waitFor('the closed connection is gone', 10_000, () => !collector.gateway.isConnected(leaves.agentId));
  const now = new Date();
  const ids = [];
  for (const a of [stays, leaves]) {
    const id = randomUUID();
    const instruction: Instruction = { schema: 'patchwarden.instruction/1', kind: 'refresh', id, agentId: a.agentId, issuedAt: now.toISOString(), notBefore: now.toISOString(), expiresAt: new Date(now.getTime() + HOUR).toISOString(), rolloutId: null, dryRun: false };
    const signed = signInstruction(instruction, key.privateKeyPem);
    await collector.store.outbox.enqueue({ id, agentId: a.agentId, payload: signed.payload, signature: signed.signature, expiresAt: instruction.expiresAt, rolloutId: null }, now);
    ids.push(id);
  }
  collector.gateway.deliverInstructions(stays.agentId);
  collector.gateway.deliverInstructions(leaves.agentId);
  await waitFor('the connected agent got its instruction', 10_000, () => got.length === 1);
  assert.deepEqual(got, [ids[0]]);
  assert.equal((await collector.store.outbox.get(ids[1] ?? ''))?.sentAt, null, 'not sent, so not marked: it goes out on the next connection');

  const back = await TestAgent.connect(collector.agentUrl);
  t.after(() => {
    back.ws.terminate();
  });
  await back.hello(leaves.agentId, leaves.keys);
  const pushed = await back.expect('instruction', 5000);
  assert.equal((JSON.parse(pushed.payload) as Instruction).id, ids[1]);
  let sentAt: string | null | undefined = null;
  for (const end = Date.now() + 5000; sentAt === null && Date.now() < end; await new Promise((r) => setTimeout(r, 20))) sentAt = (await collector.store.outbox.get(ids[1] ?? ''))?.sentAt;
  assert.notEqual(sentAt, null, 'marked sent once delivered');
});
