import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { before, describe, it, type TestContext } from 'node:test';
import { collectInventory } from '../../agent/inventory/inventory.ts';
import { inventoryHash, packagesHash } from '../../shared/inventory-hash.ts';
import type { AgentRefusal } from '../../shared/errors.ts';
import type { Inventory } from '../../shared/protocol.ts';
import { generateKeyPair } from '../../shared/signing.ts';
import { inventoryOf, rhel95Packages } from '../correlate/testkit.ts';
import { openDatabase, type Db } from './db.ts';
import { FleetStore, REPORTS_PER_AGENT, tokenHash } from './fleet.ts';
import { tempDatabase } from './testkit.ts';

const NOW = new Date('2026-11-26T18:00:00.000Z');
const HOUR = 3600_000;

async function tempFleet(t: TestContext): Promise<{ db: Db; fleet: FleetStore; path: string }> {
  const { db, path } = await tempDatabase(t, 'fleet');
  return { db, fleet: new FleetStore(db), path };
}

function count(db: Db, table: string): number {
  return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
}

function enroll(fleet: FleetStore, hostname = 'web-1'): string {
  return fleet.enrollAgent({ publicKey: generateKeyPair().publicKey, hostname, machineId: null, tokenId: null }, NOW);
}

let thisHost: Inventory;
let rhel: Inventory;
before(async () => {
  // This machine's real inventory (dpkg status, kernel, reboot signals) and the real RHEL 9.5 image's rpms.
  thisHost = await collectInventory();
  rhel = inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages());
});

describe('FleetStore enrollment tokens', () => {
  it('stores only the sha256 of the token and audits its creation', async (t) => {
    const { db, fleet, path } = await tempFleet(t);
    const { token, id, expiresAt } = fleet.createEnrollmentToken({ uses: 3, ttlMs: 24 * HOUR, createdBy: 'cli:root', note: 'rack 4' }, NOW);
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(expiresAt, '2026-11-27T18:00:00.000Z');
    const row = db.prepare('SELECT * FROM enrollment_tokens WHERE id = ?').get(id) as Record<string, unknown>;
    assert.equal(row.hash, createHash('sha256').update(token).digest('hex'));
    assert.equal(row.uses_left, 3);
    db.pragma('wal_checkpoint(TRUNCATE)');
    assert.equal((await readFile(path)).includes(Buffer.from(token)), false, 'the token itself is nowhere in the database file');
    const audit = db.prepare('SELECT actor, action, target FROM audit').all();
    assert.deepEqual(audit, [{ actor: 'cli:root', action: 'enrollment-token.create', target: `token:${id}` }]);
  });

  it('never makes a token that starts with a dash (a command line would read it as an option)', async (t) => {
    const { fleet } = await tempFleet(t);
    // One base64url string in 64 starts with '-': among 500, one almost surely would.
    const tokens = Array.from({ length: 500 }, () => fleet.createEnrollmentToken({ uses: 1, ttlMs: HOUR, createdBy: 'test' }, NOW).token);
    assert.deepEqual(tokens.filter((k) => k.startsWith('-')), []);
    assert.ok(tokens.every((k) => /^[A-Za-z0-9_-]{43}$/.test(k)));
  });

  const cases: { name: string; uses: number; createdAt: Date; consumeAt: Date; attempts: number; expect: (string | number)[] }[] = [
    { name: 'uses 2, three attempts: ok, ok, used-up', uses: 2, createdAt: NOW, consumeAt: NOW, attempts: 3, expect: ['ok', 'ok', 'used-up'] },
    { name: 'uses 1, ttl 1h, used 2h later: expired', uses: 1, createdAt: new Date(NOW.getTime() - 2 * HOUR), consumeAt: NOW, attempts: 1, expect: ['expired'] },
    { name: 'uses 1, used exactly at expiry: expired', uses: 1, createdAt: new Date(NOW.getTime() - HOUR), consumeAt: NOW, attempts: 1, expect: ['expired'] },
  ];
  for (const c of cases) {
    it(c.name, async (t) => {
      const { fleet } = await tempFleet(t);
      const { token } = fleet.createEnrollmentToken({ uses: c.uses, ttlMs: HOUR, createdBy: 'test' }, c.createdAt);
      const got = Array.from({ length: c.attempts }, () => {
        const r = fleet.consumeEnrollmentToken(token, c.consumeAt);
        return r.ok ? 'ok' : r.reason;
      });
      assert.deepEqual(got, c.expect);
    });
  }

  it('an unknown token is refused as unknown', async (t) => {
    const { fleet } = await tempFleet(t);
    assert.deepEqual(fleet.consumeEnrollmentToken('x'.repeat(43), NOW), { ok: false, reason: 'unknown' });
  });

  for (const [uses, ttlMs] of [[0, HOUR], [1.5, HOUR], [1, 0], [1, Number.NaN]] as const) {
    it(`uses ${uses}, ttl ${ttlMs} ms is refused`, async (t) => {
      const { fleet } = await tempFleet(t);
      assert.throws(() => fleet.createEnrollmentToken({ uses, ttlMs, createdBy: 'test' }, NOW), RangeError);
    });
  }
});

