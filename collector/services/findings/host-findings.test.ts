import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, it, type TestContext } from 'node:test';
import { inventoryHash, packagesHash } from '../../../shared/inventory-hash.ts';
import type { Findings, Inventory } from '../../../shared/protocol.ts';
import { generateKeyPair } from '../../../shared/signing.ts';
import { dataPath } from '../../../shared/testing/data.ts';
import { Correlator } from '../../domain/correlate/correlator.ts';
import type { FindingContext } from '../../domain/correlate/findings.ts';
import { DEFAULT_POLICY } from '../../domain/correlate/policy.ts';
import { inventoryOf, loadOsv, rhel95Packages } from '../../../shared/testing/correlate-fixtures.ts';
import type { Advisory } from '../../domain/feeds/types.ts';
import { createLogger } from '../../logger.ts';
import type { Db } from '../../store/db.ts';
import { type AsyncStore, type Store, storeOn } from '../../store/store.ts';
import { asyncAdvisories, tempDatabase } from '../../../shared/testing/store-fixtures.ts';
import { type FindingsStore, HostFindings } from './host-findings.ts';

const NOW = new Date('2026-11-26T18:00:00.000Z');
const ALMA9 = { source: 'osv', kind: 'osv', location: dataPath('osv', 'almalinux9.osv.jsonl.gz') };

/** A correlator that fails for the hosts named: what a bug or a corrupt record would do to one host. */
class FailingFor extends Correlator {
  constructor(readonly hostnames: ReadonlySet<string>) {
    super();
  }
  override findings(inv: Inventory, ctx: FindingContext & { hash?: string }): Findings {
    if (this.hostnames.has(inv.host.hostname)) throw new Error(`correlating ${inv.host.hostname} failed`);
    return super.findings(inv, ctx);
  }
}

let alma: Advisory[];
let rhel: Inventory;
before(async () => {
  alma = await loadOsv(ALMA9.location);
  rhel = inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages());
});

async function fleetWithHosts(t: TestContext, hostnames: readonly string[]): Promise<{ db: Db; fleet: Store; agents: Map<string, { id: string; inventory: Inventory; hash: string }> }> {
  const { db } = await tempDatabase(t, 'host-findings');
  await asyncAdvisories(db).importAdvisories(ALMA9, alma, NOW);
  const fleet = storeOn(db);
  const agents = new Map<string, { id: string; inventory: Inventory; hash: string }>();
  for (const hostname of hostnames) {
    const id = await fleet.async.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname, machineId: null, tokenId: null }, NOW);
    const inventory: Inventory = { ...rhel, host: { ...rhel.host, hostname } };
    const hash = inventoryHash(inventory);
    assert.equal((await fleet.async.reports.ingest(id, randomUUID(), hash, inventory, NOW)).status, 'stored');
    agents.set(hostname, { id, inventory, hash });
  }
  return { db, fleet, agents };
}

/** HostFindings over the fixture's store, its advisories loaded, at NOW. */
async function loadedFindings(store: Store, correlator?: Correlator): Promise<HostFindings> {
  const hf = new HostFindings({ store: store.async, policy: DEFAULT_POLICY, logger: createLogger({ level: 'silent' }), now: () => NOW, ...(correlator === undefined ? {} : { correlator }) });
  await hf.load();
  return hf;
}

/** The host's history as the API reads it: its own rows with its content's timeline laid over them. */
async function historyRows(store: Store, agentId: string): Promise<number> {
  return (await store.async.history.history(agentId)).size;
}

/** The findings a host counts as open: the statuses its openFindings column counts. */
function openCount(expected: Findings): number {
  return expected.findings.filter((f) => f.status === 'open' || f.status === 'unfixed' || f.status === 'fixed-pending-reboot').length;
}

