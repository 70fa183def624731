import assert from 'node:assert/strict';
import { test } from 'node:test';
import { onEachEngine } from '../../shared/testing/store-engines.ts';
import type { SqlDatabase } from './sql/executor.ts';
import { sql } from './sql/query.ts';

const agent = sql('INSERT INTO agents (id, public_key, hostname, enrolled_at, revoked_at, connected) VALUES (?, ?, ?, ?, ?, ?)');
const content = sql('INSERT INTO inventory_contents (hash, ecosystem, package_count, packages, created_at) VALUES (?, ?, ?, ?, ?)');
const report = sql('INSERT INTO reports (id, agent_id, received_at, inventory_hash, content_hash, envelope) VALUES (?, ?, ?, ?, ?, ?)');
const host = sql(`INSERT INTO hosts (agent_id, hostname, ecosystem, package_count, kernel_release, kernel_managed, reboot_required,
  last_report_id, last_report_at, open_findings) VALUES (?, ?, ?, ?, '6.1.0', 1, ?, ?, ?, ?)`);

const AT = '2026-12-01T00:00:00.000Z';

/** [agent, ecosystem, packages, reboot required, open findings, connected, revoked] */
const FLEET: [string, string | null, number, number, number, number, string | null][] = [
  ['a1', 'Debian:12', 400, 1, 7, 1, null],
  ['a2', 'Debian:12', 0, 0, 0, 1, null],
  ['a3', 'Rocky Linux:9', 900, 0, 12, 0, null],
  ['a4', null, 30, 1, 0, 1, AT],
];

async function seed(db: SqlDatabase): Promise<void> {
  for (const [id, ecosystem, packages, reboot, open, connected, revoked] of FLEET) {
    await db.run(agent, [id, `key-${id}`, `host-${id}`, AT, revoked, connected]);
    await db.run(content, [`c-${id}`, ecosystem, packages, '[]', AT]);
    await db.run(report, [`r-${id}`, id, AT, `i-${id}`, `c-${id}`, '{}']);
    await db.run(host, [id, `host-${id}`, ecosystem, packages, reboot, `r-${id}`, AT, open]);
  }
}

onEachEngine('FleetSummaryStore', (engine) => {
  test('an empty fleet counts nothing, and its signature is zero', async (t) => {
    const { store } = await engine.open(t);
    assert.deepEqual(await store.summary.counts(), { hosts: 0, rebootRequired: 0, byEcosystem: {}, agents: { enrolled: 0, connected: 0, revoked: 0 } });
    assert.deepEqual(await store.summary.byCoverageKey(100_000), []);
    assert.equal(await store.summary.openFindings(), 0);
    assert.deepEqual(await store.summary.signature(), { hosts: 0, lastReport: 0 });
  });

  test('counts hosts, reboots, ecosystems and agents; groups coverage keys; sums open findings', async (t) => {
    const { store, sql: db } = await engine.open(t);
    await seed(db);
    assert.deepEqual(await store.summary.counts(), {
      hosts: 4,
      rebootRequired: 2,
      byEcosystem: { '(unknown)': 1, 'Debian:12': 2, 'Rocky Linux:9': 1 },
      // A revoked agent's connection does not count as connected.
      agents: { enrolled: 4, connected: 2, revoked: 1 },
    });
    const groups = (await store.summary.byCoverageKey(500)).sort((a, b) => `${a.ecosystem}${a.readable}`.localeCompare(`${b.ecosystem}${b.readable}`));
    assert.deepEqual(groups, [
      { ecosystem: 'Debian:12', readable: false, n: 1 },
      { ecosystem: 'Debian:12', readable: true, n: 1 },
      { ecosystem: 'Rocky Linux:9', readable: false, n: 1 },
      { ecosystem: null, readable: true, n: 1 },
    ].sort((a, b) => `${a.ecosystem}${a.readable}`.localeCompare(`${b.ecosystem}${b.readable}`)));
    assert.equal(await store.summary.openFindings(), 19);
    const sig = await store.summary.signature();
    assert.equal(sig.hosts, 4);
    assert.ok(sig.lastReport > 0, 'the newest report is named');
    await db.run(report, ['r-a1-2', 'a1', AT, 'i-a1', 'c-a1', '{}']);
    assert.ok((await store.summary.signature()).lastReport > sig.lastReport, 'a new report changes the signature');
  });
});
