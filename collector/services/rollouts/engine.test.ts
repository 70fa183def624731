import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { instructionSignatureValid, type PatchInstruction } from '../../../shared/instructions.ts';
import { type Bench, BIND, bindPlan as plan, hostInventory, instructionOf, makeBench, NOW, resultFor } from '../../../shared/testing/rollout-bench.ts';

const MIN = 60_000;
const at = (m: number) => new Date(NOW.getTime() + m * MIN);
/** ALSA-2026:54510 fixes bind 9.16.23 (bind-libs, bind-license, bind-utils in the RHEL 9.5 image). */

async function fleetOf(b: Bench, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push(await b.addHost({ hostname: `web-${i + 1}`, tags: ['web'] }));
  return ids;
}

/** Every pending outbox entry of the fleet, checked against the collector's public key. */
async function pending(b: Bench, agents: readonly string[], now = b.clock.now) {
  const out = [];
  for (const a of agents) out.push(...(await b.outbox.pendingFor(a, now)));
  for (const e of out) assert.ok(instructionSignatureValid(e, b.key.publicKey), 'signed by the collector key');
  return out;
}

async function answer(b: Bench, agents: readonly string[], status: 'succeeded' | 'failed' | 'refused', opts: { rebootRequired?: boolean | null } = {}): Promise<number> {
  const entries = await pending(b, agents);
  for (const e of entries) assert.equal(await b.engine.onResult(e.agentId, resultFor(e.id, status, b.clock.now, opts)), true);
  return entries.length;
}

function auditOf(b: Bench, id: string): { actor: string; action: string }[] {
  return b.db.prepare("SELECT actor, action FROM audit WHERE target = ? ORDER BY id").all(`rollout:${id}`) as { actor: string; action: string }[];
}

describe('RolloutEngine: waves and the gate', () => {
  it('a canary that fails halts the rollout by itself and no later wave gets an instruction', async (t) => {
    const b = await makeBench(t);
    const agents = await fleetOf(b, 6);
    const id = await b.engine.create(plan(), 'alice');
    assert.equal(await b.engine.submit(id, 'alice'), 'running');
    const canary = await pending(b, agents);
    assert.equal(canary.length, 1);
    const ins = instructionOf(canary[0] ?? assert.fail()) as PatchInstruction;
    assert.equal(ins.kind, 'patch');
    assert.equal(ins.rolloutId, id);
    assert.deepEqual(ins.packages, [
      { name: 'bind-libs', version: null },
      { name: 'bind-license', version: null },
      { name: 'bind-utils', version: null },
    ]);
    assert.deepEqual(ins.advisories, [BIND]);
    assert.deepEqual(b.pushed, [ins.agentId]);

    b.clock.now = at(5);
    await answer(b, agents, 'failed');
    const r = await b.engine.get(id);
    assert.equal(r.state, 'halted');
    assert.match(r.haltedReason ?? '', /gate after wave 0: 1 of 1 hosts failed/);
    for (const m of [10, 60, 600]) {
      b.clock.now = at(m);
      await b.engine.tick(at(m));
      assert.deepEqual(await pending(b, agents), [], `nothing pending at +${m} min`);
    }
    assert.equal((await b.outbox.forRollout(id)).length, 1, 'only the canary ever had an instruction');
    assert.deepEqual(r.hosts.map((h) => h.state).sort(), ['failed', 'pending', 'pending', 'pending', 'pending', 'pending']);
    assert.deepEqual(auditOf(b, id).at(-1), { actor: 'system', action: 'rollout.halt' });
    await assert.rejects(b.engine.resume(id, 'alice'), { code: 'PW_ERR_ROLLOUT_STATE' });
  });

  it('waves grow 1, 2, 4 after each passes its gate and its wait, then the rollout completes', async (t) => {
    const b = await makeBench(t);
    const agents = await fleetOf(b, 7);
    const id = await b.engine.create(plan({ waitMinutes: 30, gate: { maxFailedHosts: 1 } }), 'alice');
    await b.engine.submit(id, 'alice');
    assert.equal(await answer(b, agents, 'succeeded'), 1);
    b.clock.now = at(29);
    await b.engine.tick(at(29));
    assert.equal((await pending(b, agents)).length, 0, 'the wait holds the next wave');
    b.clock.now = at(30);
    await b.engine.tick(at(30));
    assert.equal((await pending(b, agents)).length, 2);
    // One failure is within maxFailedHosts 1.
    const [first, second] = await pending(b, agents);
    await b.engine.onResult(first?.agentId ?? '', resultFor(first?.id ?? '', 'failed', at(31)));
    await b.engine.onResult(second?.agentId ?? '', resultFor(second?.id ?? '', 'succeeded', at(31)));
    b.clock.now = at(61);
    await b.engine.tick(at(61));
    assert.equal(await answer(b, agents, 'succeeded'), 4);
    b.clock.now = at(100);
    await b.engine.tick(at(100));
    const r = await b.engine.get(id);
    assert.equal(r.state, 'completed');
    assert.deepEqual([0, 1, 2].map((w) => r.hosts.filter((h) => h.wave === w).length), [1, 2, 4]);
    assert.equal(r.hosts.filter((h) => h.state === 'succeeded').length, 6);
    assert.deepEqual(auditOf(b, id).map((a) => `${a.actor} ${a.action}`), [
      'alice rollout.create', 'alice rollout.submit', 'alice rollout.start', 'alice rollout.targets', 'system rollout.wave-start',
      'system rollout.wave-done', 'system rollout.wave-start', 'system rollout.wave-done', 'system rollout.wave-start', 'system rollout.complete',
    ]);
  });

  it('a second failure over maxFailedHosts 1 halts after wave 1', async (t) => {
    const b = await makeBench(t);
    const agents = await fleetOf(b, 7);
    const id = await b.engine.create(plan({ gate: { maxFailedHosts: 1 } }), 'alice');
    await b.engine.submit(id, 'alice');
    await answer(b, agents, 'failed');
    assert.equal((await b.engine.get(id)).state, 'running', 'one failure is allowed');
    assert.equal(await answer(b, agents, 'refused'), 2);
    assert.equal((await b.engine.get(id)).state, 'halted');
    assert.equal((await b.outbox.forRollout(id)).length, 3);
  });
});