/** Every host has its open count and its whole history from its correlation. */
async function assertEveryHostJudged(fleet: Store, agents: ReadonlyMap<string, { id: string }>, open: number, expected: Findings): Promise<void> {
  for (const [hostname, a] of agents) {
    assert.equal((await fleet.async.hosts.get(a.id))?.openFindings, open, hostname);
    assert.equal(await historyRows(fleet, a.id), expected.findings.length, hostname);
  }
}

function contentRows(db: Db): number {
  return db.prepare<[], number>('SELECT count(*) FROM content_findings').pluck().get() ?? 0;
}

describe('HostFindings: queued hosts are correlated in slices, one commit per slice, a savepoint per host', () => {
  const cases: { name: string; hosts: number; failing: string[] }[] = [
    { name: 'every host of a burst gets its counts and history', hosts: 40, failing: [] },
    { name: 'a host whose correlation fails keeps its previous findings; the others of its slice are stored', hosts: 5, failing: ['host-2'] },
    { name: 'two failing hosts in one slice: only they are left out', hosts: 6, failing: ['host-0', 'host-5'] },
  ];
  for (const c of cases) {
    it(c.name, async (t) => {
      const names = Array.from({ length: c.hosts }, (_, i) => `host-${i}`);
      const { db, fleet, agents } = await fleetWithHosts(t, names);
      const hf = await loadedFindings(fleet, new FailingFor(new Set(c.failing)));
      const expected = hf.correlator.findings(rhel, { policy: DEFAULT_POLICY, now: NOW, kev: new Map() });
      const open = openCount(expected);
      assert.ok(open > 0, 'the real RHEL 9.5 image has open AlmaLinux findings');
      for (const a of agents.values()) hf.schedule(a.id, a.inventory, packagesHash(a.inventory));
      await hf.drained();
      assert.equal(hf.queued, 0);
      assert.deepEqual(hf.stats, { correlated: c.hosts - c.failing.length, failed: c.failing.length, fannedOut: 0 });
      for (const [hostname, a] of agents) {
        const host = await fleet.async.hosts.get(a.id);
        assert.ok(host);
        if (c.failing.includes(hostname)) {
          assert.equal(host.openFindings, 0, `${hostname}: no counts from a failed correlation`);
          assert.equal(await historyRows(fleet, a.id), 0, `${hostname}: no history from a failed correlation`);
        } else {
          assert.equal(host.openFindings, open, hostname);
          assert.equal(await historyRows(fleet, a.id), expected.findings.length, hostname);
        }
      }
      assert.equal(db.inTransaction, false, 'no transaction is left open');
    });
  }

  it('a write that fails after the history of the host was written rolls back that host alone (its savepoint)', async (t) => {
    const { db, fleet, agents } = await fleetWithHosts(t, ['web-1', 'web-2', 'web-3']);
    const victim = agents.get('web-2');
    assert.ok(victim);
    // A real SQLite failure at the last write of web-2's correlation: its counts.
    db.exec(`CREATE TRIGGER refuse_counts BEFORE UPDATE OF open_findings ON hosts WHEN NEW.agent_id = '${victim.id}' BEGIN SELECT RAISE(ABORT, 'injected'); END`);
    const hf = await loadedFindings(fleet);
    for (const a of agents.values()) hf.schedule(a.id, a.inventory, packagesHash(a.inventory));
    await hf.drained();
    assert.deepEqual(hf.stats, { correlated: 2, failed: 1, fannedOut: 0 });
    assert.equal(await historyRows(fleet, victim.id), 0, 'the history written before the failure was rolled back');
    for (const name of ['web-1', 'web-3']) {
      const a = agents.get(name);
      assert.ok(a);
      assert.ok(await historyRows(fleet, a.id) > 0, name);
      assert.ok(((await fleet.async.hosts.get(a.id))?.openFindings ?? 0) > 0, name);
    }
  });

  it('correlating a host again writes only the history rows that changed: its content once, its own rows when it moves to another content', async (t) => {
    const { db, fleet, agents } = await fleetWithHosts(t, ['web-1']);
    const hf = await loadedFindings(fleet);
    const a = agents.get('web-1');
    assert.ok(a);
    const changes = (): number => (db.prepare('SELECT total_changes() AS n').get() as { n: number }).n;
    const correlate = async (inventory: Inventory): Promise<number> => {
      const before = changes();
      hf.schedule(a.id, inventory, packagesHash(inventory));
      await hf.drained();
      return changes() - before;
    };
    // The first correlation writes the content's timeline, which content the host is laid over, and its counts.
    assert.equal(await historyRows(fleet, a.id), 0);
    const first = await correlate(a.inventory);
    assert.ok(await historyRows(fleet, a.id) > 0);
    assert.equal(contentRows(db), await historyRows(fleet, a.id));
    // Each row of the timeline and its finding's text, which content the host is laid over, its counts.
    assert.equal(first, 2 * contentRows(db) + 2);
    // Nothing changed: only the host's counts are written.
    assert.equal(await correlate(a.inventory), 1);
    // A new advisory for one installed package: its row, and the counts.
    const bash = a.inventory.packages.find((p) => p.name === 'bash');
    assert.ok(bash);
    await asyncAdvisories(db).importAdvisories(
      { source: 'osv-extra', kind: 'osv', location: null },
      [
        {
          source: 'osv',
          id: 'ALSA-2099:0001',
          aliases: [],
          summary: 'test',
          severity: 'high',
          published: '2026-11-20T00:00:00.000Z',
          modified: '2026-11-20T00:00:00.000Z',
          withdrawn: null,
          affected: [{ ecosystem: 'AlmaLinux:9', package: 'bash', ranges: [{ introduced: '0', fixed: `${bash.version}.1`, lastAffected: null }], versions: [], notAffected: false }],
        },
      ],
      NOW,
    );
    await hf.load();
    assert.equal(await correlate(a.inventory), 3, 'the new row, its text, the counts');
    // Every package gone (patched away): a new content, so the host's history becomes its own
    // rows, each open finding resolved once (one row each), then left alone.
    const patched: Inventory = { ...a.inventory, packages: [] };
    const rows = await historyRows(fleet, a.id);
    assert.equal(await correlate(patched), rows + 2);
    assert.equal(await correlate(patched), 1);
    assert.equal((await fleet.async.hosts.get(a.id))?.openFindings, 0);
    assert.ok([...(await fleet.async.history.history(a.id)).values()].every((h) => h.resolvedAt !== null), 'every finding resolved');
  });

  it('a host is correlated once with its newest inventory when it is queued twice', async (t) => {
    const { fleet, agents } = await fleetWithHosts(t, ['web-1']);
    const hf = await loadedFindings(fleet);
    const a = agents.get('web-1');
    assert.ok(a);
    // The newer inventory has no packages left that any advisory names.
    const patched: Inventory = { ...a.inventory, packages: [] };
    hf.schedule(a.id, a.inventory, packagesHash(a.inventory));
    hf.schedule(a.id, patched, packagesHash(patched));
    await hf.drained();
    assert.equal(hf.stats.correlated, 1);
    assert.equal((await fleet.async.hosts.get(a.id))?.openFindings, 0);
  });
});

