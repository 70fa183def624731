/**
 * A feed change reaches every host by content group (HostFindings.followStore): each
 * group's changed keys are matched once, each host gets only those findings re-judged. The
 * result must be exactly what correlating every host whole gives: the same history rows
 * (first seen, resolved, status, the finding itself) and the same counts. Two copies of one
 * real SQLite file take the same real feed change, one by fan-out and one host by host.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { inventoryHash } from '../../shared/inventory-hash.ts';
import type { Inventory } from '../../shared/protocol.ts';
import { generateKeyPair } from '../../shared/signing.ts';
import { dataPath } from '../../shared/testing/data.ts';
import { feedCommand } from '../commands/feed.ts';
import { DEFAULT_POLICY } from '../correlate/policy.ts';
import { createLogger } from '../logger.ts';
import { hostInventory } from '../rollout/testkit.ts';
import { openDatabase } from '../store/db.ts';
import { FleetStore } from '../store/fleet.ts';
import { FindingHistoryStore } from '../store/history.ts';
import { HostFindings } from './host-findings.ts';

const quiet = { stdout: { write: () => true }, stderr: { write: () => true } } as unknown as { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };

/** The real AlmaLinux 9 OSV records, one JSON text per line. */
function alma9Lines(): string[] {
  return gunzipSync(readFileSync(dataPath('osv', 'almalinux9.osv.jsonl.gz')))
    .toString('utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
}

/** Three contents: the RHEL 9.5 image, the same without two packages, and with the old kernel. */
function contents(): Inventory[] {
  const base = hostInventory({ hostname: 'x' });
  const fewer = hostInventory({ hostname: 'x' });
  fewer.packages = fewer.packages.filter((p) => !p.name.startsWith('bind') && p.name !== 'openssl-libs');
  return [base, fewer, hostInventory({ hostname: 'x', kernel: 'old' })];
}

interface Side {
  db: ReturnType<typeof openDatabase>;
  fleet: FleetStore;
  hf: HostFindings;
}

function openSide(path: string, now: () => Date): Side {
  const db = openDatabase(path);
  const fleet = new FleetStore(db);
  return { db, fleet, hf: new HostFindings({ db, fleet, policy: DEFAULT_POLICY, logger: createLogger({ level: 'silent' }), now }) };
}

function snapshot(db: Side['db']): { history: unknown[]; counts: unknown[] } {
  return {
    history: db.prepare('SELECT host, advisory, package, first_seen, last_seen, resolved, status, finding FROM finding_history ORDER BY host, advisory, package').all(),
    counts: db.prepare('SELECT agent_id, open_findings, overdue_findings FROM hosts ORDER BY agent_id').all(),
  };
}

describe('a feed change fanned out by content group', () => {
  it('gives every host the same stored findings, history and counts as correlating each host whole', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'pw-fanout-'));
    t.after(() => { rmSync(dir, { recursive: true, force: true }); });
    let clock = new Date('2026-11-20T10:00:00.000Z');
    const now = () => clock;
    const pathA = join(dir, 'a.db');
    const a = openSide(pathA, now);
    t.after(() => {
      a.hf.stop();
      a.db.close();
    });

    // 12 hosts over 3 contents, every host its own report.
    const invs = contents();
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const inv = structuredClone(invs[i % invs.length]) as Inventory;
      inv.host.hostname = `host-${i}`;
      const id = a.fleet.enrollAgent({ publicKey: generateKeyPair().publicKey, hostname: inv.host.hostname, machineId: null, tokenId: null }, clock);
      a.fleet.ingestReport(id, randomUUID(), inventoryHash(inv), inv, clock);
      ids.push(id);
    }

    // The feed as first imported: every real record but the last 50 (they arrive with the change).
    const lines = alma9Lines();
    const first = lines.slice(0, -50);
    const feedV1 = join(dir, 'alma9-v1.osv.jsonl');
    writeFileSync(feedV1, first.join('\n') + '\n');
    assert.equal(await feedCommand(['import', '--db', pathA, '--name', 'alma9', feedV1], quiet), 0);
    a.hf.load();
    a.hf.scheduleAll(ids);
    await a.hf.drained();
    assert.equal(a.hf.stats.correlated, ids.length);

    // Accepted risks on host 0 for every advisory the change brings: the fan-out must apply them.
    const added = lines.slice(-50).map((l) => (JSON.parse(l) as { id: string }).id);
    const history = new FindingHistoryStore(a.db);
    for (const advisory of added) history.addException({ advisory, owner: 'ops', reason: 'compensating control', expires: '2027-06-01T00:00:00.000Z', host: ids[0], createdBy: 'cli:test' }, clock);
    const rewritten = first.slice(-30).map((l) => JSON.parse(l) as { id: string; affected: { ranges: { events: Record<string, string>[] }[] }[] });

    // The change: the 50 new records, and 30 old ones whose fix moved to version 0.1 (they stop applying).
    for (const r of rewritten) for (const aff of r.affected) for (const range of aff.ranges) for (const e of range.events) if ('fixed' in e) e.fixed = '0.1-1.el9';
    const change = join(dir, 'alma9-change.osv.jsonl');
    writeFileSync(change, [...lines.slice(-50), ...rewritten.map((r) => JSON.stringify({ ...r, modified: '2026-11-21T00:00:00Z' }))].join('\n') + '\n');

    a.hf.stop();
    a.db.close();
    const pathB = join(dir, 'b.db');
    writeFileSync(pathB, readFileSync(pathA));
    Object.assign(a, openSide(pathA, now));
    a.hf.load();

    clock = new Date('2026-11-22T10:00:00.000Z');
    assert.equal(await feedCommand(['import', '--db', pathA, '--name', 'alma9-change', change], quiet), 0);
    assert.equal(await feedCommand(['import', '--db', pathB, '--name', 'alma9-change', change], quiet), 0);
    // B starts after the change: it loads every advisory and correlates each host whole.
    const b = openSide(pathB, now);
    t.after(() => {
      b.hf.stop();
      b.db.close();
    });
    b.hf.load();

    // A: the serving collector's path. B: every host correlated whole over the same advisories.
    const before = snapshot(a.db);
    const taken = a.hf.followStore();
    assert.equal(taken.advisories, 80);
    assert.equal(taken.hosts, ids.length);
    await a.hf.drained();
    b.hf.scheduleStored(ids);
    await b.hf.drained();

    assert.equal(a.hf.stats.correlated, 0, 'no host was correlated whole');
    assert.equal(a.hf.stats.fannedOut, ids.length);
    assert.equal(a.hf.correlator.stats.misses, invs.length, 'each content matched once, when the fan-out first needed it');
    const got = snapshot(a.db);
    const want = snapshot(b.db);
    assert.notDeepEqual(got.history, before.history, 'the change changed stored findings');
    assert.deepEqual(got.counts, want.counts);
    assert.equal(got.history.length, want.history.length);
    assert.deepEqual(got.history, want.history);
    const rows = got.history as { host: string; advisory: string; status: string }[];
    const addedSet = new Set(added);
    const accepted = rows.filter((r) => r.host === ids[0] && addedSet.has(r.advisory));
    assert.ok(accepted.length > 0 && accepted.every((r) => r.status === 'accepted'), 'host 0 accepted the new advisories');
    assert.ok(rows.some((r) => r.host === ids[3] && addedSet.has(r.advisory) && r.status === 'open'), 'host 3, same content, has them open');
    const resolved = (got.history as { status: string }[]).filter((r) => r.status === 'resolved').length;
    assert.ok(resolved > 0, 'the rewritten advisories resolved findings');
  });
});