describe('FleetStore agents', () => {
  it('enrollWithToken: a key enrolled already is refused and does not use up the token', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const { token, id } = fleet.createEnrollmentToken({ uses: 2, ttlMs: HOUR, createdBy: 'test' }, NOW);
    const key = generateKeyPair().publicKey;
    const first = fleet.enrollWithToken(token, { publicKey: key, hostname: 'web-1', machineId: null }, NOW);
    assert.equal(first.ok, true);
    assert.throws(() => fleet.enrollWithToken(token, { publicKey: key, hostname: 'web-1', machineId: null }, NOW), { name: 'AgentRefusedError', code: 'PW_ERR_ALREADY_ENROLLED', reason: 'already-enrolled' });
    assert.equal((db.prepare('SELECT uses_left FROM enrollment_tokens WHERE id = ?').get(id) as { uses_left: number }).uses_left, 1);
    assert.equal(count(db, 'agents'), 1);
  });

  it('enrollWithToken returns the refusal reason and stores no agent', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const r = fleet.enrollWithToken('y'.repeat(43), { publicKey: generateKeyPair().publicKey, hostname: 'web-1', machineId: null }, NOW);
    assert.deepEqual(r, { ok: false, reason: 'unknown' });
    assert.equal(count(db, 'agents'), 0);
  });

  it('agentById, revokeAgent (once, audited), setConnected, tags', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const id = enroll(fleet);
    assert.equal(fleet.agentById(id)?.revokedAt, null);
    fleet.setConnected(id, true, NOW);
    assert.equal(fleet.agentById(id)?.connected, true);
    assert.equal(fleet.revokeAgent(id, 'cli:root', NOW), true);
    assert.equal(fleet.revokeAgent(id, 'cli:root', NOW), false);
    assert.equal(fleet.revokeAgent(randomUUID(), 'cli:root', NOW), false);
    const a = fleet.agentById(id);
    assert.equal(a?.revokedAt, NOW.toISOString());
    assert.equal(a.connected, false);
    assert.equal(fleet.agentById(randomUUID()), undefined);
    assert.equal(fleet.setTags(id, ['prod', 'eu', 'prod'], 'cli:root', NOW), true);
    assert.deepEqual(fleet.agentById(id)?.tags, ['eu', 'prod']);
    const actions = db.prepare('SELECT action FROM audit ORDER BY id').all() as { action: string }[];
    assert.deepEqual(actions.map((r) => r.action), ['agent.enroll', 'agent.revoke', 'agent.tags']);
  });
});