/** The parts HostFindings reads and writes, as the store has them; the doubles below replace its transactions. */
function findingsParts(store: Store): Omit<FindingsStore, 'transaction'> {
  const a = store.async;
  return { advisories: a.advisories, advisoryChanges: a.advisoryChanges, epss: a.epss, history: a.history, exceptions: a.exceptions, reports: a.reports, hosts: a.hosts };
}

/**
 * The store's transactions as PostgreSQL may run them: a transaction that loses to a
 * concurrent one is run again from the start (POSTGRES.md). Here every transaction's
 * function runs once in a savepoint that is then rolled back, and once more for real.
 */
function retrying(store: Store): FindingsStore {
  const a = store.async;
  const retry = new Error('serialization failure (simulated)');
  return {
    ...findingsParts(store),
    transaction: async <T>(fn: (tx: AsyncStore) => Promise<T>): Promise<T> =>
      a.transaction(async (tx) => {
        await tx
          .transaction(async (first) => {
            await fn(first);
            throw retry;
          })
          .catch((err: unknown) => {
            if (err !== retry) throw err;
          });
        return fn(tx);
      }),
  };
}

describe('HostFindings: a slice whose transaction runs twice is taken in once', () => {
  it('correlated hosts and fanned-out groups are counted, judged and written once, and the queues drain', async (t) => {
    const { db, fleet, agents } = await fleetWithHosts(t, ['web-1', 'web-2', 'web-3', 'web-4']);
    const hf = new HostFindings({ store: retrying(fleet), policy: DEFAULT_POLICY, logger: createLogger({ level: 'silent' }), now: () => NOW });
    await hf.load();
    const expected = hf.correlator.findings(rhel, { policy: DEFAULT_POLICY, now: NOW, kev: new Map() });
    const open = openCount(expected);
    // By content first, as at start: one group of four hosts.
    await hf.scheduleAll([...agents.values()].map((a) => a.id));
    await hf.drained();
    assert.deepEqual(hf.stats, { correlated: 0, failed: 0, fannedOut: 4 });
    assert.equal(hf.queued, 0);
    // Then each host whole, as after its report.
    for (const a of agents.values()) hf.schedule(a.id, a.inventory, packagesHash(a.inventory));
    await hf.drained();
    assert.deepEqual(hf.stats, { correlated: 4, failed: 0, fannedOut: 4 });
    assert.equal(hf.queued, 0);
    await assertEveryHostJudged(fleet, agents, open, expected);
    assert.equal(contentRows(db), expected.findings.length, 'the content’s timeline written once');
    assert.equal(db.inTransaction, false, 'no transaction is left open');
  });
});

