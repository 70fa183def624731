import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { collectInventory } from '../../agent/inventory/inventory.ts';
import type { AgentRefusal } from '../../shared/errors.ts';
import { inventoryHash, packagesHash } from '../../shared/inventory-hash.ts';
import type { Inventory } from '../../shared/protocol.ts';
import { inventoryOf, rhel95Packages } from '../../shared/testing/correlate-fixtures.ts';
import { openDatabase, type Db } from './db.ts';
import { type Fleet, fleetOn } from './fleet.ts';
import { REPORTS_PER_AGENT } from './reports.ts';
import { tempFleet, rowCount as count, enrollAgent as enroll, FLEET_NOW } from '../../shared/testing/store-fixtures.ts';

const NOW = FLEET_NOW;
const HOUR = 3600_000;

let thisHost: Inventory;
let rhel: Inventory;
before(async () => {
  // This machine's real inventory (dpkg status, kernel, reboot signals) and the real RHEL 9.5 image's rpms.
  thisHost = await collectInventory();
  rhel = inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages());
});

describe('Reports.ingest', () => {
  it("stores this machine's real inventory once, with the package count dpkg has, and reassembles it", async (t) => {
    const { db, fleet } = await tempFleet(t);
    const id = enroll(fleet, thisHost.host.hostname);
    const hash = inventoryHash(thisHost);
    const r = fleet.reports.ingest(id, randomUUID(), hash, thisHost, NOW);
    assert.deepEqual(r, { status: 'stored', contentHash: packagesHash(thisHost), newContent: true });
    const host = fleet.hosts.get(id);
    assert.equal(host?.packageCount, thisHost.packages.length);
    assert.equal(host.hostname, thisHost.host.hostname);
    assert.equal(host.kernelRelease, thisHost.kernel.release);
    assert.equal(host.rebootRequired, thisHost.reboot.required);
    assert.deepEqual(fleet.reports.latestInventory(id), thisHost);
    assert.equal(fleet.agents.get(id)?.lastInventoryHash, hash);
    assert.equal(count(db, 'inventory_contents'), 1);
  });

  it('two agents with the same packages share one content row; each has its report', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const a = enroll(fleet, 'a');
    const b = enroll(fleet, 'b');
    const first = fleet.reports.ingest(a, randomUUID(), inventoryHash(rhel), rhel, NOW);
    const otherHost = { ...rhel, host: { ...rhel.host, hostname: 'b' } };
    const second = fleet.reports.ingest(b, randomUUID(), inventoryHash(otherHost), otherHost, NOW);
    assert.equal(first.status === 'stored' && first.newContent, true);
    assert.equal(second.status === 'stored' && !second.newContent, true);
    assert.equal(count(db, 'inventory_contents'), 1);
    assert.equal(count(db, 'reports'), 2);
    assert.equal(fleet.reports.latestInventory(b)?.host.hostname, 'b');
  });

  it('unchanged (null inventory with the last hash), full inventory with the last hash, and a re-sent id', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const id = enroll(fleet);
    const hash = inventoryHash(rhel);
    const reportId = randomUUID();
    assert.equal(fleet.reports.ingest(id, reportId, hash, rhel, NOW).status, 'stored');
    const later = new Date(NOW.getTime() + HOUR);
    assert.equal(fleet.reports.ingest(id, randomUUID(), hash, null, later).status, 'unchanged');
    assert.equal(fleet.agents.get(id)?.lastSeen, later.toISOString());
    assert.equal(fleet.reports.ingest(id, randomUUID(), hash, { ...rhel, collectedAt: later.toISOString() }, later).status, 'unchanged');
    assert.equal(fleet.reports.ingest(id, reportId, hash, rhel, later).status, 'duplicate');
    assert.equal(count(db, 'reports'), 1);
  });

  it("a report id is its agent's own: another agent's report under the same id is stored as its own, each a duplicate of itself only (issue 10)", async (t) => {
    const { db, fleet } = await tempFleet(t);
    const a = enroll(fleet, 'a');
    const b = enroll(fleet, 'b');
    const reportId = randomUUID();
    assert.equal(fleet.reports.ingest(a, reportId, inventoryHash(rhel), rhel, NOW).status, 'stored');
    assert.equal(fleet.reports.ingest(b, reportId, inventoryHash(rhel), rhel, NOW).status, 'stored');
    assert.equal(fleet.reports.ingest(a, reportId, inventoryHash(rhel), rhel, NOW).status, 'duplicate');
    assert.equal(fleet.reports.ingest(b, reportId, inventoryHash(rhel), rhel, NOW).status, 'duplicate');
    assert.equal(count(db, 'reports'), 2);
    assert.deepEqual([fleet.hosts.get(a)?.lastReportId, fleet.hosts.get(b)?.lastReportId], [reportId, reportId]);
    assert.equal(fleet.hosts.page({ limit: 100 }).hosts.length, 2, 'one row per host, not one per report sharing the id');
  });

  const refusals: { name: string; code: string; reason: AgentRefusal; run: (f: Fleet, id: string, other: string) => void }[] = [
    { name: 'null inventory before any was stored', code: 'PW_ERR_INVENTORY_UNKNOWN', reason: 'inventory-unknown', run: (f, _id, other) => f.reports.ingest(other, randomUUID(), 'a'.repeat(64), null, NOW) },
    { name: 'null inventory with a hash that is not the last one', code: 'PW_ERR_INVENTORY_UNKNOWN', reason: 'inventory-unknown', run: (f, id) => f.reports.ingest(id, randomUUID(), 'b'.repeat(64), null, NOW) },
    { name: 'an agent that is not enrolled', code: 'PW_ERR_UNAUTHENTICATED', reason: 'not-enrolled', run: (f) => f.reports.ingest(randomUUID(), randomUUID(), inventoryHash(rhel), rhel, NOW) },
    {
      name: 'a revoked agent',
      code: 'PW_ERR_AGENT_REVOKED',
      reason: 'revoked',
      run: (f, _id, other) => {
        f.agents.revoke(other, 'test', NOW);
        f.reports.ingest(other, randomUUID(), inventoryHash(rhel), rhel, NOW);
      },
    },
  ];
  const FIRST_REPORT = randomUUID();
  for (const c of refusals) {
    it(`refuses ${c.name} with ${c.code} and stores nothing`, async (t) => {
      const { db, fleet } = await tempFleet(t);
      const id = enroll(fleet, 'a');
      const other = enroll(fleet, 'b');
      fleet.reports.ingest(id, FIRST_REPORT, inventoryHash(rhel), rhel, NOW);
      const before = { reports: count(db, 'reports'), contents: count(db, 'inventory_contents'), hosts: count(db, 'hosts'), hashB: fleet.agents.get(other)?.lastInventoryHash };
      assert.throws(() => {
        c.run(fleet, id, other);
      }, { name: 'AgentRefusedError', code: c.code, reason: c.reason });
      assert.deepEqual(
        { reports: count(db, 'reports'), contents: count(db, 'inventory_contents'), hosts: count(db, 'hosts'), hashB: fleet.agents.get(other)?.lastInventoryHash },
        before,
      );
    });
  }

  // The unchanged fast path keeps each agent's revocation and last hash in memory: every
  // change to them, from this connection or another process's, must be seen by the next report.
  const seen: { name: string; change: (f: Fleet, other: Fleet, id: string, db: Db) => void; then: { hash: 'old' | 'new'; status?: string; code?: string } }[] = [
    { name: 'revoked through this store', change: (f, _o, id) => f.agents.revoke(id, 'test', NOW), then: { hash: 'old', code: 'PW_ERR_AGENT_REVOKED' } },
    { name: 'revoked by another process on the same file (a CLI agents revoke --db)', change: (_f, o, id) => o.agents.revoke(id, 'cli', NOW), then: { hash: 'old', code: 'PW_ERR_AGENT_REVOKED' } },
    { name: 'a new inventory stored: the old hash is refused', change: (f, _o, id) => f.reports.ingest(id, randomUUID(), inventoryHash(thisHost), thisHost, NOW), then: { hash: 'old', code: 'PW_ERR_INVENTORY_UNKNOWN' } },
    { name: 'a new inventory stored: the new hash is unchanged', change: (f, _o, id) => f.reports.ingest(id, randomUUID(), inventoryHash(thisHost), thisHost, NOW), then: { hash: 'new', status: 'unchanged' } },
    {
      name: 'a new inventory stored by another process: the old hash is refused',
      change: (_f, o, id) => o.reports.ingest(id, randomUUID(), inventoryHash(thisHost), thisHost, NOW),
      then: { hash: 'old', code: 'PW_ERR_INVENTORY_UNKNOWN' },
    },
    {
      name: 'a new inventory whose transaction rolled back: the old hash is still unchanged',
      change: (f, _o, id, db) => {
        db.exec("CREATE TEMP TRIGGER refuse_hosts BEFORE UPDATE ON hosts BEGIN SELECT RAISE(ABORT, 'disk says no'); END");
        assert.throws(() => f.reports.ingest(id, randomUUID(), inventoryHash(thisHost), thisHost, NOW), /disk says no/);
      },
      then: { hash: 'old', status: 'unchanged' },
    },
  ];
  for (const c of seen) {
    it(`an unchanged report after ${c.name}`, async (t) => {
      const { db, fleet, path } = await tempFleet(t);
      const otherDb = openDatabase(path);
      t.after(() => {
        otherDb.close();
      });
      const otherProcess = fleetOn(otherDb);
      const id = enroll(fleet);
      const old = inventoryHash(rhel);
      assert.equal(fleet.reports.ingest(id, randomUUID(), old, rhel, NOW).status, 'stored');
      // Twice, so the agent's state is held in memory before the change.
      assert.equal(fleet.reports.ingest(id, randomUUID(), old, null, NOW).status, 'unchanged');
      assert.equal(fleet.reports.ingest(id, randomUUID(), old, null, NOW).status, 'unchanged');
      c.change(fleet, otherProcess, id, db);
      const hash = c.then.hash === 'old' ? old : inventoryHash(thisHost);
      if (c.then.code !== undefined) assert.throws(() => fleet.reports.ingest(id, randomUUID(), hash, null, NOW), { code: c.then.code });
      else assert.equal(fleet.reports.ingest(id, randomUUID(), hash, null, NOW).status, c.then.status);
    });
  }

  it('a failure inside the transaction leaves no report, no content and no host behind', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const id = enroll(fleet);
    // A real SQLite failure at the last write of the transaction: the host upsert.
    db.exec("CREATE TRIGGER fail_hosts BEFORE INSERT ON hosts BEGIN SELECT RAISE(ABORT, 'disk says no'); END");
    assert.throws(() => fleet.reports.ingest(id, randomUUID(), inventoryHash(rhel), rhel, NOW), /disk says no/);
    assert.deepEqual([count(db, 'reports'), count(db, 'inventory_contents'), count(db, 'hosts')], [0, 0, 0]);
    assert.equal(fleet.agents.get(id)?.lastInventoryHash, null);
  });
});

