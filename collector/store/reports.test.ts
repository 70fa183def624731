import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, test } from 'node:test';
import { collectInventory } from '../../agent/inventory/inventory.ts';
import type { AgentRefusal } from '../../shared/errors.ts';
import { inventoryHash, packagesHash } from '../../shared/inventory-hash.ts';
import type { Inventory } from '../../shared/protocol.ts';
import { inventoryOf, rhel95Packages } from '../../shared/testing/correlate-fixtures.ts';
import { type Engine, onEachEngine } from '../../shared/testing/store-engines.ts';
import { rowCount as count, enrollAgent as enroll, FLEET_NOW } from '../../shared/testing/store-fixtures.ts';
import { REPORTS_PER_AGENT } from './reports.ts';
import type { SqlDatabase } from './sql/executor.ts';
import { sql } from './sql/query.ts';
import type { AsyncStore } from './store.ts';

const NOW = FLEET_NOW;
const HOUR = 3600_000;

let thisHost: Inventory;
let rhel: Inventory;
before(async () => {
  // This machine's real inventory (dpkg status, kernel, reboot signals) and the real RHEL 9.5 image's rpms.
  thisHost = await collectInventory();
  rhel = inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages());
});

const contentsOfAgent = sql('SELECT DISTINCT content_hash FROM reports WHERE agent_id = ?');
/** SQLite checks foreign keys when asked; PostgreSQL at every statement (or commit, when deferred): nothing is left to find. */
const foreignKeyProblems = sql({ sqlite: 'PRAGMA foreign_key_check', postgres: 'SELECT 1 AS problem WHERE false' });

/**
 * Real failures of the engine inside a report's transaction: a trigger refusing a write to
 * `hosts` (`when`: the upsert's insert of a new host, or its update of an existing one), or
 * a deferred foreign key that fails at COMMIT (the whole transaction, not a savepoint).
 */
const FAILURES = {
  sqlite: {
    hosts: (when: 'INSERT' | 'UPDATE') => [`CREATE TRIGGER fail_hosts BEFORE ${when} ON hosts BEGIN SELECT RAISE(ABORT, 'disk says no'); END`],
    hostNamed: (name: string) => [`CREATE TRIGGER fail_host BEFORE INSERT ON hosts WHEN NEW.hostname = '${name}' BEGIN SELECT RAISE(ABORT, 'disk says no'); END`],
    contentsDelete: ["CREATE TRIGGER fail_contents BEFORE DELETE ON inventory_contents BEGIN SELECT RAISE(ABORT, 'disk says no'); END"],
    commit: [
      'CREATE TABLE commit_gate (x INTEGER REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED)',
      "CREATE TRIGGER gate AFTER INSERT ON reports BEGIN INSERT INTO commit_gate VALUES ('no such agent'); END",
    ],
  },
  postgres: {
    hosts: (when: 'INSERT' | 'UPDATE') => [
      "CREATE FUNCTION pw_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk says no'; END $$",
      `CREATE TRIGGER fail_hosts BEFORE ${when} ON hosts FOR EACH ROW EXECUTE FUNCTION pw_test_refuse()`,
    ],
    hostNamed: (name: string) => [
      "CREATE FUNCTION pw_test_refuse_host() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk says no'; END $$",
      `CREATE TRIGGER fail_host BEFORE INSERT ON hosts FOR EACH ROW WHEN (NEW.hostname = '${name}') EXECUTE FUNCTION pw_test_refuse_host()`,
    ],
    contentsDelete: [
      "CREATE FUNCTION pw_test_refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk says no'; END $$",
      'CREATE TRIGGER fail_contents BEFORE DELETE ON inventory_contents FOR EACH ROW EXECUTE FUNCTION pw_test_refuse_delete()',
    ],
    commit: [
      'CREATE TABLE commit_gate (x text REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED)',
      "CREATE FUNCTION pw_test_gate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO commit_gate VALUES ('no such agent'); RETURN NEW; END $$",
      'CREATE TRIGGER gate AFTER INSERT ON reports FOR EACH ROW EXECUTE FUNCTION pw_test_gate()',
    ],
  },
};

