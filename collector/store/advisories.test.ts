import assert from 'node:assert/strict';
import { dumpStore } from '../../shared/testing/store-fixtures.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { dataPath, readData } from '../../shared/testing/data.ts';
import { Correlator } from '../domain/correlate/correlator.ts';
import { DEFAULT_POLICY } from '../domain/correlate/policy.ts';
import { inventoryOf, rhel95Packages } from '../../shared/testing/correlate-fixtures.ts';
import { parseFeedPath } from '../services/feeds/import.ts';
import { parseOsv } from '../domain/feeds/osv.ts';
import { FeedReport, type Advisory, type Severity } from '../domain/feeds/types.ts';
import { AdvisoryStore } from './advisories.ts';
import { openDatabase, type Db } from './db.ts';
import { MIGRATIONS } from './migrations.ts';

const NOW = new Date('2026-11-26T18:00:00.000Z');
const ALMA9 = { source: 'almalinux9', kind: 'osv', location: dataPath('osv', 'almalinux9.osv.jsonl.gz') };

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-store-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function tempStore(t: TestContext): Promise<{ db: Db; store: AdvisoryStore }> {
  const db = openDatabase(join(await tempDir(t), 'c.db'));
  t.after(() => {
    if (db.open) db.close();
  });
  return { db, store: new AdvisoryStore(db) };
}


let almaLines: string[] | undefined;
/** One real record of the AlmaLinux 9 export, parsed. */
function realOsv(id: string): Advisory {
  almaLines ??= readData('osv', 'almalinux9.osv.jsonl.gz').split('\n');
  const line = almaLines.find((l) => l.includes(`"id":"${id}"`));
  assert.ok(line !== undefined, `${id} is in almalinux9.osv.jsonl.gz`);
  return parseOsv(JSON.parse(line), new FeedReport(), id);
}

function affectedRows(db: Db, id: string): string[] {
  return db
    .prepare<[string], { ecosystem: string; package: string }>('SELECT ecosystem, package FROM affected WHERE id = ? ORDER BY ecosystem, package')
    .all(id)
    .map((r) => `${r.ecosystem}/${r.package}`);
}

function findingsFor(store: AdvisoryStore, advisory: string): string[] {
  const c = new Correlator();
  c.apply(store.allAdvisories());
  const doc = c.findings(inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages()), { policy: DEFAULT_POLICY, now: NOW, kev: new Map() });
  return doc.findings.filter((f) => f.advisory === advisory).map((f) => `${f.package} ${f.installed} -> ${f.fixed ?? ''}`);
}

