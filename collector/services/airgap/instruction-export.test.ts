import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { type Instruction, InstructionBundleSchema, instructionSignatureValid, signInstruction } from '../../../shared/instructions.ts';
import { COLLECTOR_SIGNER, parseSignedBody, readSignedFile } from '../../../shared/signed-file.ts';
import { generateKeyPair } from '../../../shared/signing.ts';
import { storeOn } from '../../store/store.ts';
import { tempDatabase } from '../../../shared/testing/store-fixtures.ts';
import { exportInstructions } from './instruction-export.ts';

const NOW = new Date('2026-11-27T04:00:00.000Z');
const HOUR = 3600_000;
const KEY = generateKeyPair();

async function setup(t: TestContext) {
  const { db } = await tempDatabase(t, 'export');
  // The export reads and marks the outbox, and audits, through the asynchronous store over the same connection.
  const store = storeOn(db).async;
  const agents: string[] = [];
  for (const h of ['a', 'b', 'c']) agents.push(await store.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: h, machineId: null, tokenId: null }));
  const dir = await mkdtemp(join(tmpdir(), 'pw-export-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const outbox = store.outbox;
  const enqueue = async (agentId: string, expiresInHours = 24, at = NOW): Promise<string> => {
    const id = randomUUID();
    const i: Instruction = { schema: 'patchwarden.instruction/1', kind: 'refresh', id, agentId, issuedAt: at.toISOString(), notBefore: at.toISOString(), expiresAt: new Date(at.getTime() + expiresInHours * HOUR).toISOString(), rolloutId: null, dryRun: false };
    const s = signInstruction(i, KEY.privateKeyPem);
    await outbox.enqueue({ id, agentId, payload: s.payload, signature: s.signature, expiresAt: i.expiresAt, rolloutId: null }, at);
    return id;
  };
  return { db, outbox, store, agents, dir, enqueue };
}

/** The ids in a written file, after checking it as `agent apply` does. */
async function idsIn(file: string, agentId: string): Promise<string[]> {
  const { header, body } = await readSignedFile(file, file, { kind: 'instructions', maxBodyBytes: 1 << 20, keyOf: (s) => (s === COLLECTOR_SIGNER ? KEY.publicKey : undefined) });
  assert.equal(header.signer, COLLECTOR_SIGNER);
  const bundle = parseSignedBody(body, InstructionBundleSchema, 'an instruction bundle').value;
  assert.equal(bundle.agentId, agentId);
  for (const i of bundle.instructions) assert.ok(instructionSignatureValid(i, KEY.publicKey));
  return bundle.instructions.map((i) => (JSON.parse(i.payload) as { id: string }).id);
}

describe('instructions export', () => {
  it('one signed file per agent with pending instructions, oldest first; each marked sent', async (t) => {
    const s = await setup(t);
    const [a, b] = [s.agents[0] ?? '', s.agents[1] ?? ''];
    const a1 = await s.enqueue(a, 24, new Date(NOW.getTime() - 2 * HOUR));
    const a2 = await s.enqueue(a, 24, new Date(NOW.getTime() - HOUR));
    const b1 = await s.enqueue(b);
    const files = await exportInstructions({ store: s.store, actor: 'cli:test', dir: s.dir, key: KEY.privateKeyPem, now: NOW });
    assert.deepEqual(
      files.map((f) => [f.agentId, f.instructions]),
      [[a, 2], [b, 1]].sort((x, y) => String(x[0]).localeCompare(String(y[0]))),
    );
    const fileOf = (agentId: string): string => files.find((f) => f.agentId === agentId)?.file ?? assert.fail();
    assert.deepEqual(await idsIn(fileOf(a), a), [a1, a2]);
    assert.deepEqual(await idsIn(fileOf(b), b), [b1]);
    for (const id of [a1, a2, b1]) assert.equal((await s.outbox.get(id))?.sentAt, NOW.toISOString());
    assert.deepEqual((await readdir(s.dir)).sort(), files.map((f) => f.file.slice(s.dir.length + 1)).sort(), 'no partial file left');
    const audited = (await s.store.audit.list({ action: 'instructions.export', limit: 10 })).entries.map((e) => [e.actor, e.target, e.detail]);
    assert.deepEqual(audited.sort(), files.map((f) => ['cli:test', `agent:${f.agentId}`, JSON.stringify({ instructions: f.instructions })]).sort(), 'one audit row per file');
  });

  it('exports again what has no result yet (a lost file is replaced), never what has one or has expired', async (t) => {
    const s = await setup(t);
    const a = s.agents[0] ?? '';
    const answered = await s.enqueue(a);
    const waiting = await s.enqueue(a);
    await s.enqueue(a, 1, new Date(NOW.getTime() - 2 * HOUR));
    await exportInstructions({ store: s.store, actor: 'cli:test', dir: s.dir, key: KEY.privateKeyPem, now: NOW });
    await s.outbox.recordResult(a, { instructionId: answered, status: 'succeeded', code: null, message: 'ok', dryRun: false, startedAt: NOW.toISOString(), finishedAt: NOW.toISOString(), commands: [], changes: [], rebootRequired: null }, NOW);
    const later = new Date(NOW.getTime() + HOUR);
    const [again] = await exportInstructions({ store: s.store, actor: 'cli:test', dir: s.dir, key: KEY.privateKeyPem, now: later });
    assert.deepEqual(await idsIn(again?.file ?? assert.fail(), a), [waiting]);
    assert.equal((await s.outbox.get(waiting))?.sentAt, NOW.toISOString(), 'the first delivery time is kept');
  });

  it('--agent: only the agents named; one with nothing pending gets no file', async (t) => {
    const s = await setup(t);
    const [a, b, c] = [s.agents[0] ?? '', s.agents[1] ?? '', s.agents[2] ?? ''];
    await s.enqueue(a);
    const b1 = await s.enqueue(b);
    const files = await exportInstructions({ store: s.store, actor: 'cli:test', dir: s.dir, key: KEY.privateKeyPem, agentIds: [b, c], now: NOW });
    assert.deepEqual(files.map((f) => f.agentId), [b]);
    assert.deepEqual(await idsIn(files[0]?.file ?? assert.fail(), b), [b1]);
  });
});