describe('FleetStore.ingestReport', () => {
  it("stores this machine's real inventory once, with the package count dpkg has, and reassembles it", async (t) => {
    const { db, fleet } = await tempFleet(t);
    const id = enroll(fleet, thisHost.host.hostname);
    const hash = inventoryHash(thisHost);
    const r = fleet.ingestReport(id, randomUUID(), hash, thisHost, NOW);
    assert.deepEqual(r, { status: 'stored', contentHash: packagesHash(thisHost), newContent: true });
    const host = fleet.host(id);
    assert.equal(host?.packageCount, thisHost.packages.length);
    assert.equal(host.hostname, thisHost.host.hostname);
    assert.equal(host.kernelRelease, thisHost.kernel.release);
    assert.equal(host.rebootRequired, thisHost.reboot.required);
    assert.deepEqual(fleet.latestInventory(id), thisHost);
    assert.equal(fleet.agentById(id)?.lastInventoryHash, hash);
    assert.equal(count(db, 'inventory_contents'), 1);
  });

  it('two agents with the same packages share one content row; each has its report', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const a = enroll(fleet, 'a');
    const b = enroll(fleet, 'b');
    const first = fleet.ingestReport(a, randomUUID(), inventoryHash(rhel), rhel, NOW);
    const otherHost = { ...rhel, host: { ...rhel.host, hostname: 'b' } };
    const second = fleet.ingestReport(b, randomUUID(), inventoryHash(otherHost), otherHost, NOW);
    assert.equal(first.status === 'stored' && first.newContent, true);
    assert.equal(second.status === 'stored' && !second.newContent, true);
    assert.equal(count(db, 'inventory_contents'), 1);
    assert.equal(count(db, 'reports'), 2);
    assert.equal(fleet.latestInventory(b)?.host.hostname, 'b');
  });

  it('unchanged (null inventory with the last hash), full inventory with the last hash, and a re-sent id', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const id = enroll(fleet);
    const hash = inventoryHash(rhel);
    const reportId = randomUUID();
    assert.equal(fleet.ingestReport(id, reportId, hash, rhel, NOW).status, 'stored');
    const later = new Date(NOW.getTime() + HOUR);
    assert.equal(fleet.ingestReport(id, randomUUID(), hash, null, later).status, 'unchanged');
    assert.equal(fleet.agentById(id)?.lastSeen, later.toISOString());
    assert.equal(fleet.ingestReport(id, randomUUID(), hash, { ...rhel, collectedAt: later.toISOString() }, later).status, 'unchanged');
    assert.equal(fleet.ingestReport(id, reportId, hash, rhel, later).status, 'duplicate');
    assert.equal(count(db, 'reports'), 1);
  });

  it("a report id is its agent's own: another agent's report under the same id is stored as its own, each a duplicate of itself only (issue 10)", async (t) => {
    const { db, fleet } = await tempFleet(t);
    const a = enroll(fleet, 'a');
    const b = enroll(fleet, 'b');
    const reportId = randomUUID();
    assert.equal(fleet.ingestReport(a, reportId, inventoryHash(rhel), rhel, NOW).status, 'stored');
    assert.equal(fleet.ingestReport(b, reportId, inventoryHash(rhel), rhel, NOW).status, 'stored');
    assert.equal(fleet.ingestReport(a, reportId, inventoryHash(rhel), rhel, NOW).status, 'duplicate');
    assert.equal(fleet.ingestReport(b, reportId, inventoryHash(rhel), rhel, NOW).status, 'duplicate');
    assert.equal(count(db, 'reports'), 2);
    assert.deepEqual([fleet.host(a)?.lastReportId, fleet.host(b)?.lastReportId], [reportId, reportId]);
    assert.equal(fleet.listHosts({}).hosts.length, 2, 'one row per host, not one per report sharing the id');
  });

  const refusals: { name: string; code: string; reason: AgentRefusal; run: (f: FleetStore, id: string, other: string) => void }[] = [
    { name: 'null inventory before any was stored', code: 'PW_ERR_INVENTORY_UNKNOWN', reason: 'inventory-unknown', run: (f, _id, other) => f.ingestReport(other, randomUUID(), 'a'.repeat(64), null, NOW) },
    { name: 'null inventory with a hash that is not the last one', code: 'PW_ERR_INVENTORY_UNKNOWN', reason: 'inventory-unknown', run: (f, id) => f.ingestReport(id, randomUUID(), 'b'.repeat(64), null, NOW) },
    { name: 'an agent that is not enrolled', code: 'PW_ERR_UNAUTHENTICATED', reason: 'not-enrolled', run: (f) => f.ingestReport(randomUUID(), randomUUID(), inventoryHash(rhel), rhel, NOW) },
    {
      name: 'a revoked agent',
      code: 'PW_ERR_AGENT_REVOKED',
      reason: 'revoked',
      run: (f, _id, other) => {
        f.revokeAgent(other, 'test', NOW);
        f.ingestReport(other, randomUUID(), inventoryHash(rhel), rhel, NOW);
      },
    },
  ];
  const FIRST_REPORT = randomUUID();
  for (const c of refusals) {
    it(`refuses ${c.name} with ${c.code} and stores nothing`, async (t) => {
      const { db, fleet } = await tempFleet(t);
      const id = enroll(fleet, 'a');
      const other = enroll(fleet, 'b');
      fleet.ingestReport(id, FIRST_REPORT, inventoryHash(rhel), rhel, NOW);
      const before = { reports: count(db, 'reports'), contents: count(db, 'inventory_contents'), hosts: count(db, 'hosts'), hashB: fleet.agentById(other)?.lastInventoryHash };
      assert.throws(() => {
        c.run(fleet, id, other);
      }, { name: 'AgentRefusedError', code: c.code, reason: c.reason });
      assert.deepEqual(
        { reports: count(db, 'reports'), contents: count(db, 'inventory_contents'), hosts: count(db, 'hosts'), hashB: fleet.agentById(other)?.lastInventoryHash },
        before,
      );
    });
  }

  // The unchanged fast path keeps each agent's revocation and last hash in memory: every
  // change to them, from this connection or another process's, must be seen by the next report.
  const seen: { name: string; change: (f: FleetStore, other: FleetStore, id: string, db: Db) => void; then: { hash: 'old' | 'new'; status?: string; code?: string } }[] = [
    { name: 'revoked through this store', change: (f, _o, id) => f.revokeAgent(id, 'test', NOW), then: { hash: 'old', code: 'PW_ERR_AGENT_REVOKED' } },
    { name: 'revoked by another process on the same file (a CLI agents revoke --db)', change: (_f, o, id) => o.revokeAgent(id, 'cli', NOW), then: { hash: 'old', code: 'PW_ERR_AGENT_REVOKED' } },
    { name: 'a new inventory stored: the old hash is refused', change: (f, _o, id) => f.ingestReport(id, randomUUID(), inventoryHash(thisHost), thisHost, NOW), then: { hash: 'old', code: 'PW_ERR_INVENTORY_UNKNOWN' } },
    { name: 'a new inventory stored: the new hash is unchanged', change: (f, _o, id) => f.ingestReport(id, randomUUID(), inventoryHash(thisHost), thisHost, NOW), then: { hash: 'new', status: 'unchanged' } },
    {
      name: 'a new inventory stored by another process: the old hash is refused',
      change: (_f, o, id) => o.ingestReport(id, randomUUID(), inventoryHash(thisHost), thisHost, NOW),
      then: { hash: 'old', code: 'PW_ERR_INVENTORY_UNKNOWN' },
    },
    {
      name: 'a new inventory whose transaction rolled back: the old hash is still unchanged',
      change: (f, _o, id, db) => {
        db.exec("CREATE TEMP TRIGGER refuse_hosts BEFORE UPDATE ON hosts BEGIN SELECT RAISE(ABORT, 'disk says no'); END");
        assert.throws(() => f.ingestReport(id, randomUUID(), inventoryHash(thisHost), thisHost, NOW), /disk says no/);
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
      const otherProcess = new FleetStore(otherDb);
      const id = enroll(fleet);
      const old = inventoryHash(rhel);
      assert.equal(fleet.ingestReport(id, randomUUID(), old, rhel, NOW).status, 'stored');
      // Twice, so the agent's state is held in memory before the change.
      assert.equal(fleet.ingestReport(id, randomUUID(), old, null, NOW).status, 'unchanged');
      assert.equal(fleet.ingestReport(id, randomUUID(), old, null, NOW).status, 'unchanged');
      c.change(fleet, otherProcess, id, db);
      const hash = c.then.hash === 'old' ? old : inventoryHash(thisHost);
      if (c.then.code !== undefined) assert.throws(() => fleet.ingestReport(id, randomUUID(), hash, null, NOW), { code: c.then.code });
      else assert.equal(fleet.ingestReport(id, randomUUID(), hash, null, NOW).status, c.then.status);
    });
  }

  it('a failure inside the transaction leaves no report, no content and no host behind', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const id = enroll(fleet);
    // A real SQLite failure at the last write of the transaction: the host upsert.
    db.exec("CREATE TRIGGER fail_hosts BEFORE INSERT ON hosts BEGIN SELECT RAISE(ABORT, 'disk says no'); END");
    assert.throws(() => fleet.ingestReport(id, randomUUID(), inventoryHash(rhel), rhel, NOW), /disk says no/);
    assert.deepEqual([count(db, 'reports'), count(db, 'inventory_contents'), count(db, 'hosts')], [0, 0, 0]);
    assert.equal(fleet.agentById(id)?.lastInventoryHash, null);
  });
});

