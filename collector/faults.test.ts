/**
 * Faults on a fleet served by several collectors (issue 12 §3), with real processes: two
 * collectors `serve`d in their own processes on one throwaway PostgreSQL cluster, and real
 * agent daemons listing both (shared/testing/replica-fleet.ts). A replica is SIGKILLed
 * during ingest and during a rollout, and the cluster is restarted and killed under load.
 * What must hold is what the agents were told: every report acknowledged as stored,
 * duplicate or unchanged is in the store; every host of a rollout runs its step once, the
 * waves in order, none skipped; while the database is down nothing is acknowledged.
 * `DEBUG_FAULTS=1` prints what the replicas logged through the PostgreSQL outage.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ChildCollector } from '../shared/testing/collector-process.ts';
import { type FleetHost, heldBy, ReplicaFleet, until } from '../shared/testing/replica-fleet.ts';
import { needs, TOOLS } from '../shared/testing/system-tools.ts';

/** Full reports per host beyond its first: under the 8 a host keeps (REPORTS_PER_AGENT), so every acknowledged one must still be there. */
const CHANGES = 6;

/**
 * Keeps the hosts reporting: every `everyMs` each host whose spool is empty checks its
 * inventory (a hash-only report when nothing changed), after changing its packages while
 * it has made fewer than `allowance` changes.
 */
class Load {
  allowance = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(hosts: readonly FleetHost[], everyMs = 250) {
    this.#timer = setInterval(() => {
      for (const h of hosts) {
        if (h.agent.spool.size > 0) continue;
        if (h.changes < this.allowance) h.change();
        h.agent.checkNow('load');
      }
    }, everyMs);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

function fullAcked(h: FleetHost): number {
  return h.acks.filter((a) => a.full).length;
}

/**
 * Everything the hosts were acknowledged is in the store, read with plain SQL: each
 * full report's row (with the hash the agent sent), no row the agent was not told of, the
 * host's latest report and the agent's latest inventory hash.
 */
async function assertAcknowledgedStored(fleet: ReplicaFleet, hosts: readonly FleetHost[]): Promise<{ acks: number; duplicates: number }> {
  const rows = (await fleet.db.query<{ agent_id: string; id: string; inventory_hash: string }>('SELECT agent_id, id, inventory_hash FROM reports')).rows;
  const byAgent = new Map<string, Map<string, string>>();
  for (const r of rows) {
    const m = byAgent.get(r.agent_id) ?? new Map<string, string>();
    m.set(r.id, r.inventory_hash);
    byAgent.set(r.agent_id, m);
  }
  const latest = new Map((await fleet.db.query<{ agent_id: string; last_report_id: string }>('SELECT agent_id, last_report_id FROM hosts')).rows.map((r) => [r.agent_id, r.last_report_id]));
  const hashes = new Map((await fleet.db.query<{ id: string; last_inventory_hash: string | null }>('SELECT id, last_inventory_hash FROM agents')).rows.map((r) => [r.id, r.last_inventory_hash]));
  let acks = 0;
  let duplicates = 0;
  for (const h of hosts) {
    const stored = byAgent.get(h.agentId) ?? new Map<string, string>();
    const full = new Set<string>();
    for (const a of h.acks) {
      acks++;
      if (a.full) {
        assert.ok(a.status === 'stored' || a.status === 'duplicate', `${h.name}: full report ${a.id} acknowledged ${a.status}`);
        if (a.status === 'duplicate') duplicates++;
        assert.equal(stored.get(a.id), a.hash, `${h.name}: report ${a.id} acknowledged ${a.status} is in the store with its hash`);
        full.add(a.id);
      } else {
        assert.equal(a.status, 'unchanged', `${h.name}: hash-only report ${a.id}`);
        assert.ok([...stored.values()].includes(a.hash), `${h.name}: acknowledged unchanged since ${a.hash}, which the store holds`);
      }
    }
    assert.deepEqual(new Set(stored.keys()), full, `${h.name}: the store holds exactly the full reports the agent was acknowledged`);
    const lastFull = h.acks.filter((a) => a.full).at(-1);
    assert.equal(latest.get(h.agentId), lastFull?.id, `${h.name}: its latest report`);
    assert.equal(hashes.get(h.agentId), h.acks.at(-1)?.hash, `${h.name}: its latest inventory hash`);
  }
  return { acks, duplicates };
}

