import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, test, type TestContext } from 'node:test';
import { collectInventory } from '../../agent/inventory/inventory.ts';
import { inventoryHash } from '../../shared/inventory-hash.ts';
import type { Inventory } from '../../shared/protocol.ts';
import { inventoryOf, rhel95Packages } from '../../shared/testing/correlate-fixtures.ts';
import { type Engine, onEachEngine } from '../../shared/testing/store-engines.ts';
import { enrollAgent as enroll, FLEET_NOW } from '../../shared/testing/store-fixtures.ts';
import type { HostFilter, HostListItem } from './hosts.ts';
import { sql } from './sql/query.ts';

const NOW = FLEET_NOW;

let thisHost: Inventory;
let rhel: Inventory;
before(async () => {
  // This machine's real inventory (dpkg status, kernel, reboot signals) and the real RHEL 9.5 image's rpms.
  thisHost = await collectInventory();
  rhel = inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages());
});

const setHostContent = sql('UPDATE hosts SET findings_content = ? WHERE agent_id = ?');
const hostContent = sql('SELECT findings_content, findings_since FROM hosts WHERE agent_id = ?');
const historyRow = sql(
  "INSERT INTO finding_history (host, advisory, package, first_seen, last_seen, resolved, status, finding) VALUES (?, 'ALSA-2025:1', 'bind', '2026-01-01', '2026-01-01', NULL, 'open', '{}')",
);
const exceptionRow = sql("INSERT INTO exceptions (advisory, package, host, owner, reason, expires, created_at) VALUES ('ALSA-2025:1', NULL, ?, 'sec', 'waf', ?, ?)");

async function all(hosts: AsyncIterable<HostListItem>): Promise<HostListItem[]> {
  const out: HostListItem[] = [];
  for await (const h of hosts) out.push(h);
  return out;
}