async function runAll(db: SqlDatabase, statements: readonly string[]): Promise<void> {
  for (const text of statements) await db.run(sql(text));
}

onEachEngine('Reports.ingest', (engine: Engine) => {
  test("stores this machine's real inventory once, with the package count dpkg has, and reassembles it", async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const id = await enroll(fleet, thisHost.host.hostname);
    const hash = inventoryHash(thisHost);
    const r = await fleet.reports.ingest(id, randomUUID(), hash, thisHost, NOW);
    assert.deepEqual(r, { status: 'stored', contentHash: packagesHash(thisHost), newContent: true });
    const host = await fleet.hosts.get(id);
    assert.equal(host?.packageCount, thisHost.packages.length);
    assert.equal(host.hostname, thisHost.host.hostname);
    assert.equal(host.kernelRelease, thisHost.kernel.release);
    assert.equal(host.rebootRequired, thisHost.reboot.required);
    assert.deepEqual(await fleet.reports.latestInventory(id), thisHost);
    assert.equal((await fleet.agents.get(id))?.lastInventoryHash, hash);
    assert.equal(await count(db, 'inventory_contents'), 1);
  });

  test('two agents with the same packages share one content row; each has its report', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const a = await enroll(fleet, 'a');
    const b = await enroll(fleet, 'b');
    const first = await fleet.reports.ingest(a, randomUUID(), inventoryHash(rhel), rhel, NOW);
    const otherHost = { ...rhel, host: { ...rhel.host, hostname: 'b' } };
    const second = await fleet.reports.ingest(b, randomUUID(), inventoryHash(otherHost), otherHost, NOW);
    assert.equal(first.status === 'stored' && first.newContent, true);
    assert.equal(second.status === 'stored' && !second.newContent, true);
    assert.equal(await count(db, 'inventory_contents'), 1);
    assert.equal(await count(db, 'reports'), 2);
    assert.equal((await fleet.reports.latestInventory(b))?.host.hostname, 'b');
  });

  test('eight agents storing the same new inventory at once: all stored, one content row, one of them new', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) ids.push(await enroll(fleet, `h${i}`));
    const results = await Promise.all(
      ids.map((id, i) => {
        const inv = { ...rhel, host: { ...rhel.host, hostname: `h${i}` } };
        return fleet.reports.ingest(id, randomUUID(), inventoryHash(inv), inv, NOW);
      }),
    );
    assert.deepEqual(results.map((r) => r.status), Array.from({ length: 8 }, () => 'stored'));
    assert.equal(results.filter((r) => r.status === 'stored' && r.newContent).length, 1);
    assert.deepEqual([await count(db, 'inventory_contents'), await count(db, 'reports'), await count(db, 'hosts')], [1, 8, 8]);
  });

  test('unchanged (null inventory with the last hash), full inventory with the last hash, and a re-sent id', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const id = await enroll(fleet);
    const hash = inventoryHash(rhel);
    const reportId = randomUUID();
    assert.equal((await fleet.reports.ingest(id, reportId, hash, rhel, NOW)).status, 'stored');
    const later = new Date(NOW.getTime() + HOUR);
    assert.equal((await fleet.reports.ingest(id, randomUUID(), hash, null, later)).status, 'unchanged');
    assert.equal((await fleet.agents.get(id))?.lastSeen, later.toISOString());
    assert.equal((await fleet.reports.ingest(id, randomUUID(), hash, { ...rhel, collectedAt: later.toISOString() }, later)).status, 'unchanged');
    assert.equal((await fleet.reports.ingest(id, reportId, hash, rhel, later)).status, 'duplicate');
    assert.equal(await count(db, 'reports'), 1);
  });

  test('an unchanged report inside a transaction writes its last-seen time there', async (t) => {
    const { store: fleet } = await engine.open(t);
    const id = await enroll(fleet);
    const hash = inventoryHash(rhel);
    await fleet.reports.ingest(id, randomUUID(), hash, rhel, NOW);
    const later = new Date(NOW.getTime() + HOUR);
    assert.equal((await fleet.transaction((tx) => tx.reports.ingest(id, randomUUID(), hash, null, later))).status, 'unchanged');
    assert.equal((await fleet.agents.get(id))?.lastSeen, later.toISOString());
  });

  test("a report id is its agent's own: another agent's report under the same id is stored as its own, each a duplicate of itself only (issue 10)", async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const a = await enroll(fleet, 'a');
    const b = await enroll(fleet, 'b');
    const reportId = randomUUID();
    assert.equal((await fleet.reports.ingest(a, reportId, inventoryHash(rhel), rhel, NOW)).status, 'stored');
    assert.equal((await fleet.reports.ingest(b, reportId, inventoryHash(rhel), rhel, NOW)).status, 'stored');
    assert.equal((await fleet.reports.ingest(a, reportId, inventoryHash(rhel), rhel, NOW)).status, 'duplicate');
    assert.equal((await fleet.reports.ingest(b, reportId, inventoryHash(rhel), rhel, NOW)).status, 'duplicate');
    assert.equal(await count(db, 'reports'), 2);
    assert.deepEqual([(await fleet.hosts.get(a))?.lastReportId, (await fleet.hosts.get(b))?.lastReportId], [reportId, reportId]);
    assert.equal((await fleet.hosts.page({ limit: 100 })).hosts.length, 2, 'one row per host, not one per report sharing the id');
  });

  const refusals: { name: string; code: string; reason: AgentRefusal; run: (f: AsyncStore, id: string, other: string) => Promise<unknown> }[] = [
    { name: 'null inventory before any was stored', code: 'PW_ERR_INVENTORY_UNKNOWN', reason: 'inventory-unknown', run: (f, _id, other) => f.reports.ingest(other, randomUUID(), 'a'.repeat(64), null, NOW) },
    { name: 'null inventory with a hash that is not the last one', code: 'PW_ERR_INVENTORY_UNKNOWN', reason: 'inventory-unknown', run: (f, id) => f.reports.ingest(id, randomUUID(), 'b'.repeat(64), null, NOW) },
    { name: 'an agent that is not enrolled', code: 'PW_ERR_UNAUTHENTICATED', reason: 'not-enrolled', run: (f) => f.reports.ingest(randomUUID(), randomUUID(), inventoryHash(rhel), rhel, NOW) },
    {
      name: 'a revoked agent',
      code: 'PW_ERR_AGENT_REVOKED',
      reason: 'revoked',
      run: async (f, _id, other) => {
        await f.agents.revoke(other, 'test', NOW);
        await f.reports.ingest(other, randomUUID(), inventoryHash(rhel), rhel, NOW);
      },
    },
  ];
  const FIRST_REPORT = randomUUID();
  for (const c of refusals) {
    test(`refuses ${c.name} with ${c.code} and stores nothing`, async (t) => {
      const { store: fleet, sql: db } = await engine.open(t);
      const id = await enroll(fleet, 'a');
      const other = await enroll(fleet, 'b');
      await fleet.reports.ingest(id, FIRST_REPORT, inventoryHash(rhel), rhel, NOW);
      const state = async () => ({
        reports: await count(db, 'reports'),
        contents: await count(db, 'inventory_contents'),
        hosts: await count(db, 'hosts'),
        hashB: (await fleet.agents.get(other))?.lastInventoryHash,
      });
      const before = await state();
      await assert.rejects(c.run(fleet, id, other), { name: 'AgentRefusedError', code: c.code, reason: c.reason });
      assert.deepEqual(await state(), before);
    });
  }

  // The unchanged fast path keeps each agent's revocation and last hash in memory (SQLite): every
  // change to them, from this store or another process's (another replica's), must be seen by the next report.
  const seen: {
    name: string;
    change: (f: AsyncStore, other: AsyncStore, id: string, db: SqlDatabase) => Promise<unknown>;
    then: { hash: 'old' | 'new'; status?: string; code?: string };
  }[] = [
    { name: 'revoked through this store', change: (f, _o, id) => f.agents.revoke(id, 'test', NOW), then: { hash: 'old', code: 'PW_ERR_AGENT_REVOKED' } },
    { name: 'revoked by another process on the same database (a CLI agents revoke --db, another replica)', change: (_f, o, id) => o.agents.revoke(id, 'cli', NOW), then: { hash: 'old', code: 'PW_ERR_AGENT_REVOKED' } },
    { name: 'a new inventory stored: the old hash is refused', change: (f, _o, id) => f.reports.ingest(id, randomUUID(), inventoryHash(thisHost), thisHost, NOW), then: { hash: 'old', code: 'PW_ERR_INVENTORY_UNKNOWN' } },
    { name: 'a new inventory stored: the new hash is unchanged', change: (f, _o, id) => f.reports.ingest(id, randomUUID(), inventoryHash(thisHost), thisHost, NOW), then: { hash: 'new', status: 'unchanged' } },
    {
      name: 'a new inventory stored by another process: the old hash is refused',
      change: (_f, o, id) => o.reports.ingest(id, randomUUID(), inventoryHash(thisHost), thisHost, NOW),
      then: { hash: 'old', code: 'PW_ERR_INVENTORY_UNKNOWN' },
    },
    {
      name: 'a new inventory whose transaction rolled back: the old hash is still unchanged',
      change: async (f, _o, id, db) => {
        await runAll(db, FAILURES[engine.name].hosts('UPDATE'));
        await assert.rejects(f.reports.ingest(id, randomUUID(), inventoryHash(thisHost), thisHost, NOW), /disk says no/);
      },
      then: { hash: 'old', status: 'unchanged' },
    },
  ];
  for (const c of seen) {
    test(`an unchanged report after ${c.name}`, async (t) => {
      const { store: fleet, sql: db, another } = await engine.open(t);
      const otherProcess = await another();
      const id = await enroll(fleet);
      const old = inventoryHash(rhel);
      assert.equal((await fleet.reports.ingest(id, randomUUID(), old, rhel, NOW)).status, 'stored');
      // Twice, so the agent's state is held in memory before the change.
      assert.equal((await fleet.reports.ingest(id, randomUUID(), old, null, NOW)).status, 'unchanged');
      assert.equal((await fleet.reports.ingest(id, randomUUID(), old, null, NOW)).status, 'unchanged');
      await c.change(fleet, otherProcess, id, db);
      const hash = c.then.hash === 'old' ? old : inventoryHash(thisHost);
      if (c.then.code !== undefined) await assert.rejects(fleet.reports.ingest(id, randomUUID(), hash, null, NOW), { code: c.then.code });
      else assert.equal((await fleet.reports.ingest(id, randomUUID(), hash, null, NOW)).status, c.then.status);
    });
  }

  test('a failure inside the transaction leaves no report, no content and no host behind', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const id = await enroll(fleet);
    // A real failure of the engine at the last write of the transaction: the host upsert.
    await runAll(db, FAILURES[engine.name].hosts('INSERT'));
    await assert.rejects(fleet.reports.ingest(id, randomUUID(), inventoryHash(rhel), rhel, NOW), /disk says no/);
    assert.deepEqual([await count(db, 'reports'), await count(db, 'inventory_contents'), await count(db, 'hosts')], [0, 0, 0]);
    assert.equal((await fleet.agents.get(id))?.lastInventoryHash, null);
  });

  test('the same report sent twice at once (a reconnecting agent) is stored once and answered duplicate once', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const id = await enroll(fleet);
    const reportId = randomUUID();
    const results = await Promise.all([0, 1].map(() => fleet.reports.ingest(id, reportId, inventoryHash(rhel), rhel, NOW)));
    assert.deepEqual(results.map((r) => r.status).sort(), ['duplicate', 'stored']);
    assert.deepEqual([await count(db, 'reports'), await count(db, 'inventory_contents'), await count(db, 'hosts')], [1, 1, 1]);
    assert.equal((await fleet.hosts.get(id))?.lastReportId, reportId);
  });

  test('an unchanged report under an id already stored is a duplicate, and its time is last seen', async (t) => {
    const { store: fleet } = await engine.open(t);
    const id = await enroll(fleet);
    const reportId = randomUUID();
    await fleet.reports.ingest(id, reportId, inventoryHash(rhel), rhel, NOW);
    const later = new Date(NOW.getTime() + HOUR);
    assert.equal((await fleet.reports.ingest(id, reportId, inventoryHash(rhel), null, later)).status, 'duplicate');
    assert.equal((await fleet.agents.get(id))?.lastSeen, later.toISOString());
  });

  test('a content pruned with the last report naming it is stored again, packages and all, by the next report naming it', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const a = await enroll(fleet, 'a');
    const b = await enroll(fleet, 'b');
    const first = await fleet.reports.ingest(a, randomUUID(), inventoryHash(rhel), rhel, NOW);
    assert.equal(first.status === 'stored' && first.newContent, true);
    // `a` moves on through REPORTS_PER_AGENT other inventories: its first report, and the content only it named, go.
    for (let n = 1; n <= REPORTS_PER_AGENT; n++) {
      const inv = { ...rhel, packages: rhel.packages.map((p, i) => (i === 0 ? { ...p, version: `${p.version}.pw${n}` } : p)) };
      await fleet.reports.ingest(a, randomUUID(), inventoryHash(inv), inv, NOW);
    }
    assert.equal(await count(db, 'inventory_contents'), REPORTS_PER_AGENT);
    const again = { ...rhel, host: { ...rhel.host, hostname: 'b' } };
    const r = await fleet.reports.ingest(b, randomUUID(), inventoryHash(again), again, NOW);
    assert.deepEqual(r, { status: 'stored', contentHash: packagesHash(rhel), newContent: true });
    assert.deepEqual((await fleet.reports.latestInventory(b))?.packages, rhel.packages);
    assert.deepEqual(await db.all(foreignKeyProblems), []);
  });

  test('a failure at the prune rolls the whole report back: its content, report, host and the agent\'s inventory stay as before', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const id = await enroll(fleet);
    const nth = (n: number): Inventory => ({ ...rhel, packages: rhel.packages.map((p, i) => (i === 0 ? { ...p, version: `${p.version}.pw${n}` } : p)) });
    for (let n = 0; n < REPORTS_PER_AGENT; n++) await fleet.reports.ingest(id, randomUUID(), inventoryHash(nth(n)), nth(n), new Date(NOW.getTime() + n * HOUR));
    const before = {
      reports: await count(db, 'reports'),
      contents: await count(db, 'inventory_contents'),
      host: await fleet.hosts.get(id),
      hash: (await fleet.agents.get(id))?.lastInventoryHash,
    };
    // The ninth report's prune deletes the first report's content, the last write of its transaction (statement, on PostgreSQL).
    await runAll(db, FAILURES[engine.name].contentsDelete);
    const ninth = nth(REPORTS_PER_AGENT);
    await assert.rejects(fleet.reports.ingest(id, randomUUID(), inventoryHash(ninth), ninth, new Date(NOW.getTime() + 99 * HOUR)), /disk says no/);
    assert.deepEqual(
      {
        reports: await count(db, 'reports'),
        contents: await count(db, 'inventory_contents'),
        host: await fleet.hosts.get(id),
        hash: (await fleet.agents.get(id))?.lastInventoryHash,
      },
      before,
    );
  });

  test('packageSet and matchPackageSet: a stored set by its hash and by its bytes, and none for an unknown one', async (t) => {
    const { store: fleet, another } = await engine.open(t);
    const id = await enroll(fleet);
    const r = await fleet.reports.ingest(id, randomUUID(), inventoryHash(rhel), rhel, NOW);
    assert.equal(r.status, 'stored');
    // Another store has nothing in memory: both come from the database there.
    for (const s of [fleet, await another()]) {
      const json = Buffer.from(JSON.stringify(rhel.packages), 'utf8');
      const matched = await s.reports.matchPackageSet(json);
      assert.ok(matched !== undefined);
      assert.deepEqual(matched.packages, rhel.packages);
      assert.deepEqual(await s.reports.packageSet(matched.hash), rhel.packages);
      assert.equal(await s.reports.packageSet('0'.repeat(64)), undefined);
      assert.equal(await s.reports.matchPackageSet(Buffer.from('[]')), undefined);
    }
  });
});

