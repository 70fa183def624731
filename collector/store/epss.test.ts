import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseEpssCsv } from '../domain/feeds/epss.ts';
import { EPSS_EXCERPT } from '../../shared/testing/feed-fixtures.ts';
import { onEachEngine } from '../../shared/testing/store-engines.ts';
import { FeedReport } from '../domain/feeds/types.ts';
import { sql } from './sql/query.ts';

const real = parseEpssCsv(readFileSync(EPSS_EXCERPT, 'utf8'), new FeedReport());
const feed = { source: 'first-epss', kind: 'epss-csv', location: 'https://epss.empiricalsecurity.com/epss_scores-current.csv.gz' };
const T0 = new Date('2026-09-30T04:00:00Z');

const scores = sql('SELECT cve, score, percentile FROM epss');
const feedRow = sql("SELECT records, newest FROM feeds WHERE source = 'first-epss'");
const removal = sql("SELECT actor, action FROM audit WHERE action = 'feed.remove'");
const countScores = sql('SELECT count(*) AS n FROM epss');

/** What each engine says of a CHECK violation. */
const CHECK_FAILED = { sqlite: /CHECK constraint failed/, postgres: /violates check constraint/ } as const;

onEachEngine('EpssStore', (engine) => {
  test('round trip: every score of the real excerpt reads back exactly, through the store and through another connection', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const r = await store.epss.replace(feed, real, T0);
    assert.deepEqual(r, { stored: 146, replaced: 0, unchanged: false });
    const all = await store.epss.all();
    assert.equal(all.size, 146);
    for (const e of real.entries) assert.deepEqual(all.get(e.cve), { score: e.score, percentile: e.percentile }, e.cve);
    const other = new Map((await db.all<{ cve: string; score: number; percentile: number }>(scores)).map((s) => [s.cve, { score: s.score, percentile: s.percentile }]));
    assert.deepEqual(other, all);
    assert.deepEqual(await store.epss.meta(), { feed: 'first-epss', modelVersion: 'v2026.06.15', scoreDate: '2026-09-29T12:00:22.000Z', rows: 146, importedAt: T0.toISOString() });
    const set = await store.epss.setOf('first-epss');
    assert.deepEqual(set && { ...set, entries: new Set(set.entries.map((e) => JSON.stringify(e))) }, { ...real, entries: new Set(real.entries.map((e) => JSON.stringify(e))) });
    assert.equal(await store.epss.setOf('another-feed'), null);
    assert.deepEqual(await store.advisories.epssSetOf('first-epss'), set);
  });

  test('the same set again writes no score; a new day’s set replaces the whole set (a CVE it lacks has no score any more)', async (t) => {
    const { store: { epss: store }, sql: db } = await engine.open(t);
    await store.replace(feed, real, T0);
    const sig = await store.signature();
    assert.deepEqual(await store.replace(feed, real, new Date('2026-09-30T10:00:00Z')), { stored: 0, replaced: 0, unchanged: true });
    assert.equal(await store.signature(), sig, 'unchanged set, unchanged signature');
    // The next day: the KEV CVEs only, with new scores.
    const next = { modelVersion: real.modelVersion, scoreDate: '2026-09-30T12:00:00.000Z', entries: real.entries.filter((e) => e.cve.startsWith('CVE-2021-3864')).map((e) => ({ ...e, score: e.score / 2 })) };
    assert.deepEqual(await store.replace(feed, next, new Date('2026-10-01T04:00:00Z')), { stored: next.entries.length, replaced: 146, unchanged: false });
    assert.notEqual(await store.signature(), sig);
    assert.equal((await store.all()).size, next.entries.length);
    assert.equal(await store.get('CVE-1999-0001'), undefined);
    assert.deepEqual(await store.get('CVE-2021-38647'), { score: 0.99933 / 2, percentile: 0.9997 });
    assert.deepEqual(await db.get(feedRow), { records: next.entries.length, newest: '2026-09-30T12:00:00.000Z' });
  });

  test('current() reads the scores again only when the set changed, also when another connection changed it', async (t) => {
    const { store: { epss: store }, sql: db } = await engine.open(t);
    const none = await store.current();
    assert.deepEqual([none.scores.size, none.changed, none.signature], [0, true, '']);
    assert.equal((await store.current()).changed, false);
    await store.replace(feed, real, T0);
    const first = await store.current();
    assert.deepEqual([first.scores.size, first.changed], [146, true]);
    const again = await store.current();
    assert.equal(again.changed, false);
    assert.equal(again.scores, first.scores, 'the same copy, not read again');
    // Another collector (a replica on PostgreSQL, a CLI on SQLite) empties the set.
    await db.run(sql('DELETE FROM epss_meta'));
    const gone = await store.current();
    assert.deepEqual([gone.scores.size, gone.changed, gone.signature], [0, true, '']);
  });

  test('feed remove of the EPSS feed takes its scores with it, in its transaction, with its audit row', async (t) => {
    const { store, sql: db } = await engine.open(t);
    await store.epss.replace(feed, real, T0);
    await store.advisories.removeFeed('first-epss', 'cli:test', T0);
    assert.equal((await store.epss.all()).size, 0);
    assert.equal(await store.epss.meta(), null);
    assert.equal(await store.epss.signature(), '');
    assert.deepEqual(await db.get(removal), { actor: 'cli:test', action: 'feed.remove' });
  });

  test('a score outside 0..1 never reaches the table, even past the parser (CHECK)', async (t) => {
    const { store: { epss: store } } = await engine.open(t);
    await store.replace(feed, real, T0);
    await assert.rejects(store.replace(feed, { ...real, entries: [...real.entries, { cve: 'CVE-2099-0001', score: 2, percentile: 0.5 }] }, T0), CHECK_FAILED[engine.name]);
    assert.equal((await store.all()).size, 146, 'the transaction rolled back: the old set is whole');
  });

  test('a set larger than one PostgreSQL batch (50,000 scores) is stored whole; two replacements at once leave one whole set', async (t) => {
    const { store: { epss: store }, sql: db } = await engine.open(t);
    const entries = Array.from({ length: 120_001 }, (_, i) => ({ cve: `CVE-2030-${String(i).padStart(6, '0')}`, score: (i % 1000) / 1000, percentile: ((i * 7) % 1000) / 1000 }));
    const big = { modelVersion: 'v-test', scoreDate: '2030-01-01T00:00:00.000Z', entries };
    assert.deepEqual(await store.replace(feed, big, T0), { stored: 120_001, replaced: 0, unchanged: false });
    assert.deepEqual(await store.get('CVE-2030-120000'), { score: 0, percentile: (((120_000 * 7) % 1000) / 1000) });
    const [a, b] = await Promise.all([store.replace(feed, real, T0), store.replace({ ...feed, source: 'second-epss' }, real, T0)]);
    assert.deepEqual([a.stored, b.stored], [146, 146]);
    assert.deepEqual(await db.get(countScores), { n: 146 });
    // Which of the two ran last is the engine's to choose; the set is whole either way.
    assert.ok(['first-epss', 'second-epss'].includes((await store.meta())?.feed ?? ''));
  });
});
