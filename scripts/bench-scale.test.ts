import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { parseDpkgStatus } from '../agent/inventory/dpkg.ts';
import type { Inventory } from '../shared/protocol.ts';
import { startCollector } from '../shared/testing/collector-harness.ts';
import { hostInventory } from '../shared/testing/daemon-fixtures.ts';
import { DATA_DIR, readData } from '../shared/testing/data.ts';
import { needs, TOOLS } from '../shared/testing/system-tools.ts';
import { REPLICAS, runSize, sizesFromEnv, Workers } from './bench-scale.ts';
import { ensureBuilt } from './dist-fresh.ts';

/** A ws URL nobody listens on: a port just released. */
async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  await new Promise<void>((resolve) => {
    server.close(() => {
      resolve();
    });
  });
  return `ws://127.0.0.1:${address.port}/agent`;
}

describe('PW_BENCH_SCALE', () => {
  for (const [text, want] of [
    [undefined, [1000, 10_000]],
    ['', [1000, 10_000]],
    ['10000, 1000,1000', [1000, 10_000]],
    ['50000', [50_000]],
  ] as const) {
    it(`${JSON.stringify(text)} -> ${want.join(',')}`, () => {
      assert.deepEqual(sizesFromEnv(text), want);
    });
  }
  for (const text of ['10', '1k', '1000,', '-5', '1e4']) {
    it(`${JSON.stringify(text)} is refused`, () => {
      assert.throws(() => sizesFromEnv(text), RangeError);
    });
  }
});

describe('scale worker', () => {
  it('enrolls, connects and reports from its own source addresses, failing over from a dead collector of its list', async (t) => {
    const tc = await startCollector(t);
    const agents = 40;
    const { token } = await tc.collector.store.tokens.create({ uses: agents, ttlMs: 3600_000, createdBy: 'test' });
    // The real Debian 12 host's packages, whose pending upgrades make the fleet's package sets.
    const base: Inventory = { ...(await hostInventory()), packageFormat: 'deb', packages: parseDpkgStatus(readData('host-inventory', 'debian12-host.dpkg-status.gz')) };
    const workers = new Workers(1);
    t.after(() => workers.stop());
    await workers.init(agents, { collectorUrls: [await deadUrl(), tc.collector.agentUrl], token, dataDir: DATA_DIR, base });

    const enroll = await workers.phase('enroll', agents);
    assert.equal(enroll.count, agents, enroll.problems.join('; '));
    // sha256(id) mod 2 starts about half the agents at the dead collector: each moves on once.
    assert.ok(enroll.failovers > 0 && enroll.failovers < agents, `${enroll.failovers} failovers`);
    const connect = await workers.phase('connect', agents);
    assert.equal(connect.count, agents, connect.problems.join('; '));
    assert.ok(connect.failovers > 0 && connect.failovers < agents, `${connect.failovers} failovers`);
    assert.equal(tc.collector.gateway.connectedAgents, agents);

    const full = await workers.phase('full', agents);
    assert.deepEqual(full.statuses, { stored: agents }, full.problems.join('; '));
    const byReference = await workers.phase('byReference', agents);
    assert.deepEqual(byReference.statuses, { stored: agents }, byReference.problems.join('; '));
    const unchanged = await workers.phase('unchanged', agents);
    assert.deepEqual(unchanged.statuses, { unchanged: agents }, unchanged.problems.join('; '));
    assert.equal(unchanged.open, agents);
    assert.deepEqual(unchanged.problems, []);

    // Every agent came from the worker's own loopback addresses, none from 127.0.0.1.
    const sources = new Set(tc.logs.flatMap((l) => /"remote":"([^"]+)"/.exec(l)?.[1] ?? []));
    assert.ok(sources.size > 0 && [...sources].every((s) => s.startsWith('127.100.')), [...sources].join(', '));

    const released = await workers.phase('release', agents);
    assert.equal(released.open, 0);
  });

  it('answers a message off the contract with a failure, not a crash', async (t) => {
    const workers = new Workers(1);
    t.after(() => workers.stop());
    const worker = workers.list[0];
    assert.ok(worker !== undefined);
    await assert.rejects(worker.request({ type: 'phase', phase: 'stampede', deadlineMs: 1000 }, 60_000), /unreadable message from the bench/);
    await assert.rejects(worker.request({ type: 'phase', phase: 'enroll', deadlineMs: 1000 }, 60_000), /phase enroll before init/);
  });
});

describe('the scale bench on PostgreSQL replicas', { skip: needs(TOOLS.postgres) }, () => {
  it('holds the fleet over three replicas, delivers instructions across them, and moves a SIGKILLed replica\'s agents to the others', async () => {
    const agents = 64;
    const base: Inventory = { ...(await hostInventory()), packageFormat: 'deb', packages: parseDpkgStatus(readData('host-inventory', 'debian12-host.dpkg-status.gz')) };
    const { path: collectorJs } = ensureBuilt('collector');
    const r = await runSize('postgres', agents, { collectorJs, dataDir: DATA_DIR, base, echo: false, progress: () => undefined });

    // Each phase first: its problems name the cause (a refused report) of a count below.
    for (const [phase, p] of Object.entries(r.phases)) {
      assert.deepEqual(p.problems, [], phase);
      assert.equal(p.count, agents, phase);
      assert.equal(p.rssByCollector.length, REPLICAS, phase);
    }
    assert.deepEqual(r.problems, []);
    // Each replica's own connections (its /metrics), summed: the whole fleet, and the store agrees.
    assert.equal(r.replicas.length, REPLICAS);
    assert.ok(r.replicas.every((rep) => rep.connected !== null && rep.connected > 0), JSON.stringify(r.replicas));
    assert.equal(r.replicas.reduce((s, rep) => s + (rep.connected ?? 0), 0), agents);
    assert.equal(r.connected.afterHold, agents);
    assert.equal(r.connected.store, agents);
    assert.ok(r.replicas.every((rep) => rep.peakRssMb > 0 && rep.peakRssMb < 1024), JSON.stringify(r.replicas));

    // Every agent of the sample got its instruction, whichever replica held it, enqueued elsewhere.
    const ins = r.instructions;
    assert.ok(ins !== null);
    assert.deepEqual(ins.problems, []);
    assert.equal(ins.sample, agents);
    assert.equal(ins.enqueued, agents);
    assert.equal(ins.delivered, agents);
    assert.ok(ins.latencyMs.min >= 0 && Number.isFinite(ins.latencyMs.p99) && ins.latencyMs.p99 <= ins.latencyMs.max && ins.latencyMs.max < 30_000, JSON.stringify(ins.latencyMs));
    assert.deepEqual(
      ins.byReplica.map((b) => b.sent),
      r.replicas.map((rep) => rep.connected),
    );

    // The killed replica's agents, every one, were served by the two others; none was lost.
    const tk = r.takeover;
    assert.ok(tk !== null);
    assert.deepEqual(tk.problems, []);
    assert.equal(tk.trimmed, 0);
    assert.equal(tk.moved, r.replicas[tk.victim]?.connected);
    assert.equal(tk.served, tk.moved);
    assert.equal(tk.servedBy[tk.victim], 0);
    assert.equal(tk.servedBy.reduce((s, n) => s + n, 0), tk.moved);
    assert.equal(tk.connectedBefore, agents);
    assert.equal(tk.survivorsTotal, agents);
    assert.equal(tk.workersOpen, agents);
    assert.ok(tk.allMs > 0 && Number.isFinite(tk.allMs) && tk.perAgentMs.p50 <= tk.allMs, JSON.stringify(tk));
  });
});