describe('FleetStore.ingestBatch (one commit for the reports of one event-loop turn)', () => {
  it('each report in its own savepoint: a refused one rolls back alone, the others are stored', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const [a, revoked, b] = [enroll(fleet, 'a'), enroll(fleet, 'revoked'), enroll(fleet, 'b')];
    fleet.revokeAgent(revoked, 'test', NOW);
    const hostB = { ...rhel, host: { ...rhel.host, hostname: 'b' } };
    const results = fleet.ingestBatch(
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
    assert.equal(fleet.host(revoked), undefined);
    assert.equal(fleet.latestInventory(b)?.host.hostname, 'b');
  });

  it('a failing commit stores nothing of the batch', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const a = enroll(fleet, 'a');
    // A deferred constraint fails at COMMIT: the whole batch's transaction, not one savepoint.
    db.exec('CREATE TABLE commit_gate (x INTEGER REFERENCES agents (id) DEFERRABLE INITIALLY DEFERRED)');
    db.exec("CREATE TRIGGER gate AFTER INSERT ON reports BEGIN INSERT INTO commit_gate VALUES ('no such agent'); END");
    assert.throws(() => fleet.ingestBatch([{ agentId: a, reportId: randomUUID(), hash: inventoryHash(rhel), inventory: rhel }], NOW), /FOREIGN KEY/);
    assert.deepEqual([count(db, 'reports'), count(db, 'hosts'), count(db, 'inventory_contents')], [0, 0, 0]);
  });
});

