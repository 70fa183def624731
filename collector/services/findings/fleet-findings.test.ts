import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dataPath } from '../../../shared/testing/data.ts';
import { importFeedPath } from '../feeds/store-import.ts';
import { DEFAULT_POLICY } from '../../domain/correlate/policy.ts';
import { FleetFindings } from './fleet-findings.ts';
import { almaInventory, debianInventory, type Fixture, makeFixture, NOW } from '../../../shared/testing/http-fixture.ts';
import { asyncAdvisories } from '../../../shared/testing/store-fixtures.ts';

const HOUR = 3600_000;

/** Correlator calls so far: each count that is not cached costs one. */
function calls(fx: Fixture): number {
  return fx.correlator.stats.hits + fx.correlator.stats.misses;
}

describe('FleetFindings counts', () => {
  // Each step changes one thing, then totals() runs; `recount` says whether the per-content counts must be computed again.
  const steps: { name: string; change: (fx: Fixture, clock: { now: Date }) => Promise<void> | void; recount: boolean }[] = [
    { name: 'nothing changed', change: () => undefined, recount: false },
    { name: 'half an hour passed on the same day', change: (_fx, clock) => { clock.now = new Date(NOW.getTime() + HOUR / 2); }, recount: false },
    { name: 'a host with a known inventory reported', change: async (fx) => { await fx.addHost(almaInventory('db-3')); }, recount: false },
    { name: 'the day changed (due dates)', change: (_fx, clock) => { clock.now = new Date(NOW.getTime() + 24 * HOUR); }, recount: true },
    {
      name: 'an exception was added',
      change: async (fx, clock) => {
        await fx.store.async.history.addException({ advisory: 'ALSA-2025:1330', owner: 'sec', reason: 'waf', expires: '2027-06-01T00:00:00.000Z' }, clock.now);
      },
      recount: true,
    },
    {
      name: 'a second KEV catalog was imported (no advisory changed)',
      change: async (fx, clock) => {
        await importFeedPath(asyncAdvisories(fx.db), dataPath('kev', 'known_exploited_vulnerabilities-2025-11-17.csv.gz'), { correlator: fx.correlator, now: clock.now });
      },
      recount: true,
    },
    { name: 'the cache was an hour old (safety net)', change: (_fx, clock) => { clock.now = new Date(clock.now.getTime() + HOUR); }, recount: true },
    {
      name: 'an advisory feed was imported',
      change: async (fx, clock) => {
        await importFeedPath(asyncAdvisories(fx.db), dataPath('osv', 'almalinux8.osv.jsonl.gz'), { correlator: fx.correlator, now: clock.now });
      },
      recount: true,
    },
  ];

  it('are computed once per inventory content and again only when what they depend on changes', async (t) => {
    const fx = await makeFixture();
    t.after(() => {
      fx.close();
    });
    const clock = { now: NOW };
    await fx.addHost(almaInventory('db-1'));
    await fx.addHost(almaInventory('db-2'));
    await fx.addHost(debianInventory('web-1'));
    const ff = new FleetFindings({ store: fx.store.async, correlator: fx.correlator, policy: DEFAULT_POLICY, now: () => clock.now });
    let before = calls(fx);
    const first = await ff.totals();
    assert.equal(calls(fx) - before, 2, 'one correlation per distinct inventory (AlmaLinux, Debian), not per host');
    assert.equal(first.hosts, 3);
    for (const step of steps) {
      await step.change(fx, clock);
      before = calls(fx);
      const totals = await ff.totals();
      assert.equal(calls(fx) - before, step.recount ? 2 : 0, `${step.name}: ${step.recount ? 'recounted' : 'cached'}`);
      assert.ok(totals.counts.open > 0, `${step.name}: counts stay`);
    }
  });

  it('share one computation between callers and let the event loop run during it', async (t) => {
    const fx = await makeFixture();
    t.after(() => {
      fx.close();
    });
    // 60 hosts, each with its own package set (one version changed), so nothing is cached.
    const base = almaInventory('x');
    for (let i = 0; i < 60; i++) {
      const inv = structuredClone(base);
      inv.host.hostname = `db-${i}`;
      const first = inv.packages[0];
      if (first !== undefined) inv.packages[0] = { ...first, version: `${first.version}.${i}` };
      await fx.addHost(inv);
    }
    const ff = new FleetFindings({ store: fx.store.async, correlator: fx.correlator, policy: DEFAULT_POLICY, now: () => NOW });
    let ticks = 0;
    const timer = setInterval(() => {
      ticks++;
    }, 1);
    const before = calls(fx);
    const started = performance.now();
    const [a, b] = await Promise.all([ff.totals(), ff.totals()]);
    const ms = performance.now() - started;
    clearInterval(timer);
    assert.equal(a, b, 'the second caller got the first one’s result');
    assert.equal(a.hosts, 60);
    assert.equal(calls(fx) - before, 60, 'each inventory counted once');
    assert.ok(ms < 40 || ticks > 0, `a timer ran ${ticks} times during ${ms.toFixed(0)} ms of counting`);
  });

  it('apply a host’s own exception to that host only', async (t) => {
    const fx = await makeFixture();
    t.after(() => {
      fx.close();
    });
    const a = await fx.addHost(almaInventory('db-1'));
    const b = await fx.addHost(almaInventory('db-2'));
    const hosts = fx.store.async.hosts;
    const ff = new FleetFindings({ store: fx.store.async, correlator: fx.correlator, policy: DEFAULT_POLICY, now: () => NOW });
    const before = await ff.counts((await hosts.get(a))!);
    const doc = await ff.forHost(a);
    const target = doc?.findings.findings.find((f) => f.status === 'open');
    assert.ok(target !== undefined, 'db-1 has an open finding');
    await fx.store.async.history.addException({ advisory: target.advisory, package: target.package, host: a, owner: 'sec', reason: 'waf', expires: '2027-06-01T00:00:00.000Z' }, NOW);
    const ca = await ff.counts((await hosts.get(a))!);
    const cb = await ff.counts((await hosts.get(b))!);
    assert.equal(ca.byStatus.accepted, before.byStatus.accepted + 1);
    assert.equal(cb.byStatus.accepted, before.byStatus.accepted);
    assert.equal((await ff.forHost(a))?.findings.findings.find((f) => f.advisory === target.advisory && f.package === target.package)?.status, 'accepted');
  });
});
