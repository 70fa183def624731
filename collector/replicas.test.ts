/**
 * Several collectors on one PostgreSQL database (issue 12 §3), as an operator runs them:
 * real processes' code (createCollector), a real cluster, an agent on a real socket.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { type Instruction, signInstruction } from '../shared/instructions.ts';
import { TestAgent, newKeys } from '../shared/testing/fake-agent.ts';
import { almaInventory } from '../shared/testing/http-fixture.ts';
import { type Postgres, startPostgres } from '../shared/testing/postgres.ts';
import { type ReplicaChild, replicaInChild } from '../shared/testing/replica-child.ts';
import { needs, TOOLS } from '../shared/testing/system-tools.ts';
import { type CollectorConfig, parseConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { type Collector, createCollector } from './server.ts';
import { DUTIES } from './services/replicas/duties.ts';
import { PostgresDatabase } from './store/sql/postgres.ts';
import { sql } from './store/sql/query.ts';
import { readCollectorKey } from './signing-key.ts';

const HOUR = 3_600_000;

/** A throwaway cluster and a directory for the collectors' key, removed after the test, and the config every replica shares. */
async function site(t: TestContext): Promise<{ cluster: Postgres; dir: string; keyFile: string; config: CollectorConfig }> {
  const cluster = await startPostgres();
  t.after(() => cluster.stop());
  const dir = mkdtempSync(join(tmpdir(), 'pw-replicas-'));
  t.after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const keyFile = join(dir, 'collector.key');
  return { cluster, dir, keyFile, config: parseConfig({ feedSync: false, keyFile, store: { kind: 'postgres', url: cluster.url } }) };
}