describe('RolloutEngine: maintenance windows', () => {
  it('a closed window holds everything back until it opens; instructions expire when it closes', async (t) => {
    const b = await makeBench(t);
    const agents = await fleetOf(b, 3);
    // 18:00Z now; the window is 22:00-00:00 UTC.
    const id = await b.engine.create(plan({ waitMinutes: 180, windows: [{ cron: '0 22 * * *', durationMinutes: 120, timezone: 'UTC' }] }), 'alice');
    assert.equal(await b.engine.submit(id, 'alice'), 'running');
    for (const m of [0, 60, 239]) {
      await b.engine.tick(at(m));
      assert.deepEqual(await pending(b, agents, at(m)), [], `nothing before the window (+${m} min)`);
    }
    b.clock.now = at(240);
    await b.engine.tick(at(240));
    const canary = await pending(b, agents);
    assert.equal(canary.length, 1);
    assert.equal(canary[0]?.expiresAt, '2026-11-27T00:00:00.000Z', 'expiry is the window close, sooner than the 24 h ttl');
    await answer(b, agents, 'succeeded');
    // The canary passed at 22:00; its 3 h wait ends at 01:00, after the window closed: the next wave waits for the next night.
    for (const m of [6 * 60 + 59, 7 * 60, 27 * 60 + 59]) {
      b.clock.now = at(m);
      await b.engine.tick(at(m));
      assert.equal((await pending(b, agents)).length, 0, `closed at +${m} min`);
    }
    b.clock.now = at(28 * 60);
    await b.engine.tick(at(28 * 60));
    assert.equal((await pending(b, agents)).length, 2, 'the next wave at 22:00 the next day');
  });
});

