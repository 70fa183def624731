import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, it, type TestContext } from 'node:test';
import { collectInventory } from '../../agent/inventory/inventory.ts';
import { inventoryHash } from '../../shared/inventory-hash.ts';
import type { Inventory } from '../../shared/protocol.ts';
import { inventoryOf, rhel95Packages } from '../../shared/testing/correlate-fixtures.ts';
import type { HostFilter } from './hosts.ts';
import { tempFleet, enrollAgent as enroll, FLEET_NOW } from '../../shared/testing/store-fixtures.ts';

const NOW = FLEET_NOW;

let thisHost: Inventory;
let rhel: Inventory;
before(async () => {
  // This machine's real inventory (dpkg status, kernel, reboot signals) and the real RHEL 9.5 image's rpms.
  thisHost = await collectInventory();
  rhel = inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages());
});

describe('Hosts.page', () => {
  async function fleetOf(t: TestContext, n: number) {
    const { db, fleet } = await tempFleet(t);
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const debian = i % 2 === 0;
      const base = debian ? thisHost : rhel;
      const inv: Inventory = {
        ...base,
        host: { ...base.host, hostname: `host-${String(i % 10).padStart(2, '0')}` },
        reboot: { ...base.reboot, required: i % 3 === 0 },
      };
      const id = enroll(fleet, inv.host.hostname);
      fleet.reports.ingest(id, randomUUID(), inventoryHash(inv), inv, new Date(NOW.getTime() + i * 1000));
      if (i % 4 === 0) fleet.agents.setTags(id, ['prod'], 'test', NOW);
      ids.push(id);
    }
    return { db, fleet, ids };
  }

  it('pages of 7 over 25 hosts (hostnames repeat) give each host once, in (hostname, id) order', async (t) => {
    const { fleet, ids } = await fleetOf(t, 25);
    const seen: string[] = [];
    let after: readonly [string, string] | undefined;
    let pages = 0;
    for (;;) {
      const page = fleet.hosts.page({ limit: 7, after });
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
    assert.deepEqual([...fleet.hosts.all({}, 7)].map((h) => `${h.hostname} ${h.agentId}`), seen, 'all() walks the same pages');
  });

  const filters: { name: string; q: HostFilter; expect: (i: number) => boolean }[] = [
    { name: 'ecosystem AlmaLinux:9', q: { ecosystem: 'AlmaLinux:9' }, expect: (i) => i % 2 === 1 },
    { name: 'rebootRequired true', q: { rebootRequired: true }, expect: (i) => i % 3 === 0 },
    { name: 'rebootRequired false', q: { rebootRequired: false }, expect: (i) => i % 3 !== 0 },
    { name: 'tag prod', q: { tag: 'prod' }, expect: (i) => i % 4 === 0 },
    { name: 'seenSince +10 s', q: { seenSince: new Date(NOW.getTime() + 10_000).toISOString() }, expect: (i) => i >= 10 },
    { name: 'ecosystem AlmaLinux:9 and tag prod', q: { ecosystem: 'AlmaLinux:9', tag: 'prod' }, expect: () => false },
  ];
  for (const f of filters) {
    it(`filter ${f.name}`, async (t) => {
      const { fleet, ids } = await fleetOf(t, 16);
      const got = fleet.hosts.page({ ...f.q, limit: 1000 }).hosts.map((h) => h.agentId).sort();
      assert.deepEqual(got, ids.filter((_, i) => f.expect(i)).sort());
    });
  }

  it('setFindingCounts shows in the host summary', async (t) => {
    const { fleet, ids } = await fleetOf(t, 1);
    fleet.hosts.setFindingCounts(ids[0]!, 12, 3);
    assert.deepEqual([fleet.hosts.get(ids[0]!)?.openFindings, fleet.hosts.get(ids[0]!)?.overdueFindings], [12, 3]);
  });
});