onEachEngine('Reports.ingestBatch (one commit for the reports of one event-loop turn)', (engine: Engine) => {
  test('each report in its own savepoint: a refused one rolls back alone, the others are stored', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const [a, revoked, b] = [await enroll(fleet, 'a'), await enroll(fleet, 'revoked'), await enroll(fleet, 'b')];
    await fleet.agents.revoke(revoked, 'test', NOW);
    const hostB = { ...rhel, host: { ...rhel.host, hostname: 'b' } };
    const results = await fleet.reports.ingestBatch(
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
    assert.deepEqual([await count(db, 'reports'), await count(db, 'hosts'), await count(db, 'inventory_contents')], [2, 2, 1]);
    assert.equal(await fleet.hosts.get(revoked), undefined);
    assert.equal((await fleet.reports.latestInventory(b))?.host.hostname, 'b');
  });

  test('batches storing the same new contents at once, each in its own order: every report is stored, and each answer is its own report’s', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    // Six contents (the kernel is part of a content), eight batches of six agents each, every
    // batch naming the contents in another order: on PostgreSQL two of them once deadlocked
    // on each other's new content rows, and a report came back PW_ERR_STORE.
    const contents = Array.from({ length: 6 }, (_, k): Inventory => ({ ...rhel, kernel: { ...rhel.kernel, release: `5.14.0-503.${k}.1.el9_5.x86_64` } }));
    const batches = await Promise.all(
      Array.from({ length: 8 }, async (_, b) =>
        Promise.all(
          contents.map(async (_, j) => {
            const inv = contents[(j + b) % contents.length] as Inventory;
            const hostname = `b${b}-h${j}`;
            const inventory = { ...inv, host: { ...inv.host, hostname } };
            return { agentId: await enroll(fleet, hostname), reportId: randomUUID(), hash: inventoryHash(inventory), inventory };
          }),
        ),
      ),
    );
    const answers = await Promise.all(batches.map((items, b) => fleet.reports.ingestBatch(b % 2 === 0 ? items : [...items].reverse(), NOW)));
    batches.forEach((items, b) => {
      const sent = b % 2 === 0 ? items : [...items].reverse();
      assert.deepEqual(
        answers[b]?.map((r) => ('error' in r ? `error ${(r.error as Error).message}` : r.status === 'stored' ? r.contentHash : r.status)),
        sent.map((it) => packagesHash(it.inventory)),
        `batch ${b}`,
      );
    });
    assert.deepEqual([await count(db, 'reports'), await count(db, 'hosts'), await count(db, 'inventory_contents')], [48, 48, 6]);
  });

  test('a report whose write fails (not a refusal) fails alone: the others of the batch are stored', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const [a, bad, b] = [await enroll(fleet, 'a'), await enroll(fleet, 'bad'), await enroll(fleet, 'b')];
    await runAll(db, FAILURES[engine.name].hostNamed('bad'));
    const on = (hostname: string): Inventory => ({ ...rhel, host: { ...rhel.host, hostname } });
    const results = await fleet.reports.ingestBatch(
      [a, bad, b].map((agentId, i) => {
        const inventory = on(['a', 'bad', 'b'][i] as string);
        return { agentId, reportId: randomUUID(), hash: inventoryHash(inventory), inventory };
      }),
      NOW,
    );
    assert.deepEqual(
      results.map((r) => ('error' in r ? 'error' : r.status)),
      ['stored', 'error', 'stored'],
    );
    assert.match(String((results[1] as { error: unknown }).error), /disk says no/);
    assert.deepEqual([await count(db, 'reports'), await count(db, 'hosts'), await count(db, 'inventory_contents')], [2, 2, 1]);
    assert.equal(await fleet.hosts.get(bad), undefined);
    assert.equal((await fleet.agents.get(bad))?.lastInventoryHash, null);
  });

  test('a batch of one refused report answers with its refusal, and stores nothing', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const revoked = await enroll(fleet, 'revoked');
    await fleet.agents.revoke(revoked, 'test', NOW);
    const results = await fleet.reports.ingestBatch([{ agentId: revoked, reportId: randomUUID(), hash: inventoryHash(rhel), inventory: rhel }], NOW);
    assert.deepEqual(
      results.map((r) => ('error' in r ? (r.error as { code?: string }).code : r.status)),
      ['PW_ERR_AGENT_REVOKED'],
    );
    assert.deepEqual([await count(db, 'reports'), await count(db, 'hosts'), await count(db, 'inventory_contents')], [0, 0, 0]);
  });

  test('a failing commit stores nothing of the batch', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const a = await enroll(fleet, 'a');
    // A deferred constraint fails at COMMIT: the whole batch's transaction, not one savepoint.
    await runAll(db, FAILURES[engine.name].commit);
    await assert.rejects(fleet.reports.ingestBatch([{ agentId: a, reportId: randomUUID(), hash: inventoryHash(rhel), inventory: rhel }], NOW), /FOREIGN KEY/i);
    assert.deepEqual([await count(db, 'reports'), await count(db, 'hosts'), await count(db, 'inventory_contents')], [0, 0, 0]);
  });
});