describe('RolloutEngine: states', () => {
  it('pause takes back undelivered instructions, resume sends them afresh', async (t) => {
    const b = await makeBench(t);
    const agents = await fleetOf(b, 4);
    const id = await b.engine.create(plan({ waves: { canary: { hosts: 2 } } }), 'alice');
    await b.engine.submit(id, 'alice');
    const [delivered, undelivered] = await pending(b, agents);
    await b.outbox.markSent(delivered?.id ?? '', at(1));
    b.clock.now = at(2);
    await b.engine.pause(id, 'bob');
    assert.equal((await b.engine.get(id)).state, 'paused');
    assert.deepEqual((await pending(b, agents)).map((e) => e.id), [delivered?.id], 'a delivered instruction is not taken back');
    await b.engine.tick(at(3));
    assert.equal((await b.outbox.forRollout(id)).length, 2, 'a paused rollout sends nothing');
    await assert.rejects(b.engine.pause(id, 'bob'), { code: 'PW_ERR_ROLLOUT_STATE' });
    b.clock.now = at(4);
    await b.engine.resume(id, 'bob');
    const again = await pending(b, agents);
    assert.equal(again.length, 2);
    assert.ok(again.some((e) => e.agentId === undelivered?.agentId && e.id !== undelivered.id), 'a new instruction for the withdrawn host');
    assert.deepEqual(auditOf(b, id).filter((a) => a.actor === 'bob').map((a) => a.action), ['rollout.pause', 'rollout.resume']);
    await b.engine.cancel(id, 'bob');
    assert.equal((await b.engine.get(id)).state, 'cancelled');
    await assert.rejects(b.engine.resume(id, 'bob'), { code: 'PW_ERR_ROLLOUT_STATE' });
  });

  it('approval required with four eyes: the submitter cannot approve, another operator can', async (t) => {
    const b = await makeBench(t);
    const agents = await fleetOf(b, 2);
    const id = await b.engine.create(plan({ requireApproval: true, fourEyes: true }), 'alice');
    await assert.rejects(b.engine.approve(id, 'bob'), { code: 'PW_ERR_ROLLOUT_STATE' }, 'a draft is not approved');
    assert.equal(await b.engine.submit(id, 'alice'), 'awaiting-approval');
    await b.engine.tick(at(1));
    assert.deepEqual(await pending(b, agents), [], 'nothing before approval');
    await assert.rejects(b.engine.approve(id, 'alice'), { code: 'PW_ERR_ROLLOUT_APPROVAL' });
    assert.equal(await b.engine.approve(id, 'bob'), 'running');
    assert.equal((await pending(b, agents)).length, 1);
    const r = await b.engine.get(id);
    assert.equal(r.approvedBy, 'bob');
    await assert.rejects(b.engine.approve(id, 'carol'), { code: 'PW_ERR_ROLLOUT_STATE' });
    await assert.rejects(b.engine.approve('no-such-rollout', 'carol'), { code: 'PW_ERR_ROLLOUT_NOT_FOUND' });
  });

  it('a collector restart mid-rollout resumes where it stopped', async (t) => {
    const b = await makeBench(t);
    const agents = await fleetOf(b, 3);
    const id = await b.engine.create(plan(), 'alice');
    await b.engine.submit(id, 'alice');
    const [canary] = await pending(b, agents);
    b.restart();
    assert.equal((await b.engine.get(id)).state, 'running');
    assert.equal(await b.engine.onResult(canary?.agentId ?? '', resultFor(canary?.id ?? '', 'succeeded', at(1))), true);
    assert.equal((await pending(b, agents)).length, 2, 'the next wave after the restart');
    b.restart();
    await answer(b, agents, 'succeeded');
    assert.equal((await b.engine.get(id)).state, 'completed');
  });

  it('an instruction that expires undelivered counts as failed', async (t) => {
    const b = await makeBench(t);
    const agents = await fleetOf(b, 3);
    const id = await b.engine.create(plan({ instructionTtlMinutes: 60 }), 'alice');
    await b.engine.submit(id, 'alice');
    await b.engine.tick(at(59));
    assert.equal((await b.engine.get(id)).state, 'running');
    b.clock.now = at(60);
    await b.engine.tick(at(60));
    const r = await b.engine.get(id);
    assert.equal(r.state, 'halted');
    assert.match(r.hosts.find((h) => h.wave === 0)?.detail ?? '', /expired at 2026-11-26T19:00:00.000Z before it was delivered/);
    assert.deepEqual(await pending(b, agents), []);
  });
});

