import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Finding } from '../../shared/protocol.ts';
import { onEachEngine } from '../../shared/testing/store-engines.ts';
import { historyKey } from '../domain/correlate/findings.ts';
import type { SqlDatabase } from './sql/executor.ts';
import { sql } from './sql/query.ts';

const agent = sql('INSERT INTO agents (id, public_key, hostname, enrolled_at) VALUES (?, ?, ?, ?)');
const content = sql('INSERT INTO inventory_contents (hash, ecosystem, package_count, packages, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING');
const report = sql('INSERT INTO reports (id, agent_id, received_at, inventory_hash, content_hash, envelope) VALUES (?, ?, ?, ?, ?, ?)');
const host = sql(`INSERT INTO hosts (agent_id, hostname, ecosystem, package_count, kernel_release, kernel_managed, reboot_required,
  last_report_id, last_report_at) VALUES (?, ?, 'AlmaLinux:9', 3, '6.1.0', 1, 0, ?, ?)`);
const removeContent = sql('DELETE FROM inventory_contents WHERE hash = ?');
const removeReports = sql('DELETE FROM reports WHERE content_hash = ?');
const counts = sql(`SELECT (SELECT count(*) FROM content_findings WHERE content = ?) AS timeline,
  (SELECT count(*) FROM content_finding_texts WHERE content = ?) AS texts, (SELECT count(*) FROM finding_history WHERE host = ?) AS own`);
const ownRow = sql('SELECT first_seen, last_seen, resolved, status FROM finding_history WHERE host = ? AND advisory = ? AND package = ?');

const T0 = '2026-11-01T00:00:00.000Z';
const T1 = '2026-11-02T00:00:00.000Z';
const T2 = '2026-11-03T00:00:00.000Z';
const T3 = '2026-11-04T00:00:00.000Z';

/** A host enrolled with one report of `contentHash`, whose content row exists. */
async function seedHost(db: SqlDatabase, id: string, contentHash: string): Promise<void> {
  await db.run(agent, [id, `key-${id}`, id, T0]);
  await db.run(content, [contentHash, 'AlmaLinux:9', 3, '[]', T0]);
  await db.run(report, [`r-${id}-${contentHash}`, id, T0, `i-${id}`, contentHash, '{}']);
  await db.run(host, [id, id, `r-${id}-${contentHash}`, T0]);
}

function finding(advisory: string, pkg: string, status: Finding['status'], firstSeen: string, extra: Partial<Finding> = {}): Finding {
  return {
    advisory,
    source: 'osv',
    cves: [],
    package: pkg,
    binaries: [pkg],
    installed: '1.0-1',
    fixed: '1.0-2',
    status,
    severity: 'high',
    kev: false,
    epss: null,
    published: '2026-10-01',
    firstSeen,
    due: null,
    overdue: false,
    resolvedAt: null,
    why: `${pkg} 1.0-1 < 1.0-2`,
    ...extra,
  };
}

/** [key, firstSeen, resolvedAt, status] of each entry, sorted: what a history says. */
function facts(history: ReadonlyMap<string, { firstSeen: string; resolvedAt: string | null; status: string }>): [string, string, string | null, string][] {
  return [...history].map(([k, e]): [string, string, string | null, string] => [k.replace('\u0000', ' '), e.firstSeen, e.resolvedAt, e.status]).sort((a, b) => a[0].localeCompare(b[0]));
}

