/**
 * Rollouts over a simulated fleet, end to end over real sockets: a real collector on
 * 127.0.0.1:0 over a temp SQLite file with a 50 ms rollout tick and a clock the test moves,
 * the real AlmaLinux 9 advisory ALSA-2026:54510 (bind) imported into its store, and
 * SimAgents (real WebSocket clients with real keys and real inventories) that check every
 * instruction against the collector key they pinned and answer as scripted.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeyPair } from '../../../shared/signing.ts';
import { INSTRUCTION_SCHEMA, type Instruction, type PatchInstruction, signInstruction } from '../../../shared/instructions.ts';
import { dataPath } from '../../../shared/testing/data.ts';
import { loadOsv } from '../../../shared/testing/correlate-fixtures.ts';
import type { Advisory } from '../../domain/feeds/types.ts';
import { startCollector } from '../../../shared/testing/collector-harness.ts';
import type { Collector } from '../../server.ts';
import type { PlanInput } from '../../domain/rollout/plan.ts';
import { checkInstruction, SimAgent } from '../../../shared/testing/fleet-sim.ts';
import { hostInventory, type HostSpec } from '../../../shared/testing/rollout-bench.ts';

const TICK_MS = 50;
const MIN = 60_000;
/** ALSA-2026:54510 fixes bind (bind-libs, bind-license, bind-utils are in the RHEL 9.5 image the AlmaLinux hosts are built from). */
const BIND = 'ALSA-2026:54510';

let bindAdvisory: Promise<Advisory> | undefined;
function loadBind(): Promise<Advisory> {
  bindAdvisory ??= loadOsv(dataPath('osv', 'almalinux9.osv.jsonl.gz')).then((all) => all.find((a) => a.id === BIND) ?? assert.fail(`${BIND} is not in the AlmaLinux 9 export`));
  return bindAdvisory;
}

/** The collector's clock: real time plus an offset the test moves forward. */
interface Clock {
  now: () => Date;
  advance: (ms: number) => void;
}

function clock(): Clock {
  let offset = 0;
  return {
    now: () => new Date(Date.now() + offset),
    advance: (ms) => {
      offset += ms;
    },
  };
}

interface Fleet {
  collector: Collector;
  clock: Clock;
  agents: SimAgent[];
  /** The fixed versions the bind advisory names: what the hosts' repositories offer. */
  repository: Map<string, string>;
  by(agentId: string): SimAgent;
}

/** `alma` AlmaLinux 9 hosts tagged `web`, `db` AlmaLinux 9 hosts tagged `db`, `debian` Debian 12 hosts tagged `web`. */
async function startFleet(t: TestContext, counts: { alma: number; db?: number; debian?: number }): Promise<Fleet> {
  const c = clock();
  const { collector } = await startCollector(t, { rolloutTickMs: TICK_MS, now: c.now });
  const bind = await loadBind();
  await collector.store.advisories.importAdvisories({ source: 'osv', kind: 'osv', location: dataPath('osv', 'almalinux9.osv.jsonl.gz') }, [bind], c.now());
  await collector.findings.load();
  const repository = new Map<string, string>();
  for (const a of bind.affected) {
    const fixed = a.ranges.find((r) => r.fixed !== null)?.fixed;
    if (a.ecosystem === 'AlmaLinux:9' && fixed != null) repository.set(a.package, fixed);
  }
  const specs: (HostSpec & { tags: string[] })[] = [
    ...Array.from({ length: counts.alma }, (_, i) => ({ hostname: `web-${i + 1}`, tags: i % 2 === 0 ? ['web', 'env=prod'] : ['web'] })),
    ...Array.from({ length: counts.db ?? 0 }, (_, i) => ({ hostname: `db-${i + 1}`, tags: ['db'] })),
    ...Array.from({ length: counts.debian ?? 0 }, (_, i) => ({ hostname: `deb-${i + 1}`, os: 'debian' as const, tags: ['web'] })),
  ];
  const { token } = await collector.store.tokens.create({ uses: specs.length, ttlMs: 3600_000, createdBy: 'test' }, c.now());
  const agents = await Promise.all(specs.map((spec) => SimAgent.enroll({ url: collector.agentUrl, token, inventory: hostInventory(spec), repository, now: c.now })));
  t.after(() => {
    for (const a of agents) a.terminate();
  });
  for (const [i, a] of agents.entries()) await collector.store.agents.setTags(a.agentId, specs[i]?.tags ?? [], 'cli:test', c.now());
  const byId = new Map(agents.map((a) => [a.agentId, a]));
  return { collector, clock: c, agents, repository, by: (id) => byId.get(id) ?? assert.fail(`no sim agent ${id}`) };
}