describe('several collectors on one PostgreSQL database', { skip: needs(TOOLS.postgres) }, () => {
  test('an instruction enqueued on one replica reaches the agent connected to another; duties pass on when a replica stops', async (t) => {
    const { dir, config } = await site(t);
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
    assert.deepEqual(await mark(a, agentId), [true, b.duties.replica]);
    const third = await open();
    await third.close();
    assert.deepEqual(await mark(a, agentId), [true, b.duties.replica], 'still connected to replica b');

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

  for (const housekeeper of ['survivor', 'victim'] as const) {
    test(`a replica killed without a word: the survivor marks its agents disconnected a lease period later; the agent reconnecting is the survivor's (housekeeping held by the ${housekeeper})`, async (t) => {
      const { cluster, dir, keyFile, config } = await site(t);
      const leaseMs = 1500;
      // The first to start takes every duty. When the victim holds housekeeping, the survivor sweeps only after that lease passes on.
      const startSurvivor = async (): Promise<Collector> => {
        const c = await createCollector({ dbPath: join(dir, 'unused.db'), listen: '127.0.0.1:0', config, logger: createLogger({ level: 'silent' }), rolloutTickMs: HOUR, replicaLeaseMs: leaseMs });
        t.after(() => c.close());
        return c;
      };
      const startVictim = async (): Promise<ReplicaChild> => {
        const c = await replicaInChild({ url: cluster.url, keyFile, replicaLeaseMs: leaseMs });
        t.after(() => c.kill());
        return c;
      };
      const first = housekeeper === 'survivor' ? await startSurvivor() : await startVictim();
      const holder = (await housekeepingHolder(cluster.url, 5000)) ?? '';
      const [survivor, victim] = housekeeper === 'survivor' ? [first as Collector, await startVictim()] : [await startSurvivor(), first as ReplicaChild];
      assert.equal(holder, housekeeper === 'survivor' ? survivor.duties.replica : victim.replica);

      const { token } = await survivor.store.tokens.create({ uses: 1, ttlMs: HOUR, createdBy: 'cli:test' });
      const keys = newKeys();
      const enrolling = await TestAgent.connect(victim.agentUrl);
      const { agentId } = await enrolling.enroll(token, keys, { hostname: 'web-1' });
      assert.deepEqual(await mark(survivor, agentId), [true, victim.replica]);
      assert.deepEqual(
        (await survivor.store.replicas.list()).map((r) => [r.id, r.live]).sort(),
        [[survivor.duties.replica, true], [victim.replica, true]].sort(),
      );

      await victim.kill();
      const killedAt = Date.now();
      // Nothing of the victim told the store: the mark is left as it was.
      assert.deepEqual(await mark(survivor, agentId), [true, victim.replica]);
      // The kernel closed the victim's sockets: the agent saw its connection go.
      await enrolling.close();
      let cleared = false;
      while (!cleared && Date.now() - killedAt < 10 * leaseMs) {
        await new Promise((r) => setTimeout(r, 100));
        cleared = !(await survivor.store.agents.get(agentId))?.connected;
      }
      const after = Date.now() - killedAt;
      assert.ok(cleared, `the victim's mark was not cleared within ${10 * leaseMs} ms`);
      // The victim's last heartbeat was at most a third of a lease before the kill; the sweep comes within a third of a lease after expiry.
      // Its lease passing on first adds a lease period and a third.
      const bound = (housekeeper === 'survivor' ? 3 : 4) * leaseMs;
      assert.ok(after >= leaseMs / 2 && after <= bound, `cleared ${after} ms after the kill (lease ${leaseMs} ms)`);
      assert.deepEqual(await mark(survivor, agentId), [false, null]);
      assert.deepEqual(
        (await survivor.store.replicas.list()).map((r) => [r.id, r.live]).sort(),
        [[survivor.duties.replica, true], [victim.replica, false]].sort(),
        'the dead replica is kept for operators to see',
      );
      assert.equal((await survivor.store.summary.counts()).agents.connected, 0);

      const agent = await TestAgent.connect(survivor.agentUrl);
      t.after(() => agent.close());
      await agent.hello(agentId, keys);
      assert.deepEqual(await mark(survivor, agentId), [true, survivor.duties.replica]);
      // And the survivor's sweeps leave its own agents alone.
      await new Promise((r) => setTimeout(r, leaseMs));
      assert.deepEqual(await mark(survivor, agentId), [true, survivor.duties.replica]);
    });
  }

  test('a replica that closes clears its own agents\' marks at once, and leaves the others\'', async (t) => {
    const { dir, config } = await site(t);
    const open = (): Promise<Collector> => createCollector({ dbPath: join(dir, 'unused.db'), listen: '127.0.0.1:0', config, logger: createLogger({ level: 'silent' }), rolloutTickMs: HOUR });
    const a = await open();
    t.after(() => a.close());
    const b = await open();
    let bClosed = false;
    t.after(async () => {
      if (!bClosed) await b.close();
    });
    const { token } = await a.store.tokens.create({ uses: 2, ttlMs: HOUR, createdBy: 'cli:test' });
    const onA = await TestAgent.connect(a.agentUrl);
    t.after(() => onA.close());
    const { agentId: idA } = await onA.enroll(token, newKeys(), { hostname: 'on-a' });
    const onB = await TestAgent.connect(b.agentUrl);
    t.after(() => onB.close());
    const { agentId: idB } = await onB.enroll(token, newKeys(), { hostname: 'on-b' });
    assert.deepEqual([await mark(a, idA), await mark(a, idB)], [[true, a.duties.replica], [true, b.duties.replica]]);
    await b.close();
    bClosed = true;
    assert.deepEqual([await mark(a, idA), await mark(a, idB)], [[true, a.duties.replica], [false, null]]);
    assert.deepEqual((await a.store.replicas.list()).map((r) => r.id), [a.duties.replica]);
  });
});

/** Who holds the housekeeping lease, once someone does (within `waitMs`). */
async function housekeepingHolder(url: string, waitMs: number): Promise<string | null> {
  const db = new PostgresDatabase({ url, max: 1 });
  try {
    for (const until = Date.now() + waitMs; Date.now() < until; await new Promise((r) => setTimeout(r, 100))) {
      const row = await db.get<{ holder: string }>(sql("SELECT holder FROM leases WHERE name = 'housekeeping' AND expires_at > now()"));
      if (row !== undefined) return row.holder;
    }
    return null;
  } finally {
    await db.close();
  }
}

async function mark(c: Collector, agentId: string): Promise<[boolean | undefined, string | null | undefined]> {
  const agent = await c.store.agents.get(agentId);
  return [agent?.connected, agent?.connectedBy];
}