describe('FleetStore.listHosts', () => {
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
      fleet.ingestReport(id, randomUUID(), inventoryHash(inv), inv, new Date(NOW.getTime() + i * 1000));
      if (i % 4 === 0) fleet.setTags(id, ['prod'], 'test', NOW);
      ids.push(id);
    }
    return { db, fleet, ids };
  }

  it('pages of 7 over 25 hosts (hostnames repeat) give each host once, in (hostname, id) order', async (t) => {
    const { fleet, ids } = await fleetOf(t, 25);
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    for (;;) {
      const page = fleet.listHosts({ limit: 7, cursor });
      pages++;
      seen.push(...page.hosts.map((h) => `${h.hostname} ${h.agentId}`));
      if (page.nextCursor === null) break;
      cursor = page.nextCursor;
    }
    assert.equal(pages, 4);
    assert.equal(seen.length, 25);
    assert.deepEqual(seen, [...seen].sort());
    assert.deepEqual(new Set(seen.map((s) => s.split(' ')[1])), new Set(ids));
  });

  const filters: { name: string; q: Parameters<FleetStore['listHosts']>[0]; expect: (i: number) => boolean }[] = [
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
      const got = fleet.listHosts({ ...f.q, limit: 1000 }).hosts.map((h) => h.agentId).sort();
      assert.deepEqual(got, ids.filter((_, i) => f.expect(i)).sort());
    });
  }

  for (const cursor of ['not-base64-json', Buffer.from('{"a":1}').toString('base64url'), Buffer.from('[1,2]').toString('base64url')]) {
    it(`cursor ${cursor} is refused with PW_ERR_MALFORMED_INPUT`, async (t) => {
      const { fleet } = await tempFleet(t);
      assert.throws(() => fleet.listHosts({ cursor }), { code: 'PW_ERR_MALFORMED_INPUT' });
    });
  }

  it('setFindingCounts shows in the host summary', async (t) => {
    const { fleet, ids } = await fleetOf(t, 1);
    fleet.setFindingCounts(ids[0]!, 12, 3);
    assert.deepEqual([fleet.host(ids[0]!)?.openFindings, fleet.host(ids[0]!)?.overdueFindings], [12, 3]);
  });
});