function plan(over: Partial<PlanInput> = {}): PlanInput {
  return {
    name: 'bind week 48',
    target: { ecosystems: ['AlmaLinux:9'], tags: ['web'] },
    action: { kind: 'patch', advisories: [BIND] },
    waves: { canary: { hosts: 2 }, growth: { factor: 2 } },
    waitMinutes: 30,
    ...over,
  };
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * Lets the collector's own ticks run, then ticks once more at the current clock so a
 * "nothing happened" assertion never rests on a timer that did not fire on a busy machine,
 * then waits for any frame that tick sent to arrive.
 */
async function ticks(f: Fleet): Promise<void> {
  await sleep(3 * TICK_MS);
  await f.collector.rollouts.tick();
  await sleep(3 * TICK_MS);
}

/** agent id -> wave, as the preview of a created rollout says. */
async function wavesOf(f: Fleet, id: string): Promise<Map<string, number>> {
  return new Map((await f.collector.rollouts.preview(id)).hosts.map((h) => [h.agentId, h.wave]));
}

function auditOf(f: Fleet, id: string): { at: string; actor: string; action: string }[] {
  return f.collector.sqlite!.db.prepare('SELECT at, actor, action FROM audit WHERE target = ? ORDER BY id').all(`rollout:${id}`) as { at: string; actor: string; action: string }[];
}

function noViolations(f: Fleet): void {
  for (const a of f.agents) assert.deepEqual(a.violations, [], `${a.hostname}: every instruction passed its checks`);
}

function bindLibs(inv: { packages: { name: string; version: string }[] } | undefined): string | undefined {
  return inv?.packages.find((p) => p.name === 'bind-libs')?.version;
}

describe('checkInstruction: what a sim agent accepts', () => {
  const collectorKey = generateKeyPair();
  const otherKey = generateKeyPair();
  const agentId = '0b6e2f0e-8a4f-4f0e-9a8e-3f1f6d1c2b7a';
  const now = new Date('2026-11-26T18:00:00.000Z');
  const base: Instruction = {
    schema: INSTRUCTION_SCHEMA,
    id: '5d1c8a3e-2f4b-4c6d-8e9f-0a1b2c3d4e5f',
    agentId,
    issuedAt: now.toISOString(),
    notBefore: now.toISOString(),
    expiresAt: new Date(now.getTime() + 10 * MIN).toISOString(),
    rolloutId: null,
    dryRun: false,
    kind: 'refresh',
  };
  const good = signInstruction(base, collectorKey.privateKeyPem);
  const cases: { name: string; frame: unknown; code: string | null }[] = [
    { name: 'signed by the pinned key, for this agent, not expired', frame: good, code: null },
    { name: 'signed by another key', frame: signInstruction(base, otherKey.privateKeyPem), code: 'PW_ERR_INSTRUCTION_SIGNATURE' },
    { name: 'payload changed after signing', frame: { ...good, payload: good.payload.replace('"refresh"', '"reboot"') }, code: 'PW_ERR_INSTRUCTION_SIGNATURE' },
    { name: 'for another agent', frame: signInstruction({ ...base, agentId: '7c9e6679-7425-40de-944b-e07fc1f90ae7' }, collectorKey.privateKeyPem), code: 'PW_ERR_INSTRUCTION_TARGET' },
    { name: 'expired a second ago', frame: signInstruction({ ...base, expiresAt: new Date(now.getTime() - 1000).toISOString() }, collectorKey.privateKeyPem), code: 'PW_ERR_INSTRUCTION_EXPIRED' },
    { name: 'no signature', frame: { payload: good.payload }, code: 'PW_ERR_INSTRUCTION_MALFORMED' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = checkInstruction(c.frame, collectorKey.publicKey, agentId, now);
      assert.equal(r.ok ? null : r.code, c.code);
      if (r.ok) assert.equal(r.instruction.id, base.id);
    });
  }
});