describe('collector replicas under faults (real processes)', { skip: needs(TOOLS.postgres) }, () => {
  test('a replica SIGKILLed during ingest: its agents move to the other, and every acknowledged report is stored', async (t) => {
    const fleet = await ReplicaFleet.start();
    t.after(() => fleet.close());
    const hosts = await fleet.enroll(30);
    for (const h of hosts) h.start();
    await until('every host acknowledged its first report', () => hosts.every((h) => h.acks.length > 0));
    const driver = new Load(hosts);
    t.after(() => {
      driver.stop();
    });
    driver.allowance = 2;
    await until('two changes reported by every host', () => hosts.every((h) => fullAcked(h) >= 3));
    // Full reports under way when it dies: some hosts have reported their next change, most have not.
    driver.allowance = 4;
    await until('the next changes being reported', () => hosts.filter((h) => fullAcked(h) >= 4).length >= 3, 30_000, 5);
    const counts = fleet.replicas.map((r) => hosts.filter((h) => h.served.at(-1) === r.agentUrl).length);
    const victim = fleet.replicas[(counts[0] ?? 0) >= (counts[1] ?? 0) ? 0 : 1] as ChildCollector;
    const survivor = fleet.replicas.find((r) => r !== victim) as ChildCollector;
    const onVictim = hosts.filter((h) => h.served.at(-1) === victim.agentUrl);
    assert.ok(onVictim.length > 0, 'the killed replica served agents');
    const killedAt = performance.now();
    await fleet.kill(victim);
    driver.allowance = CHANGES;

    const caughtUp = (h: FleetHost): boolean => h.served.at(-1) === survivor.agentUrl && h.changes === CHANGES && fullAcked(h) >= CHANGES + 1 && h.acks.some((a) => a.at > killedAt);
    await until('every host served by the survivor, its changes all acknowledged', () => hosts.every(caughtUp), 90_000).catch((err: unknown) => {
      const behind = hosts.filter((h) => !caughtUp(h)).map((h) => ({ host: h.name, served: h.served.length, onSurvivor: h.served.at(-1) === survivor.agentUrl, changes: h.changes, fullAcked: fullAcked(h), spooled: h.agent.spool.size, log: h.log.lines.slice(-3).map((l) => l.msg) }));
      throw new Error(`${(err as Error).message}: ${JSON.stringify(behind)}`);
    });
    driver.stop();
    await until('every spool delivered', () => hosts.every((h) => h.idle));
    const moved = onVictim.map((h) => h.served.length);
    assert.ok(moved.every((n) => n >= 2), 'each host of the killed replica connected again');
    const { acks, duplicates } = await assertAcknowledgedStored(fleet, hosts);
    t.diagnostic(`${hosts.length} hosts, ${onVictim.length} on the killed replica; ${acks} reports acknowledged (${duplicates} answered duplicate after the kill)`);
  });

  test('a replica SIGKILLed during a rollout: the other takes the rollout duty within a lease period; every host runs its step once, wave after wave', async (t) => {
    // Every host's live patch takes as long: a wave's results come together, on both replicas.
    const fleet = await ReplicaFleet.start({ workMs: () => 300 });
    t.after(() => fleet.close());
    const hosts = await fleet.enroll(20);
    for (const h of hosts) h.start();
    await until('every host acknowledged its first report', () => hosts.every((h) => h.acks.length > 0));

    // Created and submitted as the CLI on another machine would: the enqueues notify the replicas.
    const engine = fleet.rollouts();
    const id = await engine.create(
      { name: 'live patch under faults', target: { agentIds: hosts.map((h) => h.agentId) }, action: { kind: 'livepatch' }, waves: { canary: { hosts: 2 }, growth: { sizes: [4] } }, waitMinutes: 0 },
      'cli:alice',
    );
    assert.equal(await engine.submit(id, 'cli:alice'), 'running');
    const waveOf = new Map((await engine.get(id)).hosts.map((h) => [h.agentId, h.wave]));
    const waves = Math.max(...waveOf.values()) + 1;
    assert.equal(waves, 6, 'waves of 2, 4, 4, 4, 4, 2 hosts');

    const state = async (): Promise<{ wave: number; state: string; open: number }> => {
      const r = await fleet.db.query<{ current_wave: number; state: string; open: number }>(
        `SELECT r.current_wave, r.state, (SELECT count(*) FROM rollout_hosts h WHERE h.rollout_id = r.id AND h.wave = r.current_wave AND h.state NOT IN ('succeeded', 'failed', 'refused', 'expired', 'not-back'))::int AS open
         FROM rollouts r WHERE r.id = $1`,
        [id],
      );
      const row = r.rows[0];
      return { wave: row?.current_wave ?? -1, state: row?.state ?? 'missing', open: row?.open ?? 0 };
    };
    await until('the third wave under way', async () => {
      const s = await state();
      return s.wave >= 2 && s.open > 0;
    }, 30_000, 10);
    const holding = { holder: null as string | null };
    await until('a replica holding the rollout tick', async () => (holding.holder = await fleet.holder('rollout-tick')) !== null);
    const { holder } = holding;
    const victim = fleet.replicas.find((r) => heldBy(holder, r));
    assert.ok(victim !== undefined, `the holder ${holder ?? '?'} is one of the replicas`);
    const survivor = fleet.replicas.find((r) => r !== victim) as ChildCollector;
    const killedIn = (await state()).wave;
    const killedAt = performance.now();
    await fleet.kill(victim);
    await until('the survivor holding the rollout tick', async () => heldBy(await fleet.holder('rollout-tick'), survivor), 30_000, 20);
    const takeoverMs = performance.now() - killedAt;
    // The dead holder's row expires at most a lease after its last renewal; the survivor tries every third of one.
    const leaseMs = fleet.leaseSeconds * 1000;
    assert.ok(takeoverMs < (leaseMs * 4) / 3 + 1500, `taken over in ${Math.round(takeoverMs)} ms (lease ${leaseMs} ms)`);

    await until('the rollout completed', async () => (await state()).state === 'completed', 60_000, 100);
    const completedMs = performance.now() - killedAt;
    const done = await engine.get(id);
    const outbox = await fleet.store().outbox.forRollout(id);
    assert.equal(outbox.length, hosts.length, 'one instruction enqueued per host: none enqueued twice');
    for (const h of hosts) {
      const row = done.hosts.find((x) => x.agentId === h.agentId);
      assert.equal(row?.state, 'succeeded', `${h.name}: ${row?.state ?? 'not in the rollout'} (${row?.detail ?? ''})`);
      const ran = h.runs.filter((r) => r.rolloutId === id);
      assert.equal(ran.length, 1, `${h.name} ran the rollout's live patch ${ran.length} times`);
      const entry = outbox.find((o) => o.agentId === h.agentId);
      assert.equal(ran[0]?.instructionId, entry?.id, `${h.name} ran the instruction the outbox holds`);
      assert.equal(row.instructionId, entry?.id);
      assert.equal(entry?.result?.status, 'succeeded', `${h.name}: its result is recorded`);
    }
    // Wave after wave: no host of a wave started before every host of the wave before had finished.
    for (let w = 1; w < waves; w++) {
      const runsOf = (wave: number) => hosts.filter((h) => waveOf.get(h.agentId) === wave).flatMap((h) => h.runs.filter((r) => r.rolloutId === id));
      const lastEnd = Math.max(...runsOf(w - 1).map((r) => r.end ?? Infinity));
      const firstStart = Math.min(...runsOf(w).map((r) => r.start));
      assert.ok(firstStart > lastEnd, `wave ${w} started after wave ${w - 1} had finished`);
    }
    const starts = (await fleet.db.query<{ detail: string; at: string }>("SELECT detail, at FROM audit WHERE action = 'rollout.wave-start' AND target = $1 ORDER BY id", [`rollout:${id}`])).rows;
    const started = starts.map((r) => (JSON.parse(r.detail) as { wave: number }).wave);
    assert.deepEqual(started, Array.from({ length: waves }, (_, w) => w), 'every wave started once, in order, none skipped');
    const first = Date.parse(starts[0]?.at ?? '');
    const timeline = starts.map((r) => `${((Date.parse(r.at) - first) / 1000).toFixed(1)} s`).join(', ');
    const replayed = hosts.reduce((n, h) => n + h.log.lines.filter((l) => l.code === 'PW_ERR_INSTRUCTION_REPLAYED').length, 0);
    t.diagnostic(`killed the rollout-tick holder in wave ${killedIn} of ${waves}; the survivor held it ${Math.round(takeoverMs)} ms later (lease ${leaseMs} ms); completed ${Math.round(completedMs)} ms after the kill; waves started at ${timeline}; ${replayed} re-sent instructions refused as replays`);
  });

  test('PostgreSQL restarted, then killed, under load: nothing is acknowledged while it is down, /healthz says so, and the collectors resume', async (t) => {
    const fleet = await ReplicaFleet.start();
    t.after(() => fleet.close());
    const hosts = await fleet.enroll(16);
    for (const h of hosts) h.start();
    await until('every host acknowledged its first report', () => hosts.every((h) => h.acks.length > 0));
    const driver = new Load(hosts);
    t.after(() => {
      driver.stop();
    });
    const healths = (): Promise<number[]> => Promise.all(fleet.replicas.map((r) => fleet.health(r)));
    const everyHost = (what: string, cond: (h: FleetHost) => boolean, timeoutMs = 60_000): Promise<void> => until(`every host ${what}`, () => hosts.every(cond), timeoutMs);
    driver.allowance = 2;
    await everyHost('reported two changes', (h) => fullAcked(h) >= 3);

    // A restart (fast shutdown: connections cut, then the server again on the same port) while changes are reported.
    driver.allowance = 3;
    await fleet.cluster.restart();
    const restartedAt = performance.now();
    await everyHost('acknowledged again after the restart', (h) => h.acks.some((a) => a.at > restartedAt));
    await until('/healthz 200 on both replicas', async () => (await healths()).every((s) => s === 200), 30_000, 200);

    // A crash: SIGKILL to the postmaster and its backends. While it is down no replica may acknowledge anything.
    driver.allowance = 4;
    await fleet.cluster.kill();
    // An ack of a commit made just before the kill may still be on its way for a moment.
    const downFrom = performance.now() + 1000;
    await until('/healthz 503 on both replicas', async () => (await healths()).every((s) => s === 503), 30_000, 200);
    const failedBefore = hosts.map((h) => h.disconnects);
    await everyHost('turned away while the database is down', (h) => h.disconnects > (failedBefore[hosts.indexOf(h)] ?? 0), 30_000);
    const downTo = performance.now();
    const falseAcks = hosts.flatMap((h) => h.acks.filter((a) => a.at >= downFrom && a.at <= downTo).map((a) => `${h.name} ${a.id} ${a.status}`));
    assert.deepEqual(falseAcks, [], 'acknowledged while the database was down');
    await fleet.cluster.start();
    const startedAt = performance.now();
    await until('/healthz 200 on both replicas', async () => (await healths()).every((s) => s === 200), 30_000, 200);
    await everyHost('acknowledged again after the crash', (h) => h.acks.some((a) => a.at > startedAt));
    // Each duty has a holder again (a lease the database lost with its crash is taken afresh).
    for (const duty of ['rollout-tick', 'feed-sync', 'recorrelate', 'housekeeping']) {
      await until(`a replica holding ${duty}`, async () => (await fleet.holder(duty)) !== null, 10_000, 100);
    }

    driver.allowance = CHANGES;
    await everyHost('reported every change', (h) => h.changes === CHANGES && fullAcked(h) >= CHANGES + 1);
    driver.stop();
    await everyHost('delivered its spool', (h) => h.idle);
    for (const r of fleet.replicas) assert.ok(fleet.alive(r), `replica ${r.pid} is still running: ${r.output()}`);
    if (process.env.DEBUG_FAULTS !== undefined) for (const r of fleet.replicas) t.diagnostic(r.output());
    const { acks, duplicates } = await assertAcknowledgedStored(fleet, hosts);
    // Findings are written after the report's commit, in a slice of their own, which may have
    // failed to commit while the database was away: every host's end in the one of its last report.
    // (The hosts report again after the outage, so this holds even without the slice's retry,
    // which host-findings.test.ts shows with commits failing on purpose.)
    const behind = async (): Promise<string[]> =>
      (
        await fleet.db.query<{ agent_id: string }>(
          'SELECT h.agent_id FROM hosts h JOIN reports r ON r.agent_id = h.agent_id AND r.id = h.last_report_id WHERE h.findings_content IS DISTINCT FROM r.content_hash',
        )
      ).rows.map((r) => r.agent_id);
    await until('every host’s findings judged on its latest report', async () => (await behind()).length === 0, 60_000, 200).catch(async (err: unknown) => {
      throw new Error(`${String(err)}: hosts behind: ${(await behind()).join(', ')}`);
    });
    t.diagnostic(`${hosts.length} hosts; ${acks} reports acknowledged (${duplicates} answered duplicate); nothing acknowledged in the ${Math.round(downTo - downFrom)} ms the database was down`);
  });
});
