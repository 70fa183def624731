/**
 * Issue 10, defect 2: one host or one rollout must not stop the others. A poison host (a
 * feed advisory id longer than an instruction may carry) fails alone with its reason and
 * counts against its own rollout's gate, wherever the engine meets it; a rollout whose
 * advance throws keeps the error as its lastError and stops no other rollout.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createApp } from '../../http/app.ts';
import { createMetrics } from '../../http/metrics.ts';
import type { RolloutDetailJson } from '../../http/views.ts';
import { DEFAULT_POLICY } from '../../domain/correlate/policy.ts';
import { Correlator } from '../../domain/correlate/correlator.ts';
import { splitWaves } from '../../domain/rollout/waves.ts';
import { LIMITS } from '../../../shared/grammar.ts';
import { MAX_INSTRUCTION_BYTES, type PatchInstruction } from '../../../shared/instructions.ts';
import { type Bench, BIG_ADVISORIES, bigAdvisories, bigInventory, BIND, bindPlan, hostInventory, instructionOf, makeBench, NOW, poison, POISON_ADVISORY, POISON_CVE, resultFor } from '../../../shared/testing/rollout-bench.ts';

const MIN = 60_000;
const at = (m: number) => new Date(NOW.getTime() + m * MIN);
const ROOT = join(import.meta.dirname, '..', '..', '..');

/** Answers every pending instruction of these agents. */
async function answer(b: Bench, agents: readonly string[], status: 'succeeded' | 'failed' = 'succeeded'): Promise<number> {
  const entries = [];
  for (const a of agents) entries.push(...(await b.outbox.pendingFor(a, b.clock.now)));
  for (const e of entries) assert.equal(await b.engine.onResult(e.agentId, resultFor(e.id, status, b.clock.now)), true);
  return entries.length;
}

/** Rollout B: three healthy `web` hosts, canary then two, 30 min between waves (so its second wave starts on a tick). */
async function startHealthy(b: Bench): Promise<{ id: string; agents: string[] }> {
  const agents: string[] = [];
  for (const i of [1, 2, 3]) agents.push(await b.addHost({ hostname: `web-${i}`, tags: ['web'] }));
  const id = await b.engine.create(bindPlan({ name: 'healthy', waitMinutes: 30 }), 'alice');
  assert.equal(await b.engine.submit(id, 'alice'), 'running');
  b.clock.now = at(1);
  assert.equal(await answer(b, agents), 1, 'the healthy canary');
  return { id, agents };
}

/** Then B runs to the end: its second wave on the tick after its wait, answered. */
async function finishHealthy(b: Bench, healthy: { id: string; agents: string[] }, minute: number): Promise<void> {
  b.clock.now = at(minute);
  await b.engine.tick(at(minute));
  assert.equal(await answer(b, healthy.agents), 2, 'the healthy second wave was sent');
  assert.equal((await b.engine.get(healthy.id)).state, 'completed');
}

/** Rollout A's plan: bind everywhere, and POISON_CVE, which only a poisoned host has. */
const poisonPlan = (over: Parameters<typeof bindPlan>[0] = {}) =>
  bindPlan({ name: 'with a poison host', target: { tags: ['a'] }, action: { kind: 'patch', advisories: [BIND, POISON_CVE] }, ...over });

interface PoisonCase {
  name: string;
  /** Starts rollout A so that the engine meets its poison host; returns A's id, its poison host and its healthy ones. */
  run: (b: Bench) => Promise<{ id: string; poisoned: string; healthy: string[] }>;
}