describe('AdvisoryStore advisories', () => {
  it('the real almalinux9 export: 1783 advisories, one affected row per (advisory, ecosystem, package) of its 24012 entries', async (t) => {
    const { db, store } = await tempStore(t);
    const parsed = await parseFeedPath(ALMA9.location);
    const r = store.importAdvisories(ALMA9, parsed.advisories, NOW);
    assert.deepEqual({ added: r.added, updated: r.updated, unchanged: r.unchanged, changed: r.changed.length }, { added: 1783, updated: 0, unchanged: 0, changed: 1783 });
    assert.equal(parsed.advisories.reduce((n, a) => n + a.affected.length, 0), 24012);
    const distinct = new Set(parsed.advisories.flatMap((a) => a.affected.map((x) => `${a.id}\0${x.ecosystem}\0${x.package}`)));
    const d = dumpStore(db);
    assert.equal(d.advisories, 1783);
    assert.equal(d.affected, distinct.size);
    const feed = store.feeds()[0]!;
    assert.equal(feed.records, 1783);
    assert.match(feed.newest ?? '', /^2026-08-21T/);
    assert.equal(feed.importedAt, NOW.toISOString());
    assert.equal(feed.lastError, null);
  });

  it('re-importing the same advisories writes nothing: all unchanged, rows identical, imported_at kept', async (t) => {
    const { db, store } = await tempStore(t);
    const parsed = await parseFeedPath(ALMA9.location);
    store.importAdvisories(ALMA9, parsed.advisories, NOW);
    const before = dumpStore(db);
    const later = new Date(NOW.getTime() + 3600_000);
    const r = store.importAdvisories(ALMA9, parsed.advisories, later);
    assert.deepEqual({ added: r.added, updated: r.updated, unchanged: r.unchanged, changed: r.changed.length }, { added: 0, updated: 0, unchanged: 1783, changed: 0 });
    assert.deepEqual(dumpStore(db), before);
    const feed = store.feeds()[0]!;
    assert.equal(feed.importedAt, NOW.toISOString(), 'nothing changed, so the import time stays');
    assert.equal(feed.checkedAt, later.toISOString());
  });

  it('an updated advisory replaces its affected rows; other advisories keep theirs', async (t) => {
    const { db, store } = await tempStore(t);
    const bind = realOsv('ALSA-2025:1681');
    const other = realOsv('ALSA-2026:42736');
    store.importAdvisories(ALMA9, [bind, other], NOW);
    const otherRows = affectedRows(db, other.id);
    assert.ok(affectedRows(db, bind.id).length > 3, 'the real bind advisory lists many rpms');
    const kept = bind.affected.filter((a) => a.package === 'bind-libs');
    assert.equal(kept.length, 1);
    const changed: Advisory = { ...bind, modified: '2026-11-01T00:00:00.000Z', affected: kept };
    const r = store.importAdvisories(ALMA9, [changed, other], NOW);
    assert.deepEqual([r.added, r.updated, r.unchanged, r.changed.map((a) => a.id)], [0, 1, 1, [bind.id]]);
    assert.deepEqual(affectedRows(db, bind.id), ['AlmaLinux:9/bind-libs']);
    assert.deepEqual(affectedRows(db, other.id), otherRows);
    assert.deepEqual([...store.allAdvisories()].find((a) => a.id === bind.id), changed);
  });

  it('a withdrawn advisory stays stored but leaves the correlation index and raises no finding', async (t) => {
    const { db, store } = await tempStore(t);
    const bind = realOsv('ALSA-2025:1681');
    store.importAdvisories(ALMA9, [bind], NOW);
    assert.ok(findingsFor(store, bind.id).includes('bind-libs 32:9.16.23-24.el9_5 -> 32:9.16.23-24.el9_5.3'));
    const withdrawn: Advisory = { ...bind, withdrawn: '2026-11-20T00:00:00.000Z' };
    const r = store.importAdvisories(ALMA9, [withdrawn], NOW);
    assert.equal(r.updated, 1);
    assert.deepEqual(affectedRows(db, bind.id), []);
    assert.equal(db.prepare<[string], { withdrawn: string }>('SELECT withdrawn FROM advisories WHERE id = ?').get(bind.id)?.withdrawn, withdrawn.withdrawn);
    assert.deepEqual(findingsFor(store, bind.id), []);
  });

  it('recordFeedError keeps the last good data; the next good import clears the error', async (t) => {
    const { db, store } = await tempStore(t);
    store.importAdvisories(ALMA9, [realOsv('ALSA-2025:1681')], NOW);
    const before = dumpStore(db);
    const failedAt = new Date('2026-11-27T00:00:00.000Z');
    store.recordFeedError({ ...ALMA9, kind: 'unknown' }, 'cut.jsonl.gz: gzip data is truncated or corrupt (PW_ERR_FEED_FORMAT)', failedAt);
    assert.deepEqual(dumpStore(db), before);
    const feed = store.feeds()[0]!;
    assert.equal(feed.lastError, '2026-11-27T00:00:00.000Z cut.jsonl.gz: gzip data is truncated or corrupt (PW_ERR_FEED_FORMAT)');
    assert.equal(feed.kind, 'osv', 'the failed attempt does not rename what the feed holds');
    assert.equal(feed.records, 1);
    assert.equal(feed.checkedAt, NOW.toISOString(), 'a failed attempt is no check: staleness keeps counting');
    store.importAdvisories(ALMA9, [realOsv('ALSA-2025:1681')], failedAt);
    assert.equal(store.feeds()[0]?.lastError, null);
  });

  it('recordFeedError for a feed never imported makes an empty row that says why', async (t) => {
    const { store } = await tempStore(t);
    store.recordFeedError({ source: 'osv-debian', kind: 'unknown', location: 'https://example.invalid/all.zip' }, 'HTTP 404', NOW);
    const feed = store.feeds()[0]!;
    assert.deepEqual({ ...feed }, {
      source: 'osv-debian',
      kind: 'unknown',
      location: 'https://example.invalid/all.zip',
      records: 0,
      newest: null,
      importedAt: null,
      checkedAt: null,
      lastError: `${NOW.toISOString()} HTTP 404`,
      etag: null,
      lastModified: null,
    });
  });

  it('a failure half-way through rolls the whole feed back, feed row included', async (t) => {
    const { db, store } = await tempStore(t);
    store.importAdvisories(ALMA9, [realOsv('ALSA-2025:1681')], NOW);
    const before = dumpStore(db);
    const feedsBefore = store.feeds();
    const good = realOsv('ALSA-2026:42736');
    // What a parser bug would hand over: the store's NOT NULL catches it mid-transaction.
    const broken = { ...realOsv('ALSA-2025:1681'), id: 'ALSA-BROKEN', severity: null as unknown as Severity };
    assert.throws(() => store.importAdvisories({ ...ALMA9, kind: 'osv+broken' }, [good, broken], new Date('2026-11-27T00:00:00.000Z')), { code: 'SQLITE_CONSTRAINT_NOTNULL' });
    assert.deepEqual(dumpStore(db), before);
    assert.deepEqual(store.feeds(), feedsBefore);
  });
});