onEachEngine(`Reports keeps each agent's newest ${REPORTS_PER_AGENT} reports and the inventories they name (issue 10, defect 1)`, (engine: Engine) => {
  /** The real RHEL image with one package's version changed per n: a new inventory content each. */
  function nth(n: number): Inventory {
    return { ...rhel, packages: rhel.packages.map((p, i) => (i === 0 ? { ...p, version: `${p.version}.pw${n}` } : p)) };
  }
  async function contentsOf(db: SqlDatabase, agentId: string): Promise<string[]> {
    return (await db.all<{ content_hash: string }>(contentsOfAgent, [agentId])).map((r) => r.content_hash);
  }

  test('an agent sending 20 distinct inventories keeps 8; an inventory another agent still names stays; foreign keys hold', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const agent = await enroll(fleet, 'churner');
    const other = await enroll(fleet, 'neighbour');
    // The neighbour reports the churner's second inventory: that content must survive the churn.
    const shared = nth(1);
    let at = NOW.getTime();
    const stored: string[] = [];
    for (let n = 0; n < 20; n++) {
      const inv = nth(n);
      const r = await fleet.reports.ingest(agent, randomUUID(), inventoryHash(inv), inv, new Date((at += 60_000)));
      assert.equal(r.status, 'stored');
      stored.push(packagesHash(inv));
      if (n === 1) assert.equal((await fleet.reports.ingest(other, randomUUID(), inventoryHash(shared), shared, new Date((at += 60_000)))).status, 'stored');
    }
    assert.equal(await count(db, 'reports'), REPORTS_PER_AGENT + 1);
    assert.deepEqual(new Set(await contentsOf(db, agent)), new Set(stored.slice(-REPORTS_PER_AGENT)));
    // 8 of the churner's, and the one the neighbour names.
    assert.equal(await count(db, 'inventory_contents'), REPORTS_PER_AGENT + 1);
    assert.deepEqual(await contentsOf(db, other), [packagesHash(shared)]);
    assert.deepEqual((await fleet.reports.latestInventory(agent))?.packages, nth(19).packages);
    assert.deepEqual((await fleet.reports.latestInventory(other))?.packages, shared.packages);
    assert.deepEqual(await db.all(foreignKeyProblems), []);
  });

  test('the host report stays even when a later-stored one sorts newer (an air-gapped file dated before it)', async (t) => {
    const { store: fleet, sql: db } = await engine.open(t);
    const agent = await enroll(fleet);
    for (let n = 0; n < REPORTS_PER_AGENT; n++) await fleet.reports.ingest(agent, randomUUID(), inventoryHash(nth(n)), nth(n), new Date(NOW.getTime() + (n + 10) * HOUR));
    // Stored last, but received_at says it is the oldest.
    const last = nth(99);
    await fleet.reports.ingest(agent, randomUUID(), inventoryHash(last), last, NOW);
    assert.equal(await count(db, 'reports'), REPORTS_PER_AGENT);
    assert.deepEqual((await fleet.reports.latestInventory(agent))?.packages, last.packages);
    assert.deepEqual(await db.all(foreignKeyProblems), []);
  });
});