const cases: PoisonCase[] = [
  {
    name: 'a tick meets it (its window opens while another rollout waits for its next wave)',
    run: async (b) => {
      const poisoned = await b.addHost({ hostname: 'a-1', tags: ['a'] });
      await b.report(poisoned, poison(hostInventory({ hostname: 'a-1' })));
      // 18:00 now; A's window opens at 22:00: nothing of A is built at submit.
      const id = await b.engine.create(poisonPlan({ windows: [{ cron: '0 22 * * *', durationMinutes: 120, timezone: 'UTC' }] }), 'alice');
      assert.equal(await b.engine.submit(id, 'alice'), 'running');
      b.clock.now = at(240);
      await b.engine.tick(at(240));
      return { id, poisoned, healthy: [] };
    },
  },
  {
    name: 'it is the canary at submit',
    run: async (b) => {
      const poisoned = await b.addHost({ hostname: 'a-1', tags: ['a'] });
      await b.report(poisoned, poison(hostInventory({ hostname: 'a-1' })));
      const id = await b.engine.create(poisonPlan(), 'alice');
      assert.equal(await b.engine.submit(id, 'alice'), 'halted', 'submit answers: the canary failed alone and the gate held');
      return { id, poisoned, healthy: [] };
    },
  },
  {
    name: "the canary's result starts the wave it is in",
    run: async (b) => {
      const two = [await b.addHost({ hostname: 'a-1', tags: ['a'] }), await b.addHost({ hostname: 'a-2', tags: ['a'] })];
      const waves = splitWaves(two, { canary: { hosts: 1 }, growth: { factor: 2 } });
      const canary = two.find((x) => waves.get(x) === 0) ?? assert.fail();
      const poisoned = two.find((x) => waves.get(x) === 1) ?? assert.fail();
      await b.report(poisoned, poison(hostInventory({ hostname: 'a-2' })));
      const id = await b.engine.create(poisonPlan({ waitMinutes: 0 }), 'alice');
      await b.engine.submit(id, 'alice');
      const e = (await b.outbox.pendingFor(canary, b.clock.now))[0] ?? assert.fail('the canary was sent');
      assert.equal(await b.engine.onResult(canary, resultFor(e.id, 'succeeded', b.clock.now)), true, 'the result is taken');
      assert.notEqual((await b.outbox.get(e.id))?.resultAt, null, 'and recorded');
      return { id, poisoned, healthy: [canary] };
    },
  },
  {
    name: 'resume sends its withdrawn step again after its inventory changed',
    run: async (b) => {
      const poisoned = await b.addHost({ hostname: 'a-1', tags: ['a'] });
      const id = await b.engine.create(poisonPlan(), 'alice');
      await b.engine.submit(id, 'alice');
      await b.engine.pause(id, 'alice');
      await b.report(poisoned, poison(hostInventory({ hostname: 'a-1' })));
      await b.engine.resume(id, 'alice');
      return { id, poisoned, healthy: [] };
    },
  },
];

describe('RolloutEngine: a poison host fails alone (issue 10)', () => {
  for (const c of cases) {
    it(`when ${c.name}; the other rollout advances and completes`, async (t) => {
      const b = await makeBench(t, { advisories: [POISON_ADVISORY] });
      const healthy = await startHealthy(b);
      const a = await c.run(b);
      const r = await b.engine.get(a.id);
      const host = r.hosts.find((h) => h.agentId === a.poisoned) ?? assert.fail();
      assert.equal(host.state, 'failed');
      assert.equal(host.code, 'PW_ERR_INSTRUCTION_BUILD');
      assert.match(host.detail ?? '', /^PW_ERR_INSTRUCTION_BUILD: the patch instruction for agent \S+ breaks the instruction schema: advisories\.\d+: /);
      assert.ok(!(host.detail ?? '').includes('9'.repeat(130)), 'the detail names the field, not its value');
      assert.equal(r.state, 'halted', 'the failure counts against its own gate');
      assert.match(r.haltedReason ?? '', /hosts failed/);
      assert.deepEqual(await b.outbox.pendingFor(a.poisoned, b.clock.now), [], 'nothing waits for it');
      assert.ok(b.errors.some((e) => e.where.agentId === a.poisoned && e.where.during === 'host-step'), 'reported to onError');
      const audit = b.db.prepare("SELECT actor, detail FROM audit WHERE action = 'rollout.host-failed' AND target = ?").all(`rollout:${a.id}`) as { actor: string; detail: string }[];
      assert.deepEqual(audit.map((x) => [x.actor, (JSON.parse(x.detail) as { agentId: string }).agentId]), [['system', a.poisoned]]);
      await finishHealthy(b, healthy, 300);
    });
  }
});