describe('AdvisoryStore KEV', () => {
  const JSON_KEV = { source: 'kev-json', kind: 'kev-json', location: dataPath('kev', 'known_exploited_vulnerabilities.json.gz') };
  const CSV_KEV = { source: 'kev-csv', kind: 'kev-csv', location: dataPath('kev', 'known_exploited_vulnerabilities-2025-11-17.csv.gz') };

  it('the real JSON (1404) and CSV (1460) catalogs as two feeds: counts per feed, merged per CVE, re-imports unchanged', async (t) => {
    const { db, store } = await tempStore(t);
    const json = await parseFeedPath(JSON_KEV.location);
    const csv = await parseFeedPath(CSV_KEV.location);
    assert.deepEqual(store.importKev(JSON_KEV, json.kev, NOW), { added: 1404, updated: 0, unchanged: 0 });
    assert.deepEqual(store.importKev(CSV_KEV, csv.kev, NOW), { added: 1460, updated: 0, unchanged: 0 });
    const before = dumpStore(db);
    // The two catalogs disagree on CVE-2024-1086's ransomware use: neither import may
    // overwrite the other's row, or every re-import would report 6 updates.
    assert.deepEqual(store.importKev(JSON_KEV, json.kev, NOW), { added: 0, updated: 0, unchanged: 1404 });
    assert.deepEqual(store.importKev(CSV_KEV, csv.kev, NOW), { added: 0, updated: 0, unchanged: 1460 });
    assert.deepEqual(dumpStore(db), before);
    const ransomware = db.prepare<[], { feed: string; ransomware: string }>("SELECT feed, ransomware FROM kev WHERE cve = 'CVE-2024-1086' ORDER BY feed").all();
    assert.deepEqual(ransomware, [
      { feed: 'kev-csv', ransomware: 'Known' },
      { feed: 'kev-json', ransomware: 'Unknown' },
    ]);
    const merged = store.kev();
    assert.equal(merged.size, 1460);
    assert.deepEqual(merged.get('CVE-2024-1086'), { dueDate: '2024-06-20', dateAdded: '2024-05-30' });
    const feeds = new Map(store.feeds().map((f) => [f.source, f]));
    assert.deepEqual([feeds.get('kev-json')?.records, feeds.get('kev-json')?.newest], [1404, '2025-08-25T00:00:00.000Z']);
    assert.deepEqual([feeds.get('kev-csv')?.records, feeds.get('kev-csv')?.newest], [1460, '2025-11-14T00:00:00.000Z']);
  });

  it('a changed KEV entry is an update of that feed only', async (t) => {
    const { db, store } = await tempStore(t);
    const json = await parseFeedPath(JSON_KEV.location);
    store.importKev(JSON_KEV, json.kev, NOW);
    const moved = json.kev.map((k) => (k.cve === 'CVE-2024-1086' ? { ...k, dueDate: '2024-06-10', knownRansomwareCampaignUse: 'Known' } : k));
    assert.deepEqual(store.importKev(JSON_KEV, moved, NOW), { added: 0, updated: 1, unchanged: 1403 });
    assert.deepEqual(db.prepare("SELECT due_date, ransomware FROM kev WHERE cve = 'CVE-2024-1086'").all(), [{ due_date: '2024-06-10', ransomware: 'Known' }]);
    assert.equal(store.kev().get('CVE-2024-1086')?.dueDate, '2024-06-10');
  });
});

describe('migration 2 (KEV rows per feed)', () => {
  const rows: [string, string, string, string, string, string][] = [
    ['CVE-2024-1086', '2024-05-30', '2024-06-20', 'Linux', 'Kernel', 'Known'],
    ['CVE-2022-0847', '2022-04-25', '2022-05-16', 'Linux', 'Kernel', 'Unknown'],
  ];
  const cases: { name: string; feeds: [string, string, string | null][]; owner: string }[] = [
    { name: 'two KEV feeds: the one imported last', feeds: [['kev-old', 'kev-json', '2026-01-01T00:00:00.000Z'], ['kev-new', 'kev-csv', '2026-02-01T00:00:00.000Z'], ['alma', 'osv', '2026-03-01T00:00:00.000Z']], owner: 'kev-new' },
    { name: 'no KEV feed row: a feed named kev', feeds: [['alma', 'osv', '2026-03-01T00:00:00.000Z']], owner: 'kev' },
  ];
  for (const c of cases) {
    it(`version-1 KEV rows with ${c.name} owns them`, async (t) => {
      const path = join(await tempDir(t), 'v1.db');
      const v1 = new Database(path);
      v1.exec(MIGRATIONS[0] ?? '');
      v1.pragma('user_version = 1');
      for (const [source, kind, at] of c.feeds) v1.prepare('INSERT INTO feeds (source, kind, imported_at, records) VALUES (?, ?, ?, 99)').run(source, kind, at);
      for (const r of rows) v1.prepare('INSERT INTO kev VALUES (?, ?, ?, ?, ?, ?)').run(...r);
      v1.close();
      const db = openDatabase(path);
      t.after(() => db.close());
      assert.equal(db.pragma('user_version', { simple: true }), MIGRATIONS.length);
      assert.deepEqual(
        db.prepare('SELECT feed, cve, ransomware FROM kev ORDER BY cve').all(),
        rows.map((r) => ({ feed: c.owner, cve: r[0], ransomware: r[5] })).sort((a, b) => (a.cve < b.cve ? -1 : 1)),
      );
      const records = Object.fromEntries(new AdvisoryStore(db).feeds().map((f) => [f.source, f.records]));
      assert.equal(records[c.owner], 2);
      assert.equal(records.alma, 0, 'records are recounted from the rows');
    });
  }
});
