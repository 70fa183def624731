import assert from 'node:assert/strict';
import { test } from 'node:test';
import { onEachEngine } from '../../shared/testing/store-engines.ts';
import type { CountedTable } from './inspection.ts';
import type { SqlDatabase } from './sql/executor.ts';
import { sql } from './sql/query.ts';

const AT = '2026-12-01T00:00:00.000Z';

// Many hosts in a few statements, the same text on both engines: host i has i % 3 open findings.
const N = 'WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)';
const agents = sql(`${N} INSERT INTO agents (id, public_key, hostname, enrolled_at) SELECT 'h' || i, 'k' || i, 'h' || i, ? FROM n`);
const content = sql("INSERT INTO inventory_contents (hash, ecosystem, package_count, packages, created_at) VALUES ('c1', NULL, 0, '[]', ?)");
const reports = sql(`${N} INSERT INTO reports (id, agent_id, received_at, inventory_hash, content_hash, envelope) SELECT 'r' || i, 'h' || i, ?, 'i', 'c1', '{}' FROM n`);
const hosts = sql(`${N} INSERT INTO hosts (agent_id, hostname, ecosystem, package_count, kernel_release, kernel_managed, reboot_required,
  last_report_id, last_report_at, open_findings, overdue_findings, findings_content) SELECT 'h' || i, 'h' || i, NULL, 0, '6.1.0', 1, 0, 'r' || i, ?, i % 3, i % 2, 'c1' FROM n`);
const extraReport = sql("INSERT INTO reports (id, agent_id, received_at, inventory_hash, content_hash, envelope) VALUES (?, 'h1', ?, 'i', 'c1', '{}')");
const timeline = sql("INSERT INTO content_findings (content, package, advisory, first_seen, last_seen, resolved, status) VALUES ('c1', ?, ?, ?, ?, NULL, 'open')");

async function seed(db: SqlDatabase, n: number): Promise<void> {
  await db.run(agents, [n, AT]);
  await db.run(content, [AT]);
  await db.run(reports, [n, AT]);
  await db.run(hosts, [n, AT]);
}

onEachEngine('StoreInspection', (engine) => {
  test('an empty store counts nothing', async (t) => {
    const { store } = await engine.open(t);
    const i = store.inspection;
    for (const table of ['agents', 'hosts', 'reports', 'inventory_contents', 'advisories', 'content_findings', 'finding_history'] satisfies CountedTable[]) {
      assert.equal(await i.rows(table), 0, table);
    }
    assert.equal(await i.maxReportsPerAgent(), 0);
    assert.equal(await i.hostsWithOpenFindings(), 0);
    assert.deepEqual(await i.raisedAdvisories(), []);
    const rows = [];
    for await (const r of i.hostFindings()) rows.push(r);
    assert.deepEqual(rows, []);
    await i.truncateWal();
  });

  test('counts rows, reports per agent, hosts with open findings, raised advisories', async (t) => {
    const { store, sql: db } = await engine.open(t);
    await seed(db, 30);
    await db.run(extraReport, ['r1-b', AT]);
    await db.run(extraReport, ['r1-c', AT]);
    for (const [pkg, advisory] of [['bash', 'A-1'], ['curl', 'A-1'], ['zlib', 'A-2']] as const) await db.run(timeline, [pkg, advisory, AT, AT]);
    const i = store.inspection;
    assert.equal(await i.rows('agents'), 30);
    assert.equal(await i.rows('hosts'), 30);
    assert.equal(await i.rows('reports'), 32);
    assert.equal(await i.rows('inventory_contents'), 1);
    assert.equal(await i.rows('content_findings'), 3);
    assert.equal(await i.maxReportsPerAgent(), 3);
    // i % 3 != 0 for 20 of 1..30.
    assert.equal(await i.hostsWithOpenFindings(), 20);
    assert.deepEqual((await i.raisedAdvisories()).sort(), ['A-1', 'A-2']);
    await i.truncateWal();
    assert.equal(await i.rows('hosts'), 30, 'the WAL truncation changes no row');
  });

  test('hostFindings reads every host once, a page of 1000 at a time, in agent id order', async (t) => {
    const { store, sql: db } = await engine.open(t);
    await seed(db, 2345);
    const seen: string[] = [];
    let open = 0;
    for await (const r of store.inspection.hostFindings()) {
      seen.push(r.agentId);
      open += r.open;
      assert.equal(r.content, 'c1');
      assert.equal(r.overdue, Number(r.agentId.slice(1)) % 2);
    }
    assert.equal(seen.length, 2345);
    assert.equal(new Set(seen).size, 2345);
    assert.deepEqual(seen, [...seen].sort());
    assert.equal(open, Array.from({ length: 2345 }, (_, k) => (k + 1) % 3).reduce((a, b) => a + b, 0));
  });
});