describe('RolloutEngine: a rollout that cannot advance stops no other (issue 10)', () => {
  it('keeps its error as lastError, reports it, and the others complete; it clears once the rollout advances', async (t) => {
    const b = await makeBench(t);
    const healthy = await startHealthy(b);
    const broken = await b.addHost({ hostname: 'a-1', tags: ['a'] });
    const id = await b.engine.create(bindPlan({ name: 'broken', target: { tags: ['a'] } }), 'alice');
    await b.engine.submit(id, 'alice');
    const sent = (await b.outbox.pendingFor(broken, b.clock.now))[0] ?? assert.fail('the canary was sent');
    // A row this collector cannot read (written by another version, or damaged): advancing this rollout throws.
    b.db.prepare("UPDATE instruction_outbox SET result = '{not json' WHERE id = ?").run(sent.id);
    b.clock.now = at(31);
    const report = await b.engine.tick(at(31));
    assert.equal(report.rollouts, 2);
    assert.deepEqual(report.failed.map((f) => [f.rolloutId, f.code]), [[id, 'PW_ERR_INTERNAL']]);
    const r = await b.engine.get(id);
    assert.equal(r.state, 'running');
    assert.equal(r.lastError?.code, 'PW_ERR_INTERNAL');
    assert.match(r.lastError.message, /^tick: .*JSON/);
    assert.equal(r.lastError.at, at(31).toISOString());
    assert.ok(b.errors.some((e) => e.where.rolloutId === id && e.where.during === 'tick'));
    assert.equal(await answer(b, healthy.agents), 2, 'the healthy rollout sent its second wave in the same tick');
    assert.equal((await b.engine.get(healthy.id)).state, 'completed');

    b.db.prepare('UPDATE instruction_outbox SET result = NULL WHERE id = ?').run(sent.id);
    await b.engine.tick(at(32));
    assert.equal((await b.engine.get(id)).lastError, null, 'cleared by the next advance');
  });
});

describe('a host that failed alone, seen through the API, the CLI and the dashboard', () => {
  it('shows its state, code and reason', async (t) => {
    const b = await makeBench(t, { advisories: [POISON_ADVISORY] });
    const poisoned = await b.addHost({ hostname: 'a-1', tags: ['a'] });
    await b.report(poisoned, poison(hostInventory({ hostname: 'a-1' })));
    const id = await b.engine.create(poisonPlan(), 'alice');
    const preview = await b.engine.preview(id);
    assert.equal(preview.hosts[0]?.error?.code, 'PW_ERR_INSTRUCTION_BUILD', 'the preview says so before the start');

    const tokens = b.store.async.apiTokens;
    const viewer = (await tokens.create({ name: 'viewer', role: 'viewer', createdBy: 'cli:test' })).token;
    const operator = (await tokens.create({ name: 'ops', role: 'operator', createdBy: 'cli:test' })).token;
    const app = createApp({ store: b.store.async, correlator: new Correlator(), policy: DEFAULT_POLICY, metrics: createMetrics(), rollouts: b.engine, now: () => b.clock.now });
    const submitted = await app.request(`/api/v1/rollouts/${id}/submit`, { method: 'POST', headers: { authorization: `Bearer ${operator}` } });
    assert.equal(submitted.status, 200, 'a poison canary fails alone: the submit is answered, never a 500');
    const res = await app.request(`/api/v1/rollouts/${id}`, { headers: { authorization: `Bearer ${viewer}` } });
    assert.equal(res.status, 200);
    const api = ((await res.json()) as { rollout: RolloutDetailJson }).rollout;
    assert.equal(api.state, 'halted');
    assert.deepEqual(
      api.hosts.map((h) => [h.hostname, h.state, h.code]),
      [['a-1', 'failed', 'PW_ERR_INSTRUCTION_BUILD']],
    );
    assert.match(api.hosts[0]?.detail ?? '', /breaks the instruction schema: advisories/);

    const show = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', join(ROOT, 'collector', 'main.ts'), 'rollout', 'show', '--db', b.path, '--id', id], { cwd: ROOT, timeout: 60_000 }, (err, stdout) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout });
      });
    });
    assert.equal(show.code, 0);
    assert.match(show.stdout, /^state: halted \(gate after wave 0/m);
    assert.match(show.stdout, /^a-1 +0 +failed +patch +- +PW_ERR_INSTRUCTION_BUILD: the patch instruction for agent \S+ breaks the instruction schema: advisories\.\d+/m);
  });
});

