/**
 * The daemon against a real WebSocket collector (shared/testing/fake-collector.ts: the
 * gateway's side of shared/protocol.ts, signatures verified) on 127.0.0.1, with this host's
 * real inventory.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { inventoryHash, packageSetHash } from '../../shared/inventory-hash.ts';
import { delivered, setup, until } from '../../shared/testing/daemon-harness.ts';
import { Backoff } from './backoff.ts';
import { seededRandom as seeded } from '../../shared/testing/random.ts';
import { hostInventory, tempDir, withoutFirstPackages } from '../../shared/testing/daemon-fixtures.ts';

const inv = await hostInventory();

describe('Agent: reports', () => {
  it('first contact sends the full inventory, then only its hash while it does not change, then in full again when it does', async (t) => {
    const s = await setup(t);
    await delivered(s, 1);
    s.agent.checkNow();
    await s.collector.waitForReports(2);
    s.setInventory(withoutFirstPackages(inv, 1));
    s.agent.checkNow();
    await s.collector.waitForReports(3);
    s.agent.checkNow();
    await s.collector.waitForReports(4);
    // Back to the first package set: the collector holds it, so the report names it and carries no packages.
    s.setInventory(inv);
    s.agent.checkNow();
    await s.collector.waitForReports(5);
    assert.deepEqual(
      s.collector.reports.map((r) => [r.full, r.status, r.packages, r.packageSet]),
      [
        [true, 'stored', inv.packages.length, null],
        [false, 'unchanged', null, null],
        [true, 'stored', inv.packages.length - 1, null],
        [false, 'unchanged', null, null],
        [true, 'stored', null, packageSetHash(inv.packages)],
      ],
    );
    // Each new set was named first, and sent in full only after the collector said it did not hold it.
    assert.deepEqual(
      s.collector.unknownSets.map((r) => [r.id, r.packageSet]),
      [s.collector.reports[0], s.collector.reports[2]].map((r) => [r!.id, packageSetHash(r === s.collector.reports[0] ? inv.packages : withoutFirstPackages(inv, 1).packages)]),
    );
    assert.equal(s.collector.reports[0]!.hash, inventoryHash(inv));
    await until('an empty spool', () => s.agent.spool.size === 0);
    assert.deepEqual(readdirSync(s.spoolDir), []);
  });

  it('an agent restarted on an unchanged host sends only the hash: the collector said in welcome that it has it', async (t) => {
    const s = await setup(t);
    await delivered(s, 1);
    await s.agent.stop();
    await s.newAgent();
    await s.collector.waitForReports(2);
    assert.deepEqual(
      s.collector.reports.map((r) => [r.full, r.status]),
      [
        [true, 'stored'],
        [false, 'unchanged'],
      ],
    );
  });

  it('the timer re-checks every intervalSeconds', async (t) => {
    const s = await setup(t, { intervalSeconds: 1 });
    const reasons: string[] = [];
    s.agent.on('queued', (q) => reasons.push(q.reason));
    await until('a timer check', () => reasons.includes('timer'), 3000);
    assert.equal(reasons[0], 'connected');
  });

  it('a real dpkg status rewrite triggers a check (debounced)', async (t) => {
    const admin = tempDir(t, 'pw-dpkg-');
    for (const d of ['updates', 'info', 'triggers']) mkdirSync(join(admin, d));
    copyFileSync('/var/lib/dpkg/status', join(admin, 'status'));
    writeFileSync(join(admin, 'available'), '');
    const s = await setup(t, { agent: { watch: [{ dir: admin, files: ['status'] }], debounceMs: 100 } });
    await s.collector.waitForReports(1);
    const queued = once(s.agent, 'queued');
    execFileSync('dpkg', [`--admindir=${admin}`, '--set-selections'], { input: 'bash hold\n' });
    const [q] = (await queued) as [{ reason: string; full: boolean }];
    assert.equal(q.reason, `${admin} changed`);
    assert.equal(q.full, false);
  });
});

describe('Agent: collector outages', () => {
  const oneFull = Buffer.byteLength(JSON.stringify({ type: 'report', id: '00000000-0000-4000-8000-000000000000', hash: '0'.repeat(64), inventory: inv }));

  it('collector down: changes are spooled on disk, bounded, survive an agent restart, and are delivered in order when it is back', async (t) => {
    // Room for three full reports: of five changes, the two oldest are dropped.
    const s = await setup(t, { spoolMaxBytes: Math.floor(oneFull * 3.5) });
    await s.collector.waitForReports(1);
    const disconnected = once(s.agent, 'disconnected');
    await s.collector.stop();
    await disconnected;
    const hashes: string[] = [];
    for (let n = 1; n <= 5; n++) {
      const changed = withoutFirstPackages(inv, n);
      hashes.push(inventoryHash(changed));
      s.setInventory(changed);
      s.agent.checkNow(`change ${n}`);
      await s.agent.checksIdle();
      // An unchanged check while disconnected spools nothing.
      s.agent.checkNow('unchanged');
      await s.agent.checksIdle();
    }
    const files = readdirSync(s.spoolDir).sort();
    assert.equal(files.length, 3, files.join('\n'));
    assert.deepEqual(
      files.map((f) => f.split('-')[2]),
      hashes.slice(2),
    );
    assert.ok(s.agent.spool.bytes <= Math.floor(oneFull * 3.5));
    assert.equal(s.sink.codes().filter((c) => c === 'PW_WARN_SPOOL_DROPPED').length, 2);

    // The agent restarts while the collector is still down: the spool is read back.
    await s.agent.stop();
    const second = await s.newAgent();
    assert.equal(second.agent.spool.size, 3);
    await sleep(100);
    await s.collector.restart();
    await s.collector.waitForReports(5);
    assert.deepEqual(
      s.collector.reports.slice(1, 5).map((r) => [r.full, r.status, r.hash]),
      [
        [true, 'stored', hashes[2]],
        [true, 'stored', hashes[3]],
        [true, 'stored', hashes[4]],
        [false, 'unchanged', hashes[4]],
      ],
    );
    const times = s.collector.reports.slice(1, 4).map((r) => r.collectedAt ?? '');
    assert.deepEqual(times, [...times].sort(), 'delivered in the order they were made');
    await until('an empty spool', () => second.agent.spool.size === 0);
    assert.deepEqual(readdirSync(s.spoolDir), []);
  });

  it('reconnect delays follow the seeded full-jitter backoff, measured at the collector', async (t) => {
    const seed = 1234;
    const s = await setup(t, { agent: { backoff: { baseMs: 50, capMs: 800, stableMs: 60_000, random: seeded(seed) } }, start: false });
    s.collector.unavailable = true;
    const enrollment = s.collector.attempts.length;
    const { agent } = await s.newAgent();
    const retries: { delayMs: number; windowMs: number }[] = [];
    agent.on('retry', (r) => retries.push(r));
    await until('7 connection attempts', () => s.collector.attempts.length >= enrollment + 7, 15_000);
    const expected = new Backoff({ baseMs: 50, capMs: 800, stableMs: 60_000, random: seeded(seed) });
    const want = Array.from({ length: 6 }, () => {
      const delayMs = expected.next();
      return { delayMs, ...expected.last };
    });
    assert.deepEqual(retries.slice(0, 6), want);
    assert.deepEqual(
      want.map((w) => w.windowMs),
      [50, 100, 200, 400, 800, 800],
    );
    const gaps = s.collector.attempts.slice(enrollment, enrollment + 7).map((at, i, all) => (i === 0 ? 0 : at - (all[i - 1] ?? 0))).slice(1);
    for (const [i, gap] of gaps.entries()) {
      const delay = want[i]!.delayMs;
      assert.ok(gap >= delay - 2 && gap <= delay + 250, `attempt ${i + 1}: ${gap} ms after the previous one, backoff said ${delay} ms`);
    }
    assert.ok(s.sink.codes().filter((c) => c === 'PW_ERR_CONNECT').length >= 6);
  });

  it('the backoff starts over after a stable connection, and keeps growing after connections that drop at once', async (t) => {
    const s = await setup(t, { agent: { backoff: { baseMs: 40, capMs: 2000, stableMs: 300 } }, start: false });
    s.collector.unavailable = true;
    const { agent } = await s.newAgent();
    const windows: number[] = [];
    agent.on('retry', (r) => windows.push(r.windowMs));
    await until('4 failed attempts', () => windows.length >= 4);
    s.collector.unavailable = false;
    await once(agent, 'connected');
    await sleep(400);
    const before = windows.length;
    await s.collector.stop();
    await until('a retry after the stable connection', () => windows.length > before);
    assert.deepEqual(windows.slice(0, 4), [40, 80, 160, 320]);
    assert.equal(windows[before], 40, `windows ${windows.join(', ')}`);
  });

  it('no ack within ackTimeoutMs: the connection is dropped and the same report is sent again (the collector answers duplicate)', async (t) => {
    const s = await setup(t, { start: false, agent: { ackTimeoutMs: 300 } });
    s.collector.holdAcks = true;
    const { agent } = await s.newAgent();
    const disconnected = once(agent, 'disconnected');
    await s.collector.waitForReports(1);
    await disconnected;
    s.collector.holdAcks = false;
    await until('the spool to empty', () => agent.spool.size === 0 && s.collector.reports.length >= 2);
    const [first, second] = s.collector.reports;
    assert.equal(second!.id, first!.id);
    assert.deepEqual([first!.status, second!.status], ['stored', 'duplicate']);
    assert.ok(s.sink.codes().includes('PW_ERR_TIMEOUT'));
  });
});

describe('Agent: refusals', () => {
  for (const how of ['while connected', 'at hello after a restart'] as const) {
    it(`revoked ${how}: run() ends with 'revoked', logged with PW_ERR_AGENT_REVOKED, and the agent never reconnects`, async (t) => {
      const s = await setup(t);
      await s.collector.waitForReports(1);
      const agentId = [...s.collector.agents.keys()][0]!;
      let run = s.run;
      if (how === 'at hello after a restart') {
        await s.agent.stop();
        s.collector.revoke(agentId);
        run = (await s.newAgent()).run;
      } else {
        s.collector.revoke(agentId);
      }
      const exit = await run;
      assert.equal(exit.reason, 'revoked');
      const { code, closeCode } = exit.error;
      assert.deepEqual([code, closeCode], ['PW_ERR_AGENT_REVOKED', 4003]);
      const attempts = s.collector.attempts.length;
      await sleep(500);
      assert.equal(s.collector.attempts.length, attempts, 'no reconnect after a revocation');
      const line = s.sink.lines.find((l) => l.code === 'PW_ERR_AGENT_REVOKED');
      assert.ok(line);
      assert.equal(line.level, 50);
      assert.match(String(line.msg), /revoked this agent.*Re-enroll/);
    });
  }

  it('garbage from the collector: the agent closes with 4000, logs PW_ERR_MALFORMED_INPUT and reconnects', async (t) => {
    const s = await setup(t);
    await s.collector.waitForReports(1);
    const reconnected = once(s.agent, 'connected');
    const disconnected = once(s.agent, 'disconnected');
    s.collector.sendRaw('{"type":"ack","id":"not-a-uuid","status":"stored","extra":"<script>"}');
    const [err] = (await disconnected) as [{ code: string; closeCode: number }];
    assert.equal(err.code, 'PW_ERR_MALFORMED_INPUT');
    await reconnected;
    assert.ok(s.sink.codes().includes('PW_ERR_MALFORMED_INPUT'));
  });

  it('a report the collector refuses three times is set aside (.bad) and the reports after it go through', async (t) => {
    const s = await setup(t, { start: false });
    s.collector.refuseReports = true;
    const { agent } = await s.newAgent();
    await until('three refusals', () => s.collector.refusals.length >= 3);
    s.collector.refuseReports = false;
    await until('the report set aside', () => readdirSync(s.spoolDir).some((f) => f.endsWith('.bad')));
    await s.collector.waitForReports(1);
    assert.ok(s.sink.codes().includes('PW_WARN_SPOOL_CORRUPT'));
    assert.equal(s.collector.reports[0]!.full, true);
    await until('an empty spool', () => agent.spool.size === 0);
  });

  it('the collector lost the inventory a hash-only report refers to (PW_ERR_INVENTORY_UNKNOWN): the agent sends it in full', async (t) => {
    const s = await setup(t);
    await delivered(s, 1);
    const record = [...s.collector.agents.values()][0]!;
    record.lastHash = null;
    s.agent.checkNow();
    await until('a second stored full report', () => s.collector.reports.filter((r) => r.status === 'stored').length === 2);
    assert.ok(s.sink.codes().includes('PW_ERR_INVENTORY_UNKNOWN'));
    assert.deepEqual(s.collector.refusals, ['PW_ERR_INVENTORY_UNKNOWN']);
  });

  it('heartbeats: pings every second keep an idle connection up; a collector gone silent is dropped after 2.5 heartbeats and reconnected', async (t) => {
    const s = await setup(t, { heartbeatSeconds: 1 });
    await delivered(s, 1);
    let drops = 0;
    s.agent.on('disconnected', () => drops++);
    await sleep(3500);
    assert.equal(drops, 0, 'pinged connections stay up while no message flows');
    s.collector.sendPings = false;
    const started = Date.now();
    const [err] = (await once(s.agent, 'disconnected')) as [{ code: string; closeCode: number }];
    const after = Date.now() - started;
    assert.ok(after >= 1500 && after <= 4500, `dropped after ${after} ms of silence`);
    assert.deepEqual([err.code, err.closeCode], ['PW_ERR_CONNECTION_CLOSED', 1006]);
    assert.ok(s.sink.lines.some((l) => l.code === 'PW_ERR_TIMEOUT' && /nothing from the collector for 2\.5 s/.test(String(l.msg))));
    s.collector.sendPings = true;
    await once(s.agent, 'connected');
  });

  it('stop() during the backoff wait returns at once', async (t) => {
    const s = await setup(t, { start: false, agent: { backoff: { baseMs: 60_000, capMs: 60_000, random: () => 0.99 } } });
    s.collector.unavailable = true;
    const { agent, run } = await s.newAgent();
    await once(agent, 'retry');
    const started = Date.now();
    assert.deepEqual(await agent.stop(), { reason: 'stopped' });
    assert.deepEqual(await run, { reason: 'stopped' });
    assert.ok(Date.now() - started < 1000);
  });
});
