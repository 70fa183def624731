import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseEpssCsv } from '../domain/feeds/epss.ts';
import { EPSS_EXCERPT } from '../../shared/testing/feed-fixtures.ts';
import { FeedReport } from '../domain/feeds/types.ts';
import { openDatabase } from './db.ts';
import { EpssStore } from './epss.ts';
import { removeFeed } from './feed-removal.ts';
import { fleetOn } from './fleet.ts';
import { tempDatabase } from '../../shared/testing/store-fixtures.ts';

const real = parseEpssCsv(readFileSync(EPSS_EXCERPT, 'utf8'), new FeedReport());
const feed = { source: 'first-epss', kind: 'epss-csv', location: 'https://epss.empiricalsecurity.com/epss_scores-current.csv.gz' };
const T0 = new Date('2026-09-30T04:00:00Z');

describe('EpssStore on a real SQLite file', () => {
  it('round trip: every score of the real excerpt reads back exactly, after the file is closed and opened again', async (t) => {
    const { db, path } = await tempDatabase(t, 'epss-store');
    const r = new EpssStore(db).replace(feed, real, T0);
    assert.deepEqual(r, { stored: 146, replaced: 0, unchanged: false });
    db.close();
    const again = openDatabase(path);
    t.after(() => again.close());
    const store = new EpssStore(again);
    const all = store.all();
    assert.equal(all.size, 146);
    for (const e of real.entries) assert.deepEqual(all.get(e.cve), { score: e.score, percentile: e.percentile }, e.cve);
    assert.deepEqual(store.meta(), { feed: 'first-epss', modelVersion: 'v2026.06.15', scoreDate: '2026-09-29T12:00:22.000Z', rows: 146, importedAt: T0.toISOString() });
  });

  it('the same set again writes no score; a new day’s set replaces the whole set (a CVE it lacks has no score any more)', async (t) => {
    const { db } = await tempDatabase(t, 'epss-store');
    const store = new EpssStore(db);
    store.replace(feed, real, T0);
    const sig = store.signature();
    assert.deepEqual(store.replace(feed, real, new Date('2026-09-30T10:00:00Z')), { stored: 0, replaced: 0, unchanged: true });
    assert.equal(store.signature(), sig, 'unchanged set, unchanged signature');
    // The next day: the KEV CVEs only, with new scores.
    const next = { modelVersion: real.modelVersion, scoreDate: '2026-09-30T12:00:00.000Z', entries: real.entries.filter((e) => e.cve.startsWith('CVE-2021-3864')).map((e) => ({ ...e, score: e.score / 2 })) };
    assert.deepEqual(store.replace(feed, next, new Date('2026-10-01T04:00:00Z')), { stored: next.entries.length, replaced: 146, unchanged: false });
    assert.notEqual(store.signature(), sig);
    assert.equal(store.all().size, next.entries.length);
    assert.equal(store.get('CVE-1999-0001'), undefined);
    assert.deepEqual(store.get('CVE-2021-38647'), { score: 0.99933 / 2, percentile: 0.9997 });
    const row = db.prepare<[], { records: number; newest: string }>("SELECT records, newest FROM feeds WHERE source = 'first-epss'").get();
    assert.deepEqual(row, { records: next.entries.length, newest: '2026-09-30T12:00:00.000Z' });
  });

  it('feed remove of the EPSS feed takes its scores with it, in its transaction, with its audit row', async (t) => {
    const { db } = await tempDatabase(t, 'epss-store');
    const store = new EpssStore(db);
    store.replace(feed, real, T0);
    removeFeed(db, fleetOn(db), 'first-epss', 'cli:test', T0);
    assert.equal(store.all().size, 0);
    assert.equal(store.meta(), null);
    assert.equal(store.signature(), '');
    const audit = db.prepare<[], { actor: string; action: string }>("SELECT actor, action FROM audit WHERE action = 'feed.remove'").get();
    assert.deepEqual(audit, { actor: 'cli:test', action: 'feed.remove' });
  });

  it('a score outside 0..1 never reaches the table, even past the parser (CHECK)', async (t) => {
    const { db } = await tempDatabase(t, 'epss-store');
    const store = new EpssStore(db);
    store.replace(feed, real, T0);
    assert.throws(() => store.replace(feed, { ...real, entries: [...real.entries, { cve: 'CVE-2099-0001', score: 2, percentile: 0.5 }] }, T0), /CHECK constraint failed/);
    assert.equal(store.all().size, 146, 'the transaction rolled back: the old set is whole');
  });
});