describe('RolloutEngine: a patch too large for one instruction is sent in parts (issue 10)', () => {
  it('previews the parts, sends them one after another, each within the limits, never a package twice (a pause between parts included), then completes', async (t) => {
    const b = await makeBench(t, { advisories: bigAdvisories() });
    const big = await b.addHost({ hostname: 'big-1', os: 'debian', tags: ['big'] });
    await b.report(big, bigInventory('big-1', 6000));
    const id = await b.engine.create(bindPlan({ name: 'big', target: { tags: ['big'] }, action: { kind: 'patch', advisories: [...BIG_ADVISORIES] } }), 'alice');
    assert.equal(await b.engine.submit(id, 'alice'), 'running', 'no ZodError from the signer');
    const preview = (await b.engine.preview(id)).hosts[0] ?? assert.fail('the host is in the preview');
    assert.equal(preview.packages.length, 12_000);
    assert.equal(preview.error, null);
    // 12,000 names of about 45 characters: some 860 KB of packages, four parts by bytes.
    assert.equal(preview.patchInstructions, 4);

    const seen = new Set<string>();
    let parts = 0;
    for (let e = await b.outbox.pendingFor(big, b.clock.now); e.length > 0; e = await b.outbox.pendingFor(big, b.clock.now)) {
      assert.equal(e.length, 1, 'one part at a time');
      const entry = e[0] ?? assert.fail();
      assert.ok(Buffer.byteLength(entry.payload) <= MAX_INSTRUCTION_BYTES);
      const ins = instructionOf(entry) as PatchInstruction;
      assert.ok(ins.packages.length <= LIMITS.list);
      assert.deepEqual(ins.advisories, [...BIG_ADVISORIES]);
      parts++;
      if (parts < preview.patchInstructions) assert.match((await b.engine.get(id)).hosts[0]?.detail ?? '', /^patch in parts: \d+ of \d+ packages in this instruction, the rest follow$/);
      if (parts === 2) {
        // Withdrawn and sent again: the same part, not the first one again, and no extra part.
        await b.engine.pause(id, 'alice');
        assert.deepEqual((await b.engine.get(id)).hosts[0]?.steps, ['patch']);
        await b.engine.resume(id, 'alice');
        const again = instructionOf((await b.outbox.pendingFor(big, b.clock.now))[0] ?? assert.fail()) as PatchInstruction;
        assert.deepEqual(again.packages, ins.packages);
        const resent = (await b.outbox.pendingFor(big, b.clock.now))[0] ?? assert.fail();
        for (const p of ins.packages) assert.ok(!seen.has(p.name), `${p.name} sent twice`);
        for (const p of ins.packages) seen.add(p.name);
        assert.equal(await b.engine.onResult(big, resultFor(resent.id, 'succeeded', b.clock.now)), true);
        continue;
      }
      for (const p of ins.packages) assert.ok(!seen.has(p.name), `${p.name} sent twice`);
      for (const p of ins.packages) seen.add(p.name);
      assert.equal(await b.engine.onResult(big, resultFor(entry.id, 'succeeded', b.clock.now)), true);
    }
    assert.equal(parts, preview.patchInstructions);
    assert.equal(seen.size, 12_000);
    const r = await b.engine.get(id);
    assert.deepEqual([r.state, r.hosts[0]?.state], ['completed', 'succeeded']);
  });
});
