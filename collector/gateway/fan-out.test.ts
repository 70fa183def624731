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
import { DEFAULT_POLICY } from '../domain/correlate/policy.ts';
import { createLogger } from '../logger.ts';
import { hostInventory } from '../../shared/testing/rollout-bench.ts';
import { openDatabase } from '../store/db.ts';
import { type Store, storeOn } from '../store/store.ts';
import type { FindingHistoryStore } from '../store/history.ts';
import { HostFindings } from '../services/findings/host-findings.ts';

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
  fleet: Store;
  history: FindingHistoryStore;
  hf: HostFindings;
}

function openSide(path: string, now: () => Date): Side {
  const db = openDatabase(path);
  const fleet = storeOn(db);
  return { db, fleet, history: fleet.async.history, hf: new HostFindings({ store: fleet.async, policy: DEFAULT_POLICY, logger: createLogger({ level: 'silent' }), now }) };
}

/** What the collector believes of each host: its history as read (own rows and its content's timeline), its findings as the API shows them, its counts. */
async function snapshot(side: Side, ids: readonly string[]): Promise<{ history: unknown[]; findings: unknown[]; counts: unknown[] }> {
  return {
    history: await Promise.all(ids.map(async (id) => [...(await side.history.history(id))].map(([k, e]) => [k, e.firstSeen, e.resolvedAt, e.status, e.json]).sort())),
    findings: await Promise.all(ids.map(async (id) => (await side.hf.findings(id))?.findings)),
    counts: side.db.prepare('SELECT agent_id, open_findings, overdue_findings FROM hosts ORDER BY agent_id').all(),
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
    t.after(async () => {
      await a.hf.stop();
      a.db.close();
    });

    // 12 hosts over 3 contents, every host its own report.
    const invs = contents();
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const inv = structuredClone(invs[i % invs.length]) as Inventory;
      inv.host.hostname = `host-${i}`;
      const id = await a.fleet.async.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: inv.host.hostname, machineId: null, tokenId: null }, clock);
      await a.fleet.async.reports.ingest(id, randomUUID(), inventoryHash(inv), inv, clock);
      ids.push(id);
    }

    // The feed as first imported: every real record but the last 50 (they arrive with the change).
    const lines = alma9Lines();
    const first = lines.slice(0, -50);
    const feedV1 = join(dir, 'alma9-v1.osv.jsonl');
    writeFileSync(feedV1, first.join('\n') + '\n');
    assert.equal(await feedCommand(['import', '--db', pathA, '--name', 'alma9', feedV1], quiet), 0);
    await a.hf.load();
    await a.hf.scheduleAll(ids);
    await a.hf.drained();
    assert.deepEqual([a.hf.stats.correlated, a.hf.stats.fannedOut], [0, ids.length], 'a first correlation by content: each host takes its content’s timeline');

    // Two hosts move to another content a day later: their history up to then becomes their own rows.
    clock = new Date('2026-11-21T10:00:00.000Z');
    for (const i of [1, 2]) {
      const inv = structuredClone(invs[(i + 1) % invs.length]) as Inventory;
      inv.host.hostname = `host-${i}`;
      const id = ids[i] as string;
      await a.fleet.async.reports.ingest(id, randomUUID(), inventoryHash(inv), inv, clock);
      a.hf.scheduleStored([id]);
    }
    await a.hf.drained();
    assert.ok((a.db.prepare('SELECT count(*) FROM finding_history').pluck().get() as number) > 0, 'the moved hosts have rows of their own');

    // Accepted risks on host 0 for every advisory the change brings: the fan-out must apply them.
    const added = lines.slice(-50).map((l) => (JSON.parse(l) as { id: string }).id);
    for (const advisory of added) await a.history.addException({ advisory, owner: 'ops', reason: 'compensating control', expires: '2027-06-01T00:00:00.000Z', host: ids[0], createdBy: 'cli:test' }, clock);
    const rewritten = first.slice(-30).map((l) => JSON.parse(l) as { id: string; affected: { ranges: { events: Record<string, string>[] }[] }[] });

    // The change: the 50 new records, and 30 old ones whose fix moved to version 0.1 (they stop applying).
    for (const r of rewritten) for (const aff of r.affected) for (const range of aff.ranges) for (const e of range.events) if ('fixed' in e) e.fixed = '0.1-1.el9';
    const change = join(dir, 'alma9-change.osv.jsonl');
    writeFileSync(change, [...lines.slice(-50), ...rewritten.map((r) => JSON.stringify({ ...r, modified: '2026-11-21T00:00:00Z' }))].join('\n') + '\n');

    await a.hf.stop();
    a.db.close();
    const pathB = join(dir, 'b.db');
    writeFileSync(pathB, readFileSync(pathA));
    Object.assign(a, openSide(pathA, now));
    await a.hf.load();

    clock = new Date('2026-11-22T10:00:00.000Z');
    assert.equal(await feedCommand(['import', '--db', pathA, '--name', 'alma9-change', change], quiet), 0);
    assert.equal(await feedCommand(['import', '--db', pathB, '--name', 'alma9-change', change], quiet), 0);
    // B starts after the change: it loads every advisory and correlates each host whole.
    const b = openSide(pathB, now);
    t.after(async () => {
      await b.hf.stop();
      b.db.close();
    });
    await b.hf.load();

    // A: the serving collector's path. B: every host correlated whole over the same advisories.
    const before = await snapshot(a, ids);
    const taken = await a.hf.followStore();
    assert.equal(taken.advisories, 80);
    assert.equal(taken.hosts, ids.length);
    await a.hf.drained();
    b.hf.scheduleStored(ids);
    await b.hf.drained();

    assert.equal(a.hf.stats.correlated, 1, 'only host 0, with exceptions of its own, was correlated whole');
    assert.equal(a.hf.stats.fannedOut, ids.length - 1);
    assert.equal(a.hf.correlator.stats.misses, invs.length, 'each content matched once, when the fan-out first needed it');
    const got = await snapshot(a, ids);
    const want = await snapshot(b, ids);
    assert.notDeepEqual(got.findings, before.findings, 'the change changed the findings');
    assert.notDeepEqual(got.history, before.history, 'the change changed the history');
    assert.deepEqual(got.counts, want.counts);
    assert.deepEqual(got.history, want.history);
    assert.deepEqual(got.findings, want.findings);
    const addedSet = new Set(added);
    const findingsOf = (i: number) => ((got.findings[i] ?? []) as { advisory: string; status: string; firstSeen: string }[]).filter((f) => addedSet.has(f.advisory));
    assert.ok(findingsOf(0).length > 0 && findingsOf(0).every((f) => f.status === 'accepted'), 'host 0 accepted the new advisories');
    assert.ok(findingsOf(3).some((f) => f.status === 'open' && f.firstSeen === clock.toISOString()), 'host 3, same content, has them open from now');
    const rewrittenIds = new Set(rewritten.map((r) => r.id));
    const resolved = (got.findings as { advisory: string; status: string; resolvedAt: string | null }[][]).flat().filter((f) => rewrittenIds.has(f.advisory));
    assert.ok(resolved.every((f) => f.status === 'resolved'), 'the rewritten advisories apply nowhere');
    assert.ok(resolved.some((f) => f.resolvedAt === clock.toISOString()), 'the change resolved findings now (a moved host had some resolved when it moved)');
  });
});