describe('Reports.ingestBatch (one commit for the reports of one event-loop turn)', () => {
  it('each report in its own savepoint: a refused one rolls back alone, the others are stored', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const [a, revoked, b] = [enroll(fleet, 'a'), enroll(fleet, 'revoked'), enroll(fleet, 'b')];
    fleet.agents.revoke(revoked, 'test', NOW);
    const hostB = { ...rhel, host: { ...rhel.host, hostname: 'b' } };
    const results = fleet.reports.ingestBatch(
      [
        { agentId: a, reportId: randomUUID(), hash: inventoryHash(rhel), inventory: rhel },
        { agentId: revoked, reportId: randomUUID(), hash: inventoryHash(rhel), inventory: rhel },
        { agentId: randomUUID(), reportId: randomUUID(), hash: inventoryHash(rhel), inventory: rhel },
        { agentId: b, reportId: randomUUID(), hash: inventoryHash(hostB), inventory: hostB },
      ],
      NOW,
    );
    assert.deepEqual(
      results.map((r) => ('error' in r ? (r.error as { code?: string }).code : r.status)),
      ['stored', 'PW_ERR_AGENT_REVOKED', 'PW_ERR_UNAUTHENTICATED', 'stored'],
    );
    assert.deepEqual([count(db, 'reports'), count(db, 'hosts'), count(db, 'inventory_contents')], [2, 2, 1]);
    assert.equal(fleet.hosts.get(revoked), undefined);
    assert.equal(fleet.reports.latestInventory(b)?.host.hostname, 'b');
  });

  it('a failing commit stores nothing of the batch', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const a = enroll(fleet, 'a');
    // A deferred constraint fails at COMMIT: the whole batch's transaction, not one savepoint.
    db.exec('CREATE TABLE commit_gate (x INTEGER REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED)');
    db.exec("CREATE TRIGGER gate AFTER INSERT ON reports BEGIN INSERT INTO commit_gate VALUES ('no such agent'); END");
    assert.throws(() => fleet.reports.ingestBatch([{ agentId: a, reportId: randomUUID(), hash: inventoryHash(rhel), inventory: rhel }], NOW), /FOREIGN KEY/);
    assert.deepEqual([count(db, 'reports'), count(db, 'hosts'), count(db, 'inventory_contents')], [0, 0, 0]);
  });
});