describe('RolloutEngine: reboots', () => {
  it('a host told to reboot is done when it comes back with a new boot id; one that does not is not-back', async (t) => {
    const b = await makeBench(t);
    const agents = await fleetOf(b, 2);
    const id = await b.engine.create(plan({ action: { kind: 'reboot', onlyIfNeeded: true }, waves: { canary: { hosts: 2 } }, gate: { maxFailedHosts: 0, rebootGraceMinutes: 30 } }), 'alice');
    await b.engine.submit(id, 'alice');
    const sent = await pending(b, agents);
    assert.deepEqual(sent.map((e) => instructionOf(e).kind), ['reboot', 'reboot']);
    for (const e of sent) await b.outbox.markSent(e.id, at(1));
    const [back, gone] = sent;
    b.clock.now = at(2);
    await b.engine.onResult(back?.agentId ?? '', resultFor(back?.id ?? '', 'succeeded', at(2), { rebootRequired: true }));
    assert.equal((await b.engine.get(id)).hosts.find((h) => h.agentId === back?.agentId)?.state, 'sent', 'rebooting');
    b.clock.now = at(5);
    await b.report(back?.agentId ?? '', hostInventory({ hostname: 'web-x' }));
    assert.equal((await b.engine.get(id)).hosts.find((h) => h.agentId === back?.agentId)?.state, 'succeeded');
    b.clock.now = at(31);
    await b.engine.tick(at(31));
    assert.equal((await b.engine.get(id)).state, 'running', 'within the grace');
    b.clock.now = at(32);
    await b.engine.tick(at(32));
    const r = await b.engine.get(id);
    assert.equal(r.hosts.find((h) => h.agentId === gone?.agentId)?.state, 'not-back');
    assert.equal(r.state, 'halted');
  });
});

describe('RolloutEngine.preview', () => {
  it('packages, findings, reboots needed and avoided by live patching, skipped hosts', async (t) => {
    const b = await makeBench(t);
    const lp = await b.addHost({ hostname: 'lp', tags: ['web'], kernel: 'old', livepatch: 'kpatch' });
    const plain = await b.addHost({ hostname: 'plain', tags: ['web'], kernel: 'old' });
    const deb = await b.addHost({ hostname: 'deb', tags: ['web'], os: 'debian' });
    const p = plan({ action: { kind: 'patch', advisories: ['ALSA-2025:1681', BIND, 'ALSA-2025:22405'], reboot: 'if-needed' } });
    const pv = await b.engine.preview(p);
    assert.deepEqual(pv.skipped, [{ agentId: deb, hostname: 'deb', reason: 'no open finding on the host for these advisories' }]);
    const byId = new Map(pv.hosts.map((h) => [h.agentId, h]));
    const l = byId.get(lp);
    const n = byId.get(plain);
    assert.equal(l?.action, 'patch+livepatch+reboot-if-needed');
    assert.equal(l.livepatchInsteadOfReboot, true);
    assert.equal(l.needsReboot, false);
    assert.deepEqual(l.packages.map((x) => x.name), ['bind-libs', 'bind-license', 'bind-utils']);
    assert.deepEqual(l.packages[0], { name: 'bind-libs', from: (await b.store.async.reports.latestInventory(lp))?.packages.find((x) => x.name === 'bind-libs')?.version, to: '32:9.16.23-40.el9_8.8' }, 'the highest fixed version of the two bind advisories');
    assert.equal(n?.action, 'patch+reboot-if-needed');
    assert.equal(n.needsReboot, true);
    assert.deepEqual(n.packages.map((x) => x.name), ['bind-libs', 'bind-license', 'bind-utils', 'kernel-core']);
    assert.deepEqual(n.findingsResolved, ['ALSA-2025:1681', 'ALSA-2025:22405', BIND]);
    assert.deepEqual(pv.totals, { hosts: 2, packages: 7, findingsResolved: 6, rebootsNeeded: 1, rebootsAvoidedByLivepatch: 1 });
    assert.deepEqual(pv.waves, [1, 1]);

    // Run it on the live-patch host: patch, then livepatch; no reboot when the agent says none is needed.
    const id = await b.engine.create({ ...p, target: { agentIds: [lp] } }, 'alice');
    await b.engine.submit(id, 'alice');
    assert.deepEqual((await pending(b, [lp])).map((e) => instructionOf(e).kind), ['patch']);
    await answer(b, [lp], 'succeeded', { rebootRequired: false });
    const next = await pending(b, [lp]);
    assert.deepEqual(next.map((e) => instructionOf(e)).map((i) => (i.kind === 'livepatch' ? i.provider : i.kind)), ['kpatch']);
    await answer(b, [lp], 'succeeded', { rebootRequired: false });
    assert.equal((await b.engine.get(id)).state, 'completed');
    assert.equal((await b.outbox.forRollout(id)).length, 2, 'no reboot was sent');
  });
});