describe('rollouts over a simulated fleet on real sockets', () => {
  it('canary of 2 fails: halted by the system, no agent outside the canary ever gets an instruction, still halted after more ticks', async (t) => {
    const f = await startFleet(t, { alma: 32, db: 4, debian: 4 });
    const rollouts = f.collector.rollouts;
    const id = await rollouts.create(plan(), 'alice');
    const waves = await wavesOf(f, id);
    assert.equal(waves.size, 32, 'the AlmaLinux web hosts, not the db or Debian ones');
    const canary = [...waves].filter(([, w]) => w === 0).map(([a]) => a);
    assert.equal(canary.length, 2);
    for (const a of canary) f.by(a).script = 'fail';

    assert.equal(await rollouts.submit(id, 'alice'), 'running');
    await waitFor('the rollout to halt', async () => (await rollouts.get(id)).state === 'halted');
    await Promise.all(f.agents.map((a) => a.settled()));
    const halted = await rollouts.get(id);
    assert.match(halted.haltedReason ?? '', /gate after wave 0: 2 of 2 hosts failed/);
    const trail = auditOf(f, id);
    assert.deepEqual(trail.filter((e) => e.action === 'rollout.halt').map((e) => e.actor), ['system']);

    f.clock.advance(2 * 60 * MIN);
    await ticks(f);
    f.clock.advance(24 * 60 * MIN);
    await ticks(f);
    assert.equal((await rollouts.get(id)).state, 'halted');
    for (const a of f.agents) {
      const expected = canary.includes(a.agentId) ? 1 : 0;
      assert.equal(a.frames, expected, `${a.hostname}: ${expected} instruction frame(s)`);
      if (expected === 0) assert.deepEqual(await f.collector.outbox.pendingFor(a.agentId, f.clock.now()), [], `${a.hostname}: nothing pending`);
    }
    assert.deepEqual((await f.collector.outbox.forRollout(id)).map((e) => e.agentId).sort(), [...canary].sort());
    for (const a of canary) assert.deepEqual(f.by(a).acked.filter((x) => x.kind === 'result').map((x) => x.status), ['stored']);
    assert.deepEqual((await rollouts.get(id)).hosts.filter((h) => h.state !== 'pending').map((h) => h.agentId).sort(), [...canary].sort());
    assert.deepEqual(auditOf(f, id).at(-1), trail.at(-1), 'nothing happened to the rollout after the halt');
    // What an operator's alert sees.
    const metrics = await (await fetch(`${f.collector.url}/metrics`)).text();
    assert.match(metrics, /^patchwarden_rollouts\{state="halted"\} 1$/m);
    assert.match(metrics, /^patchwarden_rollouts\{state="running"\} 0$/m);
    assert.match(metrics, /^patchwarden_instruction_results_total\{status="failed"\} 2$/m);
    noViolations(f);
  });

  it('all succeed: waves in order, each after its wait; every host patched once; fresh inventories stored; findings resolved', async (t) => {
    const f = await startFleet(t, { alma: 32, db: 4, debian: 4 });
    const rollouts = f.collector.rollouts;
    const wait = 10;
    const id = await rollouts.create(plan({ waitMinutes: wait }), 'alice');
    const preview = await rollouts.preview(id);
    assert.deepEqual(preview.waves, [2, 4, 8, 16, 2]);
    const fixed = f.repository.get('bind-libs') ?? assert.fail('the advisory fixes bind-libs');
    for (const h of preview.hosts) assert.ok(h.findingsResolved.includes(BIND), `${h.hostname} has ${BIND} open`);
    const waves = await wavesOf(f, id);
    const inWave = (w: number): SimAgent[] => [...waves].filter(([, x]) => x === w).map(([a]) => f.by(a));
    const hostsDone = async (w: number): Promise<boolean> => (await rollouts.get(id)).hosts.filter((h) => h.wave === w).every((h) => h.state === 'succeeded');

    assert.equal(await rollouts.submit(id, 'alice'), 'running');
    for (let w = 0; w < preview.waves.length; w++) {
      await waitFor(`wave ${w} to succeed`, () => hostsDone(w));
      if (w === preview.waves.length - 1) break;
      await ticks(f);
      assert.deepEqual(inWave(w + 1).map((a) => a.frames), inWave(w + 1).map(() => 0), `wave ${w + 1} waits ${wait} min`);
      f.clock.advance(wait * MIN);
      await waitFor(`wave ${w + 1} to be sent`, () => inWave(w + 1).every((a) => a.frames === 1));
    }
    await waitFor('the rollout to complete', async () => (await rollouts.get(id)).state === 'completed');
    await Promise.all(f.agents.map((a) => a.settled()));

    for (const a of f.agents) assert.equal(a.frames, waves.has(a.agentId) ? 1 : 0, `${a.hostname}: instruction frames`);
    noViolations(f);
    const trail = auditOf(f, id);
    const waveDone = trail.filter((e) => e.action === 'rollout.wave-done');
    assert.equal(waveDone.length, preview.waves.length - 1);
    for (let w = 1; w < preview.waves.length; w++) {
      const prev = inWave(w - 1).map((a) => a.received[0]?.seq ?? Infinity);
      const cur = inWave(w).map((a) => a.received[0]?.seq ?? -Infinity);
      assert.ok(Math.max(...prev) < Math.min(...cur), `wave ${w} after wave ${w - 1}`);
      const doneAt = Date.parse(waveDone[w - 1]?.at ?? assert.fail());
      for (const a of inWave(w)) {
        const ins = a.received[0]?.instruction ?? assert.fail();
        assert.ok(Date.parse(ins.issuedAt) >= doneAt + wait * MIN, `${a.hostname} issued after wave ${w - 1} was done + ${wait} min`);
      }
    }
    assert.deepEqual(trail.at(-1), { at: trail.at(-1)?.at, actor: 'system', action: 'rollout.complete' });
    for (const [agentId] of waves) {
      const a = f.by(agentId);
      const ins = a.received[0]?.instruction as PatchInstruction;
      assert.deepEqual(ins.packages.map((p) => p.name), ['bind-libs', 'bind-license', 'bind-utils']);
      assert.equal(bindLibs(await f.collector.store.reports.latestInventory(agentId)), fixed, `${a.hostname}: the stored inventory shows the patched bind-libs`);
      const findings = (await f.collector.findings.findings(agentId))?.findings ?? [];
      assert.equal(findings.some((x) => x.advisory === BIND && x.status !== 'resolved'), false, `${a.hostname}: ${BIND} resolved from the new inventory`);
    }
    for (const a of f.agents.filter((x) => !waves.has(x.agentId))) {
      assert.notEqual(bindLibs(await f.collector.store.reports.latestInventory(a.agentId)), fixed, `${a.hostname} untouched`);
    }
  });

  it('a closed window holds every instruction back; once the clock is inside it, the canary gets its instructions', async (t) => {
    const f = await startFleet(t, { alma: 8 });
    const rollouts = f.collector.rollouts;
    const start = new Date(Math.ceil((f.clock.now().getTime() + 2 * 60 * MIN) / MIN) * MIN);
    const duration = 30;
    const window = { cron: `${start.getUTCMinutes()} ${start.getUTCHours()} * * *`, durationMinutes: duration, timezone: 'UTC' };
    const id = await rollouts.create(plan({ windows: [window], waitMinutes: 0 }), 'alice');
    const waves = await wavesOf(f, id);
    const canary = [...waves].filter(([, w]) => w === 0).map(([a]) => f.by(a));
    for (const a of f.agents) a.script = 'hang';

    assert.equal(await rollouts.submit(id, 'alice'), 'running');
    await ticks(f);
    f.clock.advance(start.getTime() - f.clock.now().getTime() - MIN);
    await ticks(f);
    assert.deepEqual(f.agents.map((a) => a.frames), f.agents.map(() => 0), 'nothing reaches an agent while the window is closed');
    assert.deepEqual(await f.collector.outbox.forRollout(id), [], 'nothing even queued');

    f.clock.advance(2 * MIN);
    await waitFor('the canary to get its instructions', () => canary.every((a) => a.frames === 1));
    await ticks(f);
    for (const a of f.agents) assert.equal(a.frames, canary.includes(a) ? 1 : 0, `${a.hostname}: instruction frames`);
    for (const a of canary) {
      const ins = a.received[0]?.instruction ?? assert.fail();
      assert.ok(Date.parse(ins.issuedAt) >= start.getTime(), 'issued inside the window');
      assert.equal(ins.expiresAt, new Date(start.getTime() + duration * MIN).toISOString(), 'expires when the window closes');
    }
    noViolations(f);
  });

  it('an offline canary gets its instruction when it reconnects; an expired one is never delivered; a dropped one comes again', async (t) => {
    const f = await startFleet(t, { alma: 4 });
    const rollouts = f.collector.rollouts;
    const [a, b, c] = f.agents as [SimAgent, SimAgent, SimAgent, SimAgent];
    const offline = async (x: SimAgent): Promise<void> => {
      await x.disconnect();
      await waitFor(`${x.hostname} offline`, async () => (await f.collector.store.hosts.get(x.agentId))?.connected === false);
    };

    await offline(a);
    const r1 = await rollouts.create(plan({ target: { agentIds: [a.agentId] } }), 'alice');
    assert.equal(await rollouts.submit(r1, 'alice'), 'running');
    const e1 = (await f.collector.outbox.forRollout(r1))[0] ?? assert.fail('queued in the outbox');
    assert.equal(e1.sentAt, null, 'queued, not delivered');
    await ticks(f);
    assert.equal(a.frames, 0);
    await a.reconnect();
    await waitFor('the reconnected agent to finish', async () => (await rollouts.get(r1)).state === 'completed');
    assert.deepEqual(a.received.map((x) => x.instruction.id), [e1.id]);
    assert.notEqual((await f.collector.outbox.get(e1.id))?.sentAt ?? null, null);

    await offline(b);
    const r2 = await rollouts.create(plan({ target: { agentIds: [b.agentId] }, instructionTtlMinutes: 5 }), 'alice');
    assert.equal(await rollouts.submit(r2, 'alice'), 'running');
    const e2 = (await f.collector.outbox.forRollout(r2))[0] ?? assert.fail('queued in the outbox');
    f.clock.advance(6 * MIN);
    await waitFor('the expired canary to halt the rollout', async () => (await rollouts.get(r2)).state === 'halted');
    assert.notEqual((await f.collector.outbox.get(e2.id))?.expiredAt ?? null, null);
    await b.reconnect();
    await ticks(f);
    assert.equal(b.frames, 0, 'an expired instruction is never delivered');
    assert.equal((await f.collector.outbox.get(e2.id))?.sentAt, null);
    assert.deepEqual((await rollouts.get(r2)).hosts.map((h) => h.state), ['expired']);

    c.script = 'disconnect';
    const r3 = await rollouts.create(plan({ target: { agentIds: [c.agentId] } }), 'alice');
    assert.equal(await rollouts.submit(r3, 'alice'), 'running');
    await waitFor('the agent to drop the connection', async () => !c.connected && (await f.collector.store.hosts.get(c.agentId))?.connected === false);
    c.script = 'succeed';
    await c.reconnect();
    await waitFor('the re-sent instruction to be answered', async () => (await rollouts.get(r3)).state === 'completed');
    const e3 = (await f.collector.outbox.forRollout(r3))[0] ?? assert.fail('queued in the outbox');
    assert.deepEqual(c.received.map((x) => x.instruction.id), [e3.id, e3.id], 'the same signed instruction, sent again after the reconnect');
    noViolations(f);
  });

  it('pause holds the next wave and takes back what was not delivered; resume sends it afresh', async (t) => {
    const f = await startFleet(t, { alma: 10 });
    const rollouts = f.collector.rollouts;
    const id = await rollouts.create(plan({ waves: { canary: { hosts: 2 }, growth: { sizes: [4] } }, waitMinutes: 10 }), 'alice');
    const waves = await wavesOf(f, id);
    const inWave = (w: number): SimAgent[] => [...waves].filter(([, x]) => x === w).map(([a]) => f.by(a));
    assert.equal(await rollouts.submit(id, 'alice'), 'running');
    await waitFor('the canary to succeed', async () => (await rollouts.get(id)).waveDoneAt !== null);

    await rollouts.pause(id, 'bob');
    f.clock.advance(11 * MIN);
    await ticks(f);
    assert.equal((await rollouts.get(id)).state, 'paused');
    assert.deepEqual(inWave(1).map((a) => a.frames), [0, 0, 0, 0], 'paused: the next wave waits although its wait is over');

    const [x, ...online] = inWave(1) as [SimAgent, ...SimAgent[]];
    await x.disconnect();
    await waitFor(`${x.hostname} offline`, async () => (await f.collector.store.hosts.get(x.agentId))?.connected === false);
    await rollouts.resume(id, 'bob');
    await waitFor('the online hosts of wave 1 to succeed', async () => (await rollouts.get(id)).hosts.filter((h) => online.some((a) => a.agentId === h.agentId)).every((h) => h.state === 'succeeded'));
    const [withdrawn] = await f.collector.outbox.pendingFor(x.agentId, f.clock.now());
    assert.notEqual(withdrawn, undefined, `${x.hostname} has its instruction queued`);
    await rollouts.pause(id, 'bob');
    assert.notEqual((await f.collector.outbox.get(withdrawn?.id ?? ''))?.withdrawnAt ?? null, null, 'taken back on pause');
    await x.reconnect();
    await ticks(f);
    assert.equal(x.frames, 0, 'a withdrawn instruction is not delivered');

    await rollouts.resume(id, 'bob');
    await waitFor(`${x.hostname} to get a fresh instruction`, () => x.frames === 1);
    assert.notEqual(x.received[0]?.instruction.id, withdrawn?.id, 'a new instruction, not the withdrawn one');
    await waitFor('wave 1 to pass', async () => (await rollouts.get(id)).waveDoneAt !== null && (await rollouts.get(id)).currentWave === 1);
    f.clock.advance(10 * MIN);
    await waitFor('the rollout to complete', async () => (await rollouts.get(id)).state === 'completed');
    for (const a of f.agents) assert.equal(a.frames, 1, `${a.hostname}: exactly one instruction`);
    const ops = auditOf(f, id).filter((e) => e.action === 'rollout.pause' || e.action === 'rollout.resume');
    assert.deepEqual(ops.map((e) => `${e.actor} ${e.action}`), ['bob rollout.pause', 'bob rollout.resume', 'bob rollout.pause', 'bob rollout.resume']);
    noViolations(f);
  });

  it('cancel stops a live rollout: the hosts still working keep what they have, later waves get nothing', async (t) => {
    const f = await startFleet(t, { alma: 10 });
    const rollouts = f.collector.rollouts;
    const id = await rollouts.create(plan({ waitMinutes: 0 }), 'alice');
    const waves = await wavesOf(f, id);
    const inWave = (w: number): SimAgent[] => [...waves].filter(([, x]) => x === w).map(([a]) => f.by(a));
    for (const a of inWave(1)) a.script = 'hang';
    assert.equal(await rollouts.submit(id, 'alice'), 'running');
    await waitFor('wave 1 to be working', () => inWave(1).every((a) => a.frames === 1));

    await rollouts.cancel(id, 'bob');
    assert.equal((await rollouts.get(id)).state, 'cancelled');
    f.clock.advance(60 * MIN);
    await ticks(f);
    assert.equal((await rollouts.get(id)).state, 'cancelled');
    assert.deepEqual(inWave(2).map((a) => a.frames), inWave(2).map(() => 0), 'the wave after the cancel gets nothing');
    for (const a of inWave(2)) assert.deepEqual(await f.collector.outbox.pendingFor(a.agentId, f.clock.now()), []);
    assert.equal((await f.collector.outbox.forRollout(id)).length, inWave(0).length + inWave(1).length);
    assert.deepEqual(auditOf(f, id).filter((e) => e.action === 'rollout.cancel').map((e) => e.actor), ['bob']);
    await assert.rejects(rollouts.resume(id, 'bob'), { code: 'PW_ERR_ROLLOUT_STATE' });
    // A wave-1 agent that reconnects (as one that lost the delivery would) is not sent the
    // cancelled rollout's instruction again.
    const again = inWave(1)[0] ?? assert.fail('wave 1 has a host');
    await again.disconnect();
    await again.reconnect();
    f.clock.advance(MIN);
    await ticks(f);
    assert.equal(again.frames, 1, 'no second delivery after the cancel');
    assert.deepEqual(await f.collector.outbox.pendingFor(again.agentId, f.clock.now()), []);
    noViolations(f);
  });
});