describe(`Reports keeps each agent's newest ${REPORTS_PER_AGENT} reports and the inventories they name (issue 10, defect 1)`, () => {
  /** The real RHEL image with one package's version changed per n: a new inventory content each. */
  function nth(n: number): Inventory {
    return { ...rhel, packages: rhel.packages.map((p, i) => (i === 0 ? { ...p, version: `${p.version}.pw${n}` } : p)) };
  }
  function contentsOf(db: Db, agentId: string): string[] {
    return db.prepare<[string], string>('SELECT DISTINCT content_hash FROM reports WHERE agent_id = ?').pluck().all(agentId);
  }

  it('an agent sending 20 distinct inventories keeps 8 on a real SQLite file; an inventory another agent still names stays; foreign keys hold', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const agent = enroll(fleet, 'churner');
    const other = enroll(fleet, 'neighbour');
    // The neighbour reports the churner's second inventory: that content must survive the churn.
    const shared = nth(1);
    let at = NOW.getTime();
    const stored: string[] = [];
    for (let n = 0; n < 20; n++) {
      const inv = nth(n);
      const r = fleet.reports.ingest(agent, randomUUID(), inventoryHash(inv), inv, new Date((at += 60_000)));
      assert.equal(r.status, 'stored');
      stored.push(packagesHash(inv));
      if (n === 1) assert.equal(fleet.reports.ingest(other, randomUUID(), inventoryHash(shared), shared, new Date((at += 60_000))).status, 'stored');
    }
    assert.equal(count(db, 'reports'), REPORTS_PER_AGENT + 1);
    assert.deepEqual(new Set(contentsOf(db, agent)), new Set(stored.slice(-REPORTS_PER_AGENT)));
    // 8 of the churner's, and the one the neighbour names.
    assert.equal(count(db, 'inventory_contents'), REPORTS_PER_AGENT + 1);
    assert.deepEqual(contentsOf(db, other), [packagesHash(shared)]);
    assert.deepEqual(fleet.reports.latestInventory(agent)?.packages, nth(19).packages);
    assert.deepEqual(fleet.reports.latestInventory(other)?.packages, shared.packages);
    assert.deepEqual(db.pragma('foreign_key_check'), []);
  });

  it('the host report stays even when a later-stored one sorts newer (an air-gapped file dated before it)', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const agent = enroll(fleet);
    for (let n = 0; n < REPORTS_PER_AGENT; n++) fleet.reports.ingest(agent, randomUUID(), inventoryHash(nth(n)), nth(n), new Date(NOW.getTime() + (n + 10) * HOUR));
    // Stored last, but received_at says it is the oldest.
    const last = nth(99);
    fleet.reports.ingest(agent, randomUUID(), inventoryHash(last), last, NOW);
    assert.equal(count(db, 'reports'), REPORTS_PER_AGENT);
    assert.deepEqual(fleet.reports.latestInventory(agent)?.packages, last.packages);
    assert.deepEqual(db.pragma('foreign_key_check'), []);
  });
});