/**
 * The store's transactions with the first `failures` commits failing, as when the database
 * goes away after a slice's statements ran: each such transaction runs and is rolled back.
 */
function commitsFailing(store: Store, failures: number): FindingsStore & { failed: () => number } {
  const a = store.async;
  let failed = 0;
  const lost = new Error('Connection terminated unexpectedly (simulated)');
  return {
    ...findingsParts(store),
    failed: () => failed,
    transaction: async <T>(fn: (tx: AsyncStore) => Promise<T>): Promise<T> =>
      a.transaction(async (tx) => {
        const result = await fn(tx);
        if (failed < failures) {
          failed++;
          throw lost;
        }
        return result;
      }),
  };
}

describe('HostFindings: a slice whose commit failed runs again after a wait', () => {
  it('every host gets its findings once the database answers again; nothing is counted twice', async (t) => {
    const { db, fleet, agents } = await fleetWithHosts(t, ['web-1', 'web-2', 'web-3']);
    const store = commitsFailing(fleet, 3);
    const hf = new HostFindings({ store, policy: DEFAULT_POLICY, logger: createLogger({ level: 'silent' }), now: () => NOW, retryMs: 5 });
    await hf.load();
    const expected = hf.correlator.findings(rhel, { policy: DEFAULT_POLICY, now: NOW, kev: new Map() });
    const open = openCount(expected);
    for (const a of agents.values()) hf.schedule(a.id, a.inventory, packagesHash(a.inventory));
    await hf.drained();
    assert.equal(store.failed(), 3, 'three commits failed before one went through');
    assert.deepEqual(hf.stats, { correlated: 3, failed: 3, fannedOut: 0 });
    assert.equal(hf.queued, 0);
    await assertEveryHostJudged(fleet, agents, open, expected);
    assert.equal(contentRows(db), expected.findings.length, 'the content’s timeline written once');
  });

  it('a feed change’s fan-out is run again too', async (t) => {
    const { fleet, agents } = await fleetWithHosts(t, ['web-1', 'web-2']);
    const store = commitsFailing(fleet, 2);
    const hf = new HostFindings({ store, policy: DEFAULT_POLICY, logger: createLogger({ level: 'silent' }), now: () => NOW, retryMs: 5 });
    await hf.load();
    await hf.scheduleAll([...agents.values()].map((a) => a.id));
    await hf.drained();
    assert.equal(store.failed(), 2);
    assert.deepEqual(hf.stats, { correlated: 0, failed: 2, fannedOut: 2 });
    for (const [hostname, a] of agents) assert.ok(((await fleet.async.hosts.get(a.id))?.openFindings ?? 0) > 0, hostname);
  });

  it('stop() while it waits to run again ends the wait', async (t) => {
    const { fleet, agents } = await fleetWithHosts(t, ['web-1']);
    const store = commitsFailing(fleet, 1);
    const hf = new HostFindings({ store, policy: DEFAULT_POLICY, logger: createLogger({ level: 'silent' }), now: () => NOW, retryMs: 60_000 });
    await hf.load();
    for (const a of agents.values()) hf.schedule(a.id, a.inventory, packagesHash(a.inventory));
    while (store.failed() === 0) await new Promise((r) => setTimeout(r, 5));
    const drained = hf.drained();
    await hf.stop();
    await drained;
    assert.equal(hf.stats.correlated, 0, 'the minute-long wait was not sat out');
  });
});

