/**
 * Several collectors on one PostgreSQL database (issue 12 §3), as an operator runs them:
 * real processes' code (createCollector), a real cluster, an agent on a real socket.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type Instruction, signInstruction } from '../shared/instructions.ts';
import { TestAgent, newKeys } from '../shared/testing/fake-agent.ts';
import { almaInventory } from '../shared/testing/http-fixture.ts';
import { startPostgres } from '../shared/testing/postgres.ts';
import { needs, TOOLS } from '../shared/testing/system-tools.ts';
import { parseConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { type Collector, createCollector } from './server.ts';
import { DUTIES } from './services/replicas/duties.ts';
import { readCollectorKey } from './signing-key.ts';

const HOUR = 3_600_000;

describe('several collectors on one PostgreSQL database', { skip: needs(TOOLS.postgres) }, () => {
  test('an instruction enqueued on one replica reaches the agent connected to another; duties pass on when a replica stops', async (t) => {
    const cluster = await startPostgres();
    t.after(() => cluster.stop());
    const dir = mkdtempSync(join(tmpdir(), 'pw-replicas-'));
    t.after(() => {
      rmSync(dir, { recursive: true, force: true });
    });
    const config = parseConfig({ feedSync: false, keyFile: join(dir, 'collector.key'), store: { kind: 'postgres', url: cluster.url } });
    // The tick is an hour apart: only the notification can bring the instruction in time.
    const open = (): Promise<Collector> => createCollector({ dbPath: join(dir, 'unused.db'), listen: '127.0.0.1:0', config, logger: createLogger({ level: 'silent' }), rolloutTickMs: HOUR });
    const a = await open();
    const b = await open();
    t.after(async () => {
      await b.close();
      await a.close();
    });
    // Both sign with the one key agents pin.
    assert.equal(a.publicKey, b.publicKey);

    const { token } = await a.store.tokens.create({ uses: 1, ttlMs: HOUR, createdBy: 'cli:test' });
    const keys = newKeys();
    const enrolling = await TestAgent.connect(b.agentUrl);
    const { agentId } = await enrolling.enroll(token, keys, { hostname: 'web-1' });
    await enrolling.close();
    const agent = await TestAgent.connect(b.agentUrl);
    t.after(() => agent.close());
    await agent.hello(agentId, keys);
    const ack = await agent.report(almaInventory('web-1'));
    assert.equal(ack.status, 'stored');
    // Replica A sees what the agent told replica B.
    assert.equal((await a.store.hosts.get(agentId))?.hostname, 'web-1');

    const now = new Date();
    const id = randomUUID();
    const instruction: Instruction = {
      schema: 'patchwarden.instruction/1',
      kind: 'refresh',
      id,
      agentId,
      issuedAt: now.toISOString(),
      notBefore: now.toISOString(),
      expiresAt: new Date(now.getTime() + HOUR).toISOString(),
      rolloutId: null,
      dryRun: false,
    };
    const signed = signInstruction(instruction, readCollectorKey(join(dir, 'collector.key')).privateKeyPem);
    await a.store.outbox.enqueue({ id, agentId, payload: signed.payload, signature: signed.signature, expiresAt: instruction.expiresAt, rolloutId: null }, now);
    const pushed = await agent.expect('instruction', 5000);
    assert.equal(pushed.payload, signed.payload);

    // A third replica starting (or restarting) leaves the agents connected to the others as they are.
    assert.equal((await a.store.agents.get(agentId))?.connected, true);
    const third = await open();
    await third.close();
    assert.equal((await a.store.agents.get(agentId))?.connected, true, 'still connected to replica b');

    // Each duty is held by exactly one of the two.
    for (const duty of DUTIES) {
      const [onA, onB] = [a.duties.get(duty).held, b.duties.get(duty).held];
      assert.ok(onA !== onB, `${duty}: held by exactly one replica (a ${String(onA)}, b ${String(onB)})`);
    }
    // The holder stops: the other takes every duty over at once (the lease is given up, not left to expire).
    const [first, second] = a.duties.get('rollout-tick').held ? [a, b] : [b, a];
    await first.close();
    for (let i = 0; i < 100 && !second.duties.get('rollout-tick').held; i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(second.duties.get('rollout-tick').held, 'the remaining replica holds the rollout tick');
  });
});