describe('tokenHash', () => {
  it('is the hex sha256 of the token', () => {
    assert.equal(tokenHash('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

describe(`FleetStore keeps each agent's newest ${REPORTS_PER_AGENT} reports and the inventories they name (issue 10, defect 1)`, () => {
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
      const r = fleet.ingestReport(agent, randomUUID(), inventoryHash(inv), inv, new Date((at += 60_000)));
      assert.equal(r.status, 'stored');
      stored.push(packagesHash(inv));
      if (n === 1) assert.equal(fleet.ingestReport(other, randomUUID(), inventoryHash(shared), shared, new Date((at += 60_000))).status, 'stored');
    }
    assert.equal(count(db, 'reports'), REPORTS_PER_AGENT + 1);
    assert.deepEqual(new Set(contentsOf(db, agent)), new Set(stored.slice(-REPORTS_PER_AGENT)));
    // 8 of the churner's, and the one the neighbour names.
    assert.equal(count(db, 'inventory_contents'), REPORTS_PER_AGENT + 1);
    assert.deepEqual(contentsOf(db, other), [packagesHash(shared)]);
    assert.deepEqual(fleet.latestInventory(agent)?.packages, nth(19).packages);
    assert.deepEqual(fleet.latestInventory(other)?.packages, shared.packages);
    assert.deepEqual(db.pragma('foreign_key_check'), []);
  });

  it('the host report stays even when a later-stored one sorts newer (an air-gapped file dated before it)', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const agent = enroll(fleet);
    for (let n = 0; n < REPORTS_PER_AGENT; n++) fleet.ingestReport(agent, randomUUID(), inventoryHash(nth(n)), nth(n), new Date(NOW.getTime() + (n + 10) * HOUR));
    // Stored last, but received_at says it is the oldest.
    const last = nth(99);
    fleet.ingestReport(agent, randomUUID(), inventoryHash(last), last, NOW);
    assert.equal(count(db, 'reports'), REPORTS_PER_AGENT);
    assert.deepEqual(fleet.latestInventory(agent)?.packages, last.packages);
    assert.deepEqual(db.pragma('foreign_key_check'), []);
  });
});