describe('finding history over inventory contents: first-seen and resolved are the host’s own', () => {
  const T0 = new Date('2026-11-20T10:00:00.000Z');
  const T1 = new Date('2026-11-21T10:00:00.000Z');
  const T2 = new Date('2026-11-22T10:00:00.000Z');

  it('a host that moves to another content keeps the first-seen of what it still has, starts the clock of what is new to it, resolves what it lost; a host joining a content later starts from its join', async (t) => {
    const { db, fleet, agents } = await fleetWithHosts(t, ['web-1', 'web-2']);
    let clock = T0;
    const hf = new HostFindings({ store: fleet.async, policy: DEFAULT_POLICY, logger: createLogger({ level: 'silent' }), now: () => clock });
    await hf.load();
    const web1 = agents.get('web-1');
    const web2 = agents.get('web-2');
    assert.ok(web1 !== undefined && web2 !== undefined);
    const correlate = async (id: string, inventory: Inventory): Promise<Map<string, { firstSeen: string; resolvedAt: string | null; status: string }>> => {
      hf.schedule(id, inventory, packagesHash(inventory));
      await hf.drained();
      const doc = await hf.findings(id, inventory, packagesHash(inventory));
      assert.ok(doc !== undefined);
      return new Map(doc.findings.map((f) => [`${f.advisory} ${f.package}`, { firstSeen: f.firstSeen, resolvedAt: f.resolvedAt, status: f.status }]));
    };
    // web-1 at T0 on the image; web-2 not yet correlated.
    const base = await correlate(web1.id, web1.inventory);
    const openssl = [...base.keys()].filter((k) => k.endsWith(' openssl-libs'));
    assert.ok(openssl.length > 0, 'the image has openssl-libs findings');

    // T1: web-1 drops openssl-libs and gains an old kernel (a new content).
    clock = T1;
    const moved: Inventory = { ...web1.inventory, packages: web1.inventory.packages.filter((p) => p.name !== 'openssl-libs') };
    const after = await correlate(web1.id, moved);
    for (const k of openssl) assert.deepEqual(after.get(k), { firstSeen: T0.toISOString(), resolvedAt: T1.toISOString(), status: 'resolved' }, `${k}: resolved at the move`);
    const kept = [...base].filter(([k]) => !openssl.includes(k));
    assert.ok(kept.length > 0);
    for (const [k] of kept) assert.equal(after.get(k)?.firstSeen, T0.toISOString(), `${k}: still open since T0`);

    // T2: web-2 reports the moved content for the first time: everything is new to it, from T2,
    // though the content had those findings since T1 (web-1's).
    clock = T2;
    const joined = await correlate(web2.id, { ...moved, host: { ...moved.host, hostname: 'web-2' } });
    for (const [k, v] of joined) if (v.status !== 'resolved') assert.equal(v.firstSeen, T2.toISOString(), `${k}: web-2's clock starts at T2`);
    assert.ok(![...joined.values()].some((v) => v.status === 'resolved'), 'web-2 never had openssl-libs: nothing of web-1’s resolved history is web-2’s');
    // web-1 again on the same content: nothing moves.
    const again = await correlate(web1.id, moved);
    for (const [k] of kept) assert.equal(again.get(k)?.firstSeen, T0.toISOString(), k);
    for (const k of openssl) assert.equal(again.get(k)?.resolvedAt, T1.toISOString(), k);

    // T3: a feed change withdraws one advisory the content has: resolved for both, at T3.
    const T3 = new Date('2026-11-23T10:00:00.000Z');
    clock = T3;
    const [gone] = kept[0]?.[0].split(' ') ?? [];
    const withdrawn = alma.find((x) => x.id === gone);
    assert.ok(withdrawn !== undefined);
    await asyncAdvisories(db).importAdvisories(ALMA9, [{ ...withdrawn, modified: T3.toISOString(), withdrawn: T3.toISOString() }], T3);
    await hf.followStore();
    await hf.drained();
    const resolvedFor = async (id: string, inv: Inventory) => (await hf.findings(id, inv, packagesHash(inv)))?.findings.filter((f) => f.advisory === gone) ?? [];
    for (const f of await resolvedFor(web1.id, moved)) assert.deepEqual([f.status, f.firstSeen, f.resolvedAt], ['resolved', T0.toISOString(), T3.toISOString()]);
    assert.ok((await resolvedFor(web1.id, moved)).length > 0);
    // T4: web-3 joins the content: the episode that ended before it came is not its history.
    const T4 = new Date('2026-11-24T10:00:00.000Z');
    clock = T4;
    const web3 = await fleet.async.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: 'web-3', machineId: null, tokenId: null }, T4);
    const inv3: Inventory = { ...moved, host: { ...moved.host, hostname: 'web-3' } };
    await fleet.async.reports.ingest(web3, randomUUID(), inventoryHash(inv3), inv3, T4);
    await correlate(web3, inv3);
    assert.deepEqual(await resolvedFor(web3, inv3), [], 'web-3 never had the withdrawn advisory');
  });

  it('a content’s timeline goes when its content is pruned and no host is laid over it', async (t) => {
    const { db, fleet, agents } = await fleetWithHosts(t, ['web-1']);
    const hf = await loadedFindings(fleet);
    const a = agents.get('web-1');
    assert.ok(a !== undefined);
    const timelines = () => new Set(db.prepare<[], string>('SELECT DISTINCT content FROM content_findings').pluck().all());
    const hashes: string[] = [];
    // Ten reports of ten contents (one package fewer each); each agent keeps its newest 8 reports.
    for (let i = 0; i < 10; i++) {
      const inv: Inventory = { ...a.inventory, packages: a.inventory.packages.filter((_, j) => j !== i) };
      await fleet.async.reports.ingest(a.id, randomUUID(), inventoryHash(inv), inv, NOW);
      hashes.push(packagesHash(inv));
      hf.schedule(a.id, inv, packagesHash(inv));
      await hf.drained();
    }
    const kept = timelines();
    assert.ok(!kept.has(hashes[0] as string) && !kept.has(hashes[1] as string), 'the two pruned contents’ timelines are gone');
    for (const h of hashes.slice(2)) assert.ok(kept.has(h), 'the kept reports’ contents keep theirs');
    assert.equal(db.prepare('SELECT count(*) FROM content_finding_texts WHERE content NOT IN (SELECT content FROM content_findings)').pluck().get(), 0, 'no text outlives its row');
  });
});