onEachEngine('Hosts.page', (engine: Engine) => {
  async function fleetOf(t: TestContext, n: number) {
    const { store: fleet } = await engine.open(t);
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const debian = i % 2 === 0;
      const base = debian ? thisHost : rhel;
      const inv: Inventory = {
        ...base,
        host: { ...base.host, hostname: `host-${String(i % 10).padStart(2, '0')}` },
        reboot: { ...base.reboot, required: i % 3 === 0 },
      };
      const id = await enroll(fleet, inv.host.hostname);
      await fleet.reports.ingest(id, randomUUID(), inventoryHash(inv), inv, new Date(NOW.getTime() + i * 1000));
      if (i % 4 === 0) await fleet.agents.setTags(id, ['prod'], 'test', NOW);
      ids.push(id);
    }
    return { fleet, ids };
  }

  test('pages of 7 over 25 hosts (hostnames repeat) give each host once, in (hostname, id) order', async (t) => {
    const { fleet, ids } = await fleetOf(t, 25);
    const seen: string[] = [];
    let after: readonly [string, string] | undefined;
    let pages = 0;
    for (;;) {
      const page = await fleet.hosts.page({ limit: 7, after });
      pages++;
      seen.push(...page.hosts.map((h) => `${h.hostname} ${h.agentId}`));
      const last = page.hosts[page.hosts.length - 1];
      if (!page.more || last === undefined) break;
      after = [last.hostname, last.agentId];
    }
    assert.equal(pages, 4);
    assert.equal(seen.length, 25);
    assert.deepEqual(seen, [...seen].sort());
    assert.deepEqual(new Set(seen.map((s) => s.split(' ')[1])), new Set(ids));
    assert.deepEqual((await all(fleet.hosts.all({}, 7))).map((h) => `${h.hostname} ${h.agentId}`), seen, 'all() walks the same pages');
  });

  test('mixed-case and non-ASCII host names page in byte order, the same on both engines, and PostgreSQL reads that order from the index', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    if (engine.name === 'postgres') {
      // The test cluster's databases collate as C; most servers' as en_US.UTF-8, where `ä` sorts beside `a`
      // and `B` beside `b`. The column gets such a collation here: the listing must not depend on it.
      await db.run(sql('ALTER TABLE hosts ALTER COLUMN hostname TYPE text COLLATE "und-x-icu"'));
    }
    const names = ['zeta', 'Zeta', 'alpha', 'Alpha', 'ALPHA', 'ärger', 'Ärger', 'beta.1', 'beta_1', 'beta-1', 'b', 'éclair', 'ünïcødé-☃', '日本-1', 'alpha'];
    const ids: string[] = [];
    for (const [i, hostname] of names.entries()) {
      const inv: Inventory = { ...rhel, host: { ...rhel.host, hostname } };
      const id = await enroll(fleet, hostname);
      await fleet.reports.ingest(id, randomUUID(), inventoryHash(inv), inv, new Date(NOW.getTime() + i * 1000));
      ids.push(id);
    }
    const seen: [string, string][] = [];
    let after: readonly [string, string] | undefined;
    for (;;) {
      const page = await fleet.hosts.page({ limit: 4, after });
      seen.push(...page.hosts.map((h): [string, string] => [h.hostname, h.agentId]));
      const last = page.hosts.at(-1);
      if (!page.more || last === undefined) break;
      after = [last.hostname, last.agentId];
    }
    const bytes = (a: [string, string], b: [string, string]): number => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])) || Buffer.compare(Buffer.from(a[1]), Buffer.from(b[1]));
    assert.deepEqual(seen, [...seen].sort(bytes));
    assert.deepEqual(seen.slice(0, 3).map(([n]) => n), ['ALPHA', 'Alpha', 'Zeta'], 'upper case before lower, as bytes');
    assert.equal(seen.length, names.length);
    assert.deepEqual(new Set(seen.map(([, id]) => id)), new Set(ids));
    assert.deepEqual((await fleet.hosts.page({ hostnamePrefix: 'beta', limit: 10 })).hosts.map((h) => h.hostname), ['beta-1', 'beta.1', 'beta_1']);
    if (engine.name === 'postgres') {
      // The listing's order and keyset condition (hosts.ts), planned as if the table were large.
      const plan = await db.transaction(async (tx) => {
        await tx.run(sql('SET LOCAL enable_seqscan = off'));
        return tx.all<{ 'QUERY PLAN': string }>(
          sql(`EXPLAIN SELECT h.agent_id FROM hosts h WHERE (h.hostname COLLATE "C", h.agent_id COLLATE "C") > (?::text, ?::text)
               ORDER BY h.hostname COLLATE "C", h.agent_id COLLATE "C" LIMIT 4`),
          ['b', ''],
        );
      });
      const lines = plan.map((r) => r['QUERY PLAN']);
      assert.ok(lines.some((l) => l.includes('using hosts_by_hostname')), lines.join('\n'));
      assert.ok(!lines.some((l) => /Sort/.test(l)), `no sort: the index gives the order\n${lines.join('\n')}`);
    }
  });

  const filters: { name: string; q: HostFilter; expect: (i: number) => boolean }[] = [
    { name: 'ecosystem AlmaLinux:9', q: { ecosystem: 'AlmaLinux:9' }, expect: (i) => i % 2 === 1 },
    { name: 'rebootRequired true', q: { rebootRequired: true }, expect: (i) => i % 3 === 0 },
    { name: 'rebootRequired false', q: { rebootRequired: false }, expect: (i) => i % 3 !== 0 },
    { name: 'tag prod', q: { tag: 'prod' }, expect: (i) => i % 4 === 0 },
    { name: 'seenSince +10 s', q: { seenSince: new Date(NOW.getTime() + 10_000).toISOString() }, expect: (i) => i >= 10 },
    { name: 'ecosystem AlmaLinux:9 and tag prod', q: { ecosystem: 'AlmaLinux:9', tag: 'prod' }, expect: () => false },
    { name: 'covered: in AlmaLinux:9', q: { coverage: { in: ['AlmaLinux:9'] } }, expect: (i) => i % 2 === 1 },
    { name: 'covered: out of AlmaLinux:9', q: { coverage: { out: ['AlmaLinux:9'] } }, expect: (i) => i % 2 === 0 },
    { name: 'hostname prefix host-0', q: { hostnamePrefix: 'host-0' }, expect: (i) => i % 10 < 10 },
    { name: 'hostname prefix host-03', q: { hostnamePrefix: 'host-03' }, expect: (i) => i % 10 === 3 },
  ];
  for (const f of filters) {
    test(`filter ${f.name}`, async (t) => {
      const { fleet, ids } = await fleetOf(t, 16);
      const got = (await fleet.hosts.page({ ...f.q, limit: 1000 })).hosts.map((h) => h.agentId).sort();
      assert.deepEqual(got, ids.filter((_, i) => f.expect(i)).sort());
    });
  }

  test('setFindingCounts shows in the host summary', async (t) => {
    const { fleet, ids } = await fleetOf(t, 1);
    await fleet.hosts.setFindingCounts(ids[0]!, 12, 3);
    assert.deepEqual([(await fleet.hosts.get(ids[0]!))?.openFindings, (await fleet.hosts.get(ids[0]!))?.overdueFindings], [12, 3]);
  });

  test('setContentFindingCounts: a host laid over the content (or over none yet, which adopts it) takes its counts; one with its own history, another content or an exception in force does not', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const id = await enroll(fleet, `h${i}`);
      await fleet.reports.ingest(id, randomUUID(), inventoryHash(rhel), { ...rhel, host: { ...rhel.host, hostname: `h${i}` } }, NOW);
      ids.push(id);
    }
    const [adopts, laid, ownHistory, otherContent, excepted] = ids as [string, string, string, string, string];
    await db.run(setHostContent, ['c1', laid]);
    await db.run(setHostContent, ['c1', excepted]);
    await db.run(setHostContent, ['c2', otherContent]);
    await db.run(historyRow, [ownHistory]);
    await db.run(exceptionRow, [excepted, '2027-01-01T00:00:00.000Z', NOW.toISOString()]);
    const items = [...ids].sort().map((agentId) => ({ agentId, content: 'c1', open: 4, overdue: 1 }));
    const r = await fleet.hosts.setContentFindingCounts(items, NOW);
    assert.equal(r.set, 2);
    assert.deepEqual([...r.others].sort(), [ownHistory, otherContent, excepted].sort());
    const counts = async (id: string) => {
      const h = await fleet.hosts.get(id);
      return [h?.openFindings, h?.overdueFindings];
    };
    assert.deepEqual(await counts(adopts), [4, 1]);
    assert.deepEqual(await counts(laid), [4, 1]);
    for (const id of [ownHistory, otherContent, excepted]) assert.deepEqual(await counts(id), [0, 0]);
    assert.deepEqual(await db.get(hostContent, [adopts]), { findings_content: 'c1', findings_since: NOW.toISOString() });
    assert.deepEqual(await fleet.hosts.setContentFindingCounts([], NOW), { set: 0, others: [] });
  });

  test('ids: every agent with a stored inventory, in id order', async (t) => {
    const { fleet, ids } = await fleetOf(t, 6);
    await enroll(fleet, 'no-report-yet');
    assert.deepEqual(await fleet.hosts.ids(), [...ids].sort());
  });

  test('all() pages stay stable while hosts report in between: each host once, in order', async (t) => {
    const { fleet, ids } = await fleetOf(t, 12);
    const seen: string[] = [];
    let i = 0;
    for await (const h of fleet.hosts.all({}, 3)) {
      seen.push(`${h.hostname} ${h.agentId}`);
      // A report between pages (each step reads a page at a time): the host's row changes, not its place.
      const id = ids[i++ % ids.length] as string;
      await fleet.reports.ingest(id, randomUUID(), inventoryHash(rhel), { ...rhel, host: { ...rhel.host, hostname: (await fleet.hosts.get(id))?.hostname ?? 'x' } }, NOW);
    }
    assert.equal(seen.length, 12);
    assert.deepEqual(seen, [...seen].sort());
    assert.deepEqual(new Set(seen.map((x) => x.split(' ')[1])), new Set(ids));
  });
});

