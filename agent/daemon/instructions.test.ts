/**
 * Instructions through the running daemon: the collector (shared/testing/fake-collector.ts,
 * real WebSocket, real ed25519) sends signed instructions, the daemon runs them through the
 * executor, keeps every result on disk until the collector acknowledges it, and follows a
 * run with a fresh inventory.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type Instruction, signInstruction } from '../../shared/instructions.ts';
import { generateKeyPair } from '../../shared/signing.ts';
import type { Handler, HandlerResolver } from '../executor/handler.ts';
import { setup, until } from '../../shared/testing/daemon-harness.ts';

const HOUR = 3600_000;

function instruction(agentId: string, kind: 'refresh' | 'patch', overrides: Partial<Instruction> = {}): Instruction {
  const now = Date.now();
  const base = {
    schema: 'patchwarden.instruction/1' as const,
    id: randomUUID(),
    agentId,
    issuedAt: new Date(now - 60_000).toISOString(),
    notBefore: new Date(now - 60_000).toISOString(),
    expiresAt: new Date(now + HOUR).toISOString(),
    rolloutId: null,
    dryRun: false,
  };
  const body: Instruction = kind === 'refresh' ? { ...base, kind } : { ...base, kind, packages: [{ name: 'zlib1g', version: null }], advisories: ['DSA-5800-1'] };
  return { ...body, ...overrides } as Instruction;
}

/** A handler that runs nothing and records what it was asked: the executor's plumbing is what is tested here. */
function recordingResolver(calls: Instruction[]): HandlerResolver {
  const handler: Handler = {
    name: 'recording',
    run: (i) => {
      calls.push(i);
      return Promise.resolve({ status: 'succeeded', code: null, message: 'recorded', commands: [] });
    },
  };
  return () => Promise.resolve(handler);
}

describe('Agent: instructions from the collector', () => {
  it('a signed refresh is run: the result is acknowledged and a fresh report follows', async (t) => {
    const s = await setup(t);
    await until('the first report', () => s.collector.reports.length >= 1);
    const agentId = [...s.collector.agents.keys()][0] ?? '';
    const before = s.collector.reports.length;
    const i = instruction(agentId, 'refresh');
    assert.equal(s.collector.sendInstruction(agentId, signInstruction(i, s.collector.collectorKey.privateKeyPem)), true);
    await until('the result', () => s.collector.results.length === 1);
    const r = s.collector.results[0]?.result;
    assert.equal(r?.instructionId, i.id);
    assert.equal(r.status, 'succeeded');
    await until('a fresh report', () => s.collector.reports.length > before);
    await until('the results directory to empty', () => readdirSync(join(s.spoolDir, '..', 'results')).length === 0);
  });

  it('a patch runs its handler once; the same instruction sent again is refused as replayed and runs nothing', async (t) => {
    const calls: Instruction[] = [];
    const s = await setup(t, { agent: { resolveHandler: recordingResolver(calls) } });
    await until('the first report', () => s.collector.reports.length >= 1);
    const agentId = [...s.collector.agents.keys()][0] ?? '';
    const signed = signInstruction(instruction(agentId, 'patch'), s.collector.collectorKey.privateKeyPem);
    s.collector.sendInstruction(agentId, signed);
    await until('the first result', () => s.collector.results.length === 1);
    s.collector.sendInstruction(agentId, signed);
    await until('the second result', () => s.collector.results.length === 2);
    assert.deepEqual(
      s.collector.results.map((r) => [r.result.status, r.result.code]),
      [
        ['succeeded', null],
        ['refused', 'PW_ERR_INSTRUCTION_REPLAYED'],
      ],
    );
    assert.equal(calls.length, 1);
  });

  const refusals: { name: string; code: string; make: (agentId: string, collectorPem: string) => { payload: string; signature: string } }[] = [
    { name: 'signed by another key', code: 'PW_ERR_INSTRUCTION_SIGNATURE', make: (a) => signInstruction(instruction(a, 'patch'), generateKeyPair().privateKeyPem) },
    {
      name: 'one byte of the payload changed after signing',
      code: 'PW_ERR_INSTRUCTION_SIGNATURE',
      make: (a, pem) => {
        const signed = signInstruction(instruction(a, 'patch'), pem);
        return { ...signed, payload: signed.payload.replace('"dryRun":false', '"dryRun":true ') };
      },
    },
    { name: "another agent's", code: 'PW_ERR_INSTRUCTION_TARGET', make: (_a, pem) => signInstruction(instruction(randomUUID(), 'patch'), pem) },
    {
      name: 'expired',
      code: 'PW_ERR_INSTRUCTION_EXPIRED',
      make: (a, pem) => signInstruction(instruction(a, 'patch', { notBefore: new Date(Date.now() - 3 * HOUR).toISOString(), expiresAt: new Date(Date.now() - HOUR).toISOString() }), pem),
    },
  ];
  for (const c of refusals) {
    it(`refused, nothing runs, the refusal is reported: ${c.name} (${c.code})`, async (t) => {
      const calls: Instruction[] = [];
      const s = await setup(t, { agent: { resolveHandler: recordingResolver(calls) } });
      await until('the first report', () => s.collector.reports.length >= 1);
      const agentId = [...s.collector.agents.keys()][0] ?? '';
      s.collector.sendInstruction(agentId, c.make(agentId, s.collector.collectorKey.privateKeyPem));
      await until('the refusal', () => s.collector.results.length === 1);
      assert.deepEqual([s.collector.results[0]?.result.status, s.collector.results[0]?.result.code], ['refused', c.code]);
      assert.equal(calls.length, 0);
      // The connection stays up: the agent still reports.
      s.agent.checkNow();
      const n = s.collector.reports.length;
      await until('another report', () => s.collector.reports.length > n);
    });
  }

  it('a result made while the collector is away is kept on disk and delivered after an agent restart', async (t) => {
    const calls: Instruction[] = [];
    const s = await setup(t, { agent: { resolveHandler: recordingResolver(calls) } });
    await until('the first report', () => s.collector.reports.length >= 1);
    const agentId = [...s.collector.agents.keys()][0] ?? '';
    s.collector.holdAcks = true;
    const i = instruction(agentId, 'patch');
    s.collector.sendInstruction(agentId, signInstruction(i, s.collector.collectorKey.privateKeyPem));
    await until('the result to reach the collector (not acknowledged)', () => s.collector.results.length === 1);
    const resultsDir = join(s.spoolDir, '..', 'results');
    assert.equal(readdirSync(resultsDir).filter((f) => f.endsWith('.json')).length, 1);
    await s.agent.stop();
    await s.collector.stop();
    s.collector.holdAcks = false;
    s.collector.results.length = 0;
    await s.collector.restart();
    await s.newAgent({ resolveHandler: recordingResolver(calls) });
    await until('the result again, after the restart', () => s.collector.results.length === 1);
    assert.equal(s.collector.results[0]?.result.instructionId, i.id);
    await until('the results directory to empty', () => readdirSync(resultsDir).length === 0);
    assert.equal(calls.length, 1, 'ran once, reported twice');
  });
});