onEachEngine('FindingHistoryStore', (engine) => {
  test('a host’s own rows: recorded, unchanged findings left alone, a resolved finding stamped, one that comes back starts a new clock', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const h = store.history;
    assert.equal((await h.history('scan-host')).size, 0);
    assert.deepEqual(await h.hostContent('scan-host'), { content: null, since: null });

    await h.record('scan-host', [finding('A-1', 'openssl', 'open', T0), finding('A-2', 'bash', 'unfixed', T0)], new Date(T0));
    let was = await h.history('scan-host');
    assert.deepEqual(facts(was), [
      ['A-1 openssl', T0, null, 'open'],
      ['A-2 bash', T0, null, 'unfixed'],
    ]);
    assert.equal(was.get(historyKey('A-1', 'openssl'))?.last?.why, 'openssl 1.0-1 < 1.0-2', 'the finding’s text is kept');

    // Unchanged against `previous`: no row is written (last_seen stays); A-1 stops applying.
    await h.record('scan-host', [finding('A-1', 'openssl', 'resolved', T0, { resolvedAt: T1 }), finding('A-2', 'bash', 'unfixed', T0)], new Date(T1), was);
    assert.deepEqual(await db.get(ownRow, ['scan-host', 'A-2', 'bash']), { first_seen: T0, last_seen: T0, resolved: null, status: 'unfixed' });
    assert.deepEqual(await db.get(ownRow, ['scan-host', 'A-1', 'openssl']), { first_seen: T0, last_seen: T0, resolved: T1, status: 'resolved' });
    was = await h.history('scan-host');
    // Resolved already: not stamped again.
    await h.record('scan-host', [finding('A-1', 'openssl', 'resolved', T0, { resolvedAt: T2 })], new Date(T2), was);
    assert.equal((await db.get<{ resolved: string }>(ownRow, ['scan-host', 'A-1', 'openssl']))?.resolved, T1);

    // It comes back: a new episode, its clock from now; a changed text rewrites an open row but keeps its first-seen.
    await h.record('scan-host', [finding('A-1', 'openssl', 'open', T3), finding('A-2', 'bash', 'unfixed', T3, { why: 'changed' })], new Date(T3), was);
    assert.deepEqual(facts(await h.history('scan-host')), [
      ['A-1 openssl', T3, null, 'open'],
      ['A-2 bash', T0, null, 'unfixed'],
    ]);
    assert.equal((await db.get<{ last_seen: string }>(ownRow, ['scan-host', 'A-2', 'bash']))?.last_seen, T3);
  });

  test('a content’s timeline: rows rewritten when their status changes, not their text; read whole or by package', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const h = store.history;
    const findings = [finding('A-1', 'openssl', 'open', T0), finding('A-2', 'bash', 'open', T0), finding('A-3', 'curl', 'unfixed', T0)];
    await h.recordContent('c1', findings, new Date(T0), await h.contentHistory('c1'));
    assert.deepEqual(await db.get(counts, ['c1', 'c1', '-']), { timeline: 3, texts: 3, own: 0 });
    let previous = await h.contentHistory('c1');
    assert.equal(previous.get(historyKey('A-3', 'curl'))?.last?.status, 'unfixed', 'the text comes with the timeline');

    // A new text alone writes nothing; a status change rewrites the row and its text; a finding gone is resolved.
    const second = [finding('A-1', 'openssl', 'open', T0, { why: 'new fixed version' }), finding('A-2', 'bash', 'fixed-pending-reboot', T0), finding('A-3', 'curl', 'resolved', T0, { resolvedAt: T1 })];
    await h.recordContent('c1', second, new Date(T1), previous);
    previous = await h.contentHistory('c1');
    assert.deepEqual(facts(previous), [
      ['A-1 openssl', T0, null, 'open'],
      ['A-2 bash', T0, null, 'fixed-pending-reboot'],
      ['A-3 curl', T0, T1, 'resolved'],
    ]);
    assert.equal(previous.get(historyKey('A-1', 'openssl'))?.last?.why, 'openssl 1.0-1 < 1.0-2', 'the text of an unchanged status stays');
    assert.equal(previous.get(historyKey('A-2', 'bash'))?.last?.status, 'fixed-pending-reboot');

    // By package: only those rows.
    assert.deepEqual(facts(await h.contentHistory('c1', ['bash', 'curl', 'absent'])), [
      ['A-2 bash', T0, null, 'fixed-pending-reboot'],
      ['A-3 curl', T0, T1, 'resolved'],
    ]);
    assert.equal((await h.contentHistory('c1', [])).size, 0);
    // A resolved finding that applies again starts a new clock.
    await h.recordContent('c1', [finding('A-3', 'curl', 'unfixed', T2)], new Date(T2), previous);
    assert.deepEqual(facts(await h.contentHistory('c1', ['curl'])), [['A-3 curl', T2, null, 'unfixed']]);
  });

  test('the same finding twice in one write: the last one is what is stored, on both engines', async (t) => {
    const { store } = await engine.open(t);
    const h = store.history;
    await h.recordContent('c1', [finding('A-1', 'openssl', 'open', T0), finding('A-1', 'openssl', 'unfixed', T0)], new Date(T0), new Map());
    assert.deepEqual(facts(await h.contentHistory('c1')), [['A-1 openssl', T0, null, 'unfixed']]);
    await h.record('h1', [finding('A-1', 'openssl', 'open', T0), finding('A-1', 'openssl', 'unfixed', T0)], new Date(T0));
    assert.deepEqual(facts(await h.history('h1')), [['A-1 openssl', T0, null, 'unfixed']]);
  });

  test('a host’s history is its content’s timeline from when it took it, and its own rows when it moves on', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const h = store.history;
    await seedHost(db, 'web-1', 'c1');
    await seedHost(db, 'web-2', 'c1');
    // c1 had A-1 before anyone took it, and an episode of A-9 that closed before.
    await h.recordContent('c1', [finding('A-1', 'openssl', 'open', T0), finding('A-9', 'zlib', 'open', T0)], new Date(T0), new Map());
    await h.recordContent('c1', [finding('A-1', 'openssl', 'open', T0), finding('A-9', 'zlib', 'resolved', T0, { resolvedAt: T0 })], new Date(T0), await h.contentHistory('c1'));

    await h.switchContent('web-1', 'c1', new Set([historyKey('A-1', 'openssl')]), new Date(T1));
    assert.deepEqual(await h.hostContent('web-1'), { content: 'c1', since: T1 });
    // A-1 is web-1's from when it took the content; A-9's episode is not its.
    assert.deepEqual(facts(await h.history('web-1')), [['A-1 openssl', T1, null, 'open']]);
    assert.equal((await h.history('web-1')).get(historyKey('A-1', 'openssl'))?.last?.firstSeen, T1, 'a content row’s finding carries the host’s first-seen');

    // The content gains A-2 later: the host has it from then.
    await h.recordContent('c1', [finding('A-1', 'openssl', 'open', T0), finding('A-2', 'bash', 'open', T2)], new Date(T2), await h.contentHistory('c1'));
    assert.deepEqual(facts(await h.history('web-1')), [
      ['A-1 openssl', T1, null, 'open'],
      ['A-2 bash', T2, null, 'open'],
    ]);

    // web-1 moves to c2 and keeps A-1 only: A-1 carries its first-seen, A-2 is resolved now.
    await seedHost(db, 'other', 'c2');
    await h.switchContent('web-1', 'c2', new Set([historyKey('A-1', 'openssl')]), new Date(T3));
    assert.deepEqual(await db.get(counts, ['c1', 'c1', 'web-1']), { timeline: 3, texts: 3, own: 2 }, 'c1 is kept: its content is still stored');
    await h.recordContent('c2', [finding('A-1', 'openssl', 'open', T3)], new Date(T3), new Map());
    assert.deepEqual(facts(await h.history('web-1')), [
      ['A-1 openssl', T1, null, 'open'],
      ['A-2 bash', T2, T3, 'resolved'],
    ]);
    assert.equal((await h.history('web-1')).get(historyKey('A-2', 'bash'))?.last?.package, 'bash', 'a resolved row keeps the finding’s text');
    // Read in one statement, or over a content the caller names: the same history.
    const one = await h.history('web-1');
    const named = await h.history('web-1', await h.hostContent('web-1'));
    assert.deepEqual(facts(one), facts(named));
    assert.deepEqual([...one].map(([k, e]) => [k, e.json]).sort(), [...named].map(([k, e]) => [k, e.json]).sort());
    // Moving again without change writes none of its own rows again.
    const before = await db.get(ownRow, ['web-1', 'A-2', 'bash']);
    await h.switchContent('web-1', 'c3', new Set([historyKey('A-1', 'openssl')]), new Date(T3));
    assert.deepEqual(await db.get(ownRow, ['web-1', 'A-2', 'bash']), before);
  });

  test('a content’s timeline goes once its content is gone and no host is laid over it', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const h = store.history;
    await seedHost(db, 'web-1', 'c1');
    await h.recordContent('c1', [finding('A-1', 'openssl', 'open', T0)], new Date(T0), new Map());
    await h.switchContent('web-1', 'c1', new Set([historyKey('A-1', 'openssl')]), new Date(T0));
    await h.dropOrphanTimeline('c1');
    assert.deepEqual(await db.get(counts, ['c1', 'c1', 'web-1']), { timeline: 1, texts: 1, own: 0 }, 'a host is laid over it');
    // The host's reports of c1 pruned (as reports.ts prunes): the content goes, and the timeline when the host moves on.
    await db.run(content, ['c2', 'AlmaLinux:9', 0, '[]', T1]);
    await db.run(report, ['r-web-1-c2', 'web-1', T1, 'i-web-1b', 'c2', '{}']);
    await db.run(sql('UPDATE hosts SET last_report_id = ? WHERE agent_id = ?'), ['r-web-1-c2', 'web-1']);
    await db.run(removeReports, ['c1']);
    await db.run(removeContent, ['c1']);
    await h.switchContent('web-1', 'c2', new Set(), new Date(T1));
    assert.deepEqual(await db.get(counts, ['c1', 'c1', 'web-1']), { timeline: 0, texts: 0, own: 1 });
    assert.deepEqual(facts(await h.history('web-1')), [['A-1 openssl', T0, T1, 'resolved']]);
  });

  test('a write rolled back with its transaction leaves nothing', async (t) => {
    const { store, sql: db } = await engine.open(t);
    await seedHost(db, 'web-1', 'c1');
    const refused = new Error('refused');
    await assert.rejects(
      store.transaction(async (tx) => {
        await tx.history.recordContent('c1', [finding('A-1', 'openssl', 'open', T0)], new Date(T0), new Map());
        await tx.history.switchContent('web-1', 'c1', new Set([historyKey('A-1', 'openssl')]), new Date(T0));
        await tx.history.record('web-1', [finding('A-2', 'bash', 'open', T0)], new Date(T0));
        throw refused;
      }),
      refused,
    );
    assert.deepEqual(await db.get(counts, ['c1', 'c1', 'web-1']), { timeline: 0, texts: 0, own: 0 });
    assert.deepEqual(await store.history.hostContent('web-1'), { content: null, since: null });
    // A savepoint inside a transaction rolls back alone.
    await store.transaction(async (tx) => {
      await tx.history.recordContent('c1', [finding('A-1', 'openssl', 'open', T0)], new Date(T0), new Map());
      await tx
        .transaction(async (inner) => {
          await inner.history.record('web-1', [finding('A-2', 'bash', 'open', T0)], new Date(T0));
          throw refused;
        })
        .catch(() => undefined);
    });
    assert.deepEqual(await db.get(counts, ['c1', 'c1', 'web-1']), { timeline: 1, texts: 1, own: 0 });
  });

  test('two writers of one content at once both commit, and the rows are one set', async (t) => {
    const { store } = await engine.open(t);
    const h = store.history;
    const many = Array.from({ length: 200 }, (_, i) => finding(`A-${i}`, `pkg-${i % 37}`, 'open', T0));
    // Opposite orders: rows are locked in key order on PostgreSQL, so neither waits for the other in a cycle.
    await Promise.all([
      store.transaction((tx) => tx.history.recordContent('c1', many, new Date(T0), new Map())),
      store.transaction((tx) => tx.history.recordContent('c1', [...many].reverse(), new Date(T0), new Map())),
    ]);
    const rows = await h.contentHistory('c1');
    assert.equal(rows.size, 200);
    assert.ok([...rows.values()].every((e) => e.firstSeen === T0 && e.resolvedAt === null && e.status === 'open'));
  });

  test('addException: a host’s own and the fleet’s, in force (as the exceptions part reads them) until they expire', async (t) => {
    const { store } = await engine.open(t);
    const h = store.history;
    const NOW = new Date(T1);
    const fleet = await h.addException({ advisory: 'A-1', owner: 'sec', reason: 'waf', expires: T3, createdBy: 'cli:test' }, NOW);
    const own = await h.addException({ advisory: 'A-2', package: 'bash', host: 'web-1', owner: 'ops', reason: 'not reachable', expires: T3 }, NOW);
    await h.addException({ advisory: 'A-3', owner: 'sec', reason: 'expired', expires: T0 }, NOW);
    await h.addException({ advisory: 'A-4', host: 'web-2', owner: 'ops', reason: 'another host', expires: T3 }, NOW);
    assert.ok(own > fleet, 'ids are the rows’ own, in order');
    assert.deepEqual(await store.exceptions.fleetWide(NOW), [{ advisory: 'A-1', package: undefined, owner: 'sec', reason: 'waf', expires: T3 }]);
    assert.deepEqual(await store.exceptions.forHost('web-1', NOW), [
      { advisory: 'A-1', package: undefined, owner: 'sec', reason: 'waf', expires: T3 },
      { advisory: 'A-2', package: 'bash', owner: 'ops', reason: 'not reachable', expires: T3 },
    ]);
    assert.deepEqual(await store.exceptions.forHost('web-1', new Date(T3)), [], 'none past its expiry');
  });
});
