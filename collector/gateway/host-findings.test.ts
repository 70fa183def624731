import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, it, type TestContext } from 'node:test';
import { inventoryHash } from '../../shared/inventory-hash.ts';
import type { Findings, Inventory } from '../../shared/protocol.ts';
import { generateKeyPair } from '../../shared/signing.ts';
import { dataPath } from '../../shared/testing/data.ts';
import { Correlator } from '../correlate/correlator.ts';
import type { FindingContext } from '../correlate/findings.ts';
import { DEFAULT_POLICY } from '../correlate/policy.ts';
import { inventoryOf, loadOsv, rhel95Packages } from '../correlate/testkit.ts';
import type { Advisory } from '../feeds/types.ts';
import { createLogger } from '../logger.ts';
import { AdvisoryStore } from '../store/advisories.ts';
import type { Db } from '../store/db.ts';
import { FleetStore } from '../store/fleet.ts';
import { tempDatabase } from '../store/testkit.ts';
import { HostFindings } from './host-findings.ts';

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

async function fleetWithHosts(t: TestContext, hostnames: readonly string[]): Promise<{ db: Db; fleet: FleetStore; agents: Map<string, { id: string; inventory: Inventory; hash: string }> }> {
  const { db } = await tempDatabase(t, 'host-findings');
  new AdvisoryStore(db).importAdvisories(ALMA9, alma, NOW);
  const fleet = new FleetStore(db);
  const agents = new Map<string, { id: string; inventory: Inventory; hash: string }>();
  for (const hostname of hostnames) {
    const id = fleet.enrollAgent({ publicKey: generateKeyPair().publicKey, hostname, machineId: null, tokenId: null }, NOW);
    const inventory: Inventory = { ...rhel, host: { ...rhel.host, hostname } };
    const hash = inventoryHash(inventory);
    assert.equal(fleet.ingestReport(id, randomUUID(), hash, inventory, NOW).status, 'stored');
    agents.set(hostname, { id, inventory, hash });
  }
  return { db, fleet, agents };
}

/** HostFindings over the fixture's store, its advisories loaded, at NOW. */
function loadedFindings(db: Db, fleet: FleetStore, correlator?: Correlator): HostFindings {
  const hf = new HostFindings({ db, fleet, policy: DEFAULT_POLICY, logger: createLogger({ level: 'silent' }), now: () => NOW, ...(correlator === undefined ? {} : { correlator }) });
  hf.load();
  return hf;
}

function historyRows(db: Db, agentId: string): number {
  return (db.prepare('SELECT count(*) AS n FROM finding_history WHERE host = ?').get(agentId) as { n: number }).n;
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
      const hf = loadedFindings(db, fleet, new FailingFor(new Set(c.failing)));
      const expected = hf.correlator.findings(rhel, { policy: DEFAULT_POLICY, now: NOW, kev: new Map() });
      const open = expected.findings.filter((f) => f.status === 'open' || f.status === 'unfixed' || f.status === 'fixed-pending-reboot').length;
      assert.ok(open > 0, 'the real RHEL 9.5 image has open AlmaLinux findings');
      for (const a of agents.values()) hf.schedule(a.id, a.inventory, a.hash);
      await hf.drained();
      assert.equal(hf.queued, 0);
      assert.deepEqual(hf.stats, { correlated: c.hosts - c.failing.length, failed: c.failing.length, fannedOut: 0 });
      for (const [hostname, a] of agents) {
        const host = fleet.host(a.id);
        assert.ok(host);
        if (c.failing.includes(hostname)) {
          assert.equal(host.openFindings, 0, `${hostname}: no counts from a failed correlation`);
          assert.equal(historyRows(db, a.id), 0, `${hostname}: no history from a failed correlation`);
        } else {
          assert.equal(host.openFindings, open, hostname);
          assert.equal(historyRows(db, a.id), expected.findings.length, hostname);
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
    const hf = loadedFindings(db, fleet);
    for (const a of agents.values()) hf.schedule(a.id, a.inventory, a.hash);
    await hf.drained();
    assert.deepEqual(hf.stats, { correlated: 2, failed: 1, fannedOut: 0 });
    assert.equal(historyRows(db, victim.id), 0, 'the history written before the failure was rolled back');
    for (const name of ['web-1', 'web-3']) {
      const a = agents.get(name);
      assert.ok(a);
      assert.ok(historyRows(db, a.id) > 0, name);
      assert.ok((fleet.host(a.id)?.openFindings ?? 0) > 0, name);
    }
  });

  it('correlating a host again writes only the history rows that changed', async (t) => {
    const { db, fleet, agents } = await fleetWithHosts(t, ['web-1']);
    const hf = loadedFindings(db, fleet);
    const a = agents.get('web-1');
    assert.ok(a);
    const changes = (): number => (db.prepare('SELECT total_changes() AS n').get() as { n: number }).n;
    const correlate = async (inventory: Inventory): Promise<number> => {
      const before = changes();
      hf.schedule(a.id, inventory, inventoryHash(inventory));
      await hf.drained();
      return changes() - before;
    };
    // The first correlation writes every row, plus the host's counts.
    assert.equal(historyRows(db, a.id), 0);
    const first = await correlate(a.inventory);
    assert.ok(historyRows(db, a.id) > 0);
    assert.equal(first, historyRows(db, a.id) + 1);
    // Nothing changed: only the host's counts are written.
    assert.equal(await correlate(a.inventory), 1);
    // A new advisory for one installed package: its row, and the counts.
    const bash = a.inventory.packages.find((p) => p.name === 'bash');
    assert.ok(bash);
    new AdvisoryStore(db).importAdvisories(
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
    hf.load();
    assert.equal(await correlate(a.inventory), 2);
    // Every package gone (patched away): each open row is resolved once, then left alone.
    const patched: Inventory = { ...a.inventory, packages: [] };
    const rows = historyRows(db, a.id);
    assert.equal(await correlate(patched), rows + 1);
    assert.equal(await correlate(patched), 1);
    assert.equal(fleet.host(a.id)?.openFindings, 0);
  });

  it('a host is correlated once with its newest inventory when it is queued twice', async (t) => {
    const { db, fleet, agents } = await fleetWithHosts(t, ['web-1']);
    const hf = loadedFindings(db, fleet);
    const a = agents.get('web-1');
    assert.ok(a);
    // The newer inventory has no packages left that any advisory names.
    const patched: Inventory = { ...a.inventory, packages: [] };
    hf.schedule(a.id, a.inventory, a.hash);
    hf.schedule(a.id, patched, inventoryHash(patched));
    await hf.drained();
    assert.equal(hf.stats.correlated, 1);
    assert.equal(fleet.host(a.id)?.openFindings, 0);
  });
});
