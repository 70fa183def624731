import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { dataPath } from '../../shared/testing/data.ts';
import { kevCatalogEntry } from '../../shared/testing/feed-fixtures.ts';
import { onEachEngine } from '../../shared/testing/store-engines.ts';
import { asyncAdvisories, dumpRows, realAlma9Osv } from '../../shared/testing/store-fixtures.ts';
import { Correlator } from '../domain/correlate/correlator.ts';
import { DEFAULT_POLICY } from '../domain/correlate/policy.ts';
import { inventoryOf, rhel95Packages } from '../../shared/testing/correlate-fixtures.ts';
import { parseFeedPath } from '../services/feeds/import.ts';
import { importFeedPath } from '../services/feeds/store-import.ts';
import { type Advisory, type KevEntry, type Severity } from '../domain/feeds/types.ts';
import type { AdvisoryStore } from './advisories.ts';
import { openDatabase } from './db.ts';
import { MIGRATIONS } from './migrations.ts';
import type { SqlExecutor } from './sql/executor.ts';
import { sql } from './sql/query.ts';

const NOW = new Date('2026-11-26T18:00:00.000Z');
const ALMA9 = { source: 'almalinux9', kind: 'osv', location: dataPath('osv', 'almalinux9.osv.jsonl.gz') };

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-store-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

let almaParsed: Promise<Advisory[]> | undefined;
/** The whole real AlmaLinux 9 export (1783 advisories), parsed once per file. */
function almaAll(): Promise<Advisory[]> {
  return (almaParsed ??= parseFeedPath(ALMA9.location).then((p) => p.advisories));
}

const affectedOf = sql('SELECT ecosystem, package FROM affected WHERE id = ? ORDER BY ecosystem, package');
const withdrawnOf = sql('SELECT withdrawn FROM advisories WHERE id = ?');
const ransomwareOf = sql('SELECT feed, ransomware FROM kev WHERE cve = ? ORDER BY feed');
const dueOf = sql('SELECT due_date, ransomware FROM kev WHERE cve = ?');
const auditOf = sql('SELECT actor, action, target FROM audit WHERE action = ?');
const changeCount = sql('SELECT count(*) AS n FROM advisory_changes');

async function affectedRows(ex: SqlExecutor, id: string): Promise<string[]> {
  return (await ex.all<{ ecosystem: string; package: string }>(affectedOf, [id])).map((r) => `${r.ecosystem}/${r.package}`);
}

async function all(store: AdvisoryStore): Promise<Advisory[]> {
  const out: Advisory[] = [];
  for await (const a of store.allAdvisories()) out.push(a);
  return out;
}

async function findingsFor(store: AdvisoryStore, advisory: string): Promise<string[]> {
  const c = new Correlator();
  c.apply(await all(store));
  const doc = c.findings(inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages()), { policy: DEFAULT_POLICY, now: NOW, kev: new Map() });
  return doc.findings.filter((f) => f.advisory === advisory).map((f) => `${f.package} ${f.installed} -> ${f.fixed ?? ''}`);
}

/** What each engine calls a NOT NULL and a CHECK violation. */
const NOT_NULL = { sqlite: 'SQLITE_CONSTRAINT_NOTNULL', postgres: '23502' } as const;

onEachEngine('AdvisoryStore advisories', (engine) => {
  test('the real almalinux9 export: 1783 advisories, one affected row per (advisory, ecosystem, package) of its 24012 entries', async (t) => {
    const { store: { advisories: store }, sql: db } = await engine.open(t);
    const advisories = await almaAll();
    const r = await store.importAdvisories(ALMA9, advisories, NOW);
    assert.deepEqual({ added: r.added, updated: r.updated, unchanged: r.unchanged, changed: r.changed.length }, { added: 1783, updated: 0, unchanged: 0, changed: 1783 });
    assert.equal(advisories.reduce((n, a) => n + a.affected.length, 0), 24012);
    const distinct = new Set(advisories.flatMap((a) => a.affected.map((x) => `${a.id}\0${x.ecosystem}\0${x.package}`)));
    const d = await dumpRows(db);
    assert.equal(d.advisories, 1783);
    assert.equal(d.affected, distinct.size);
    const feed = (await store.feeds())[0]!;
    assert.equal(feed.records, 1783);
    assert.match(feed.newest ?? '', /^2026-08-21T/);
    assert.equal(feed.importedAt, NOW.toISOString());
    assert.equal(feed.lastError, null);
    assert.deepEqual(await store.coverage(), [{ source: 'almalinux9', checkedAt: NOW.toISOString(), ecosystems: ['AlmaLinux:10', 'AlmaLinux:8', 'AlmaLinux:9'] }]);
  });

  test('re-importing the same advisories writes nothing: all unchanged, rows identical, imported_at kept', async (t) => {
    const { store: { advisories: store }, sql: db } = await engine.open(t);
    const advisories = await almaAll();
    await store.importAdvisories(ALMA9, advisories, NOW);
    const before = await dumpRows(db);
    const changes = await db.get<{ n: number }>(changeCount);
    const later = new Date(NOW.getTime() + 3600_000);
    const r = await store.importAdvisories(ALMA9, advisories, later);
    assert.deepEqual({ added: r.added, updated: r.updated, unchanged: r.unchanged, changed: r.changed.length }, { added: 0, updated: 0, unchanged: 1783, changed: 0 });
    assert.deepEqual(await dumpRows(db), before);
    assert.equal((await db.get<{ n: number }>(changeCount))?.n, (changes?.n ?? 0) + 2, 'the change log names the feed row only (its check time and counts)');
    const feed = (await store.feeds())[0]!;
    assert.equal(feed.importedAt, NOW.toISOString(), 'nothing changed, so the import time stays');
    assert.equal(feed.checkedAt, later.toISOString());
  });

  test('all advisories read page by page (1000 a page) in key order, every one once, a write between pages', async (t) => {
    const { store } = await engine.open(t);
    const advisories = await almaAll();
    await store.advisories.importAdvisories(ALMA9, advisories, NOW);
    const read: string[] = [];
    for await (const a of store.advisories.allAdvisories()) {
      read.push(`${a.source}/${a.id}`);
      // No cursor stays open across items: a write between them is no conflict.
      if (read.length === 1000) await store.advisories.touchFeed(ALMA9.source, NOW);
    }
    assert.equal(read.length, 1783);
    assert.equal(new Set(read).size, 1783);
    assert.deepEqual(new Set(read), new Set(advisories.map((a) => `${a.source}/${a.id}`)));
    const records: string[] = [];
    for await (const r of store.advisories.feedRecords(ALMA9.source)) if ('advisory' in r) records.push(`${r.advisory.source}/${r.advisory.id}`);
    assert.deepEqual(records, read, 'a feed\'s records come in the same key order');
  });

  test('an updated advisory replaces its affected rows; other advisories keep theirs', async (t) => {
    const { store: { advisories: store }, sql: db } = await engine.open(t);
    const bind = realAlma9Osv('ALSA-2025:1681');
    const other = realAlma9Osv('ALSA-2026:42736');
    await store.importAdvisories(ALMA9, [bind, other], NOW);
    const otherRows = await affectedRows(db, other.id);
    assert.ok((await affectedRows(db, bind.id)).length > 3, 'the real bind advisory lists many rpms');
    const kept = bind.affected.filter((a) => a.package === 'bind-libs');
    assert.equal(kept.length, 1);
    const changed: Advisory = { ...bind, modified: '2026-11-01T00:00:00.000Z', affected: kept };
    const r = await store.importAdvisories(ALMA9, [changed, other], NOW);
    assert.deepEqual([r.added, r.updated, r.unchanged, r.changed.map((a) => a.id)], [0, 1, 1, [bind.id]]);
    assert.deepEqual(await affectedRows(db, bind.id), ['AlmaLinux:9/bind-libs']);
    assert.deepEqual(await affectedRows(db, other.id), otherRows);
    assert.deepEqual((await all(store)).find((a) => a.id === bind.id), changed);
  });

  test('an id given twice in one import is compared with its first copy, and its last copy is stored', async (t) => {
    const { store: { advisories: store } } = await engine.open(t);
    const bind = realAlma9Osv('ALSA-2025:1681');
    const changed: Advisory = { ...bind, modified: '2026-11-01T00:00:00.000Z' };
    const r = await store.importAdvisories(ALMA9, [bind, bind, changed], NOW);
    assert.deepEqual([r.added, r.updated, r.unchanged, r.changed.length], [1, 1, 1, 2]);
    assert.deepEqual(await all(store), [changed]);
    const kev: KevEntry = { cve: 'CVE-2024-1086', dateAdded: '2024-05-30', dueDate: '2024-06-20', vendorProject: 'Linux', product: 'Kernel', knownRansomwareCampaignUse: 'Known' };
    assert.deepEqual(await store.importKev({ source: 'kev', kind: 'kev-json', location: null }, [kev, kev, { ...kev, dueDate: '2024-06-10' }], NOW), { added: 1, updated: 1, unchanged: 1 });
    assert.equal((await store.kev()).get(kev.cve)?.dueDate, '2024-06-10');
  });

  test('an advisory moved to another feed leaves the first feed\'s coverage', async (t) => {
    const { store: { advisories: store } } = await engine.open(t);
    const bind = realAlma9Osv('ALSA-2025:1681');
    await store.importAdvisories(ALMA9, [bind], NOW);
    const r = await store.importAdvisories({ source: 'mirror', kind: 'osv', location: null }, [{ ...bind, modified: '2026-11-01T00:00:00.000Z' }], NOW);
    assert.equal(r.updated, 1);
    const coverage = new Map((await store.coverage()).map((c) => [c.source, c.ecosystems]));
    assert.deepEqual([coverage.get('almalinux9'), coverage.get('mirror')], [[], ['AlmaLinux:9']]);
  });

  test('a withdrawn advisory stays stored but leaves the correlation index and raises no finding', async (t) => {
    const { store: { advisories: store }, sql: db } = await engine.open(t);
    const bind = realAlma9Osv('ALSA-2025:1681');
    await store.importAdvisories(ALMA9, [bind], NOW);
    assert.ok((await findingsFor(store, bind.id)).includes('bind-libs 32:9.16.23-24.el9_5 -> 32:9.16.23-24.el9_5.3'));
    const withdrawn: Advisory = { ...bind, withdrawn: '2026-11-20T00:00:00.000Z' };
    const r = await store.importAdvisories(ALMA9, [withdrawn], NOW);
    assert.equal(r.updated, 1);
    assert.deepEqual(await affectedRows(db, bind.id), []);
    assert.equal((await db.get<{ withdrawn: string }>(withdrawnOf, [bind.id]))?.withdrawn, withdrawn.withdrawn);
    assert.deepEqual(await findingsFor(store, bind.id), []);
  });

  test('recordFeedError keeps the last good data; the next good import clears the error', async (t) => {
    const { store: { advisories: store }, sql: db } = await engine.open(t);
    await store.importAdvisories(ALMA9, [realAlma9Osv('ALSA-2025:1681')], NOW);
    const before = await dumpRows(db);
    const failedAt = new Date('2026-11-27T00:00:00.000Z');
    await store.recordFeedError({ ...ALMA9, kind: 'unknown' }, 'cut.jsonl.gz: gzip data is truncated or corrupt (PW_ERR_FEED_FORMAT)', failedAt);
    assert.deepEqual(await dumpRows(db), before);
    const feed = (await store.feeds())[0]!;
    assert.equal(feed.lastError, '2026-11-27T00:00:00.000Z cut.jsonl.gz: gzip data is truncated or corrupt (PW_ERR_FEED_FORMAT)');
    assert.equal(feed.kind, 'osv', 'the failed attempt does not rename what the feed holds');
    assert.equal(feed.records, 1);
    assert.equal(feed.checkedAt, NOW.toISOString(), 'a failed attempt is no check: staleness keeps counting');
    await store.importAdvisories(ALMA9, [realAlma9Osv('ALSA-2025:1681')], failedAt);
    assert.equal((await store.feeds())[0]?.lastError, null);
  });

  test('recordFeedError for a feed never imported makes an empty row that says why', async (t) => {
    const { store: { advisories: store } } = await engine.open(t);
    await store.recordFeedError({ source: 'osv-debian', kind: 'unknown', location: 'https://example.invalid/all.zip' }, 'HTTP 404', NOW);
    const feed = (await store.feeds())[0]!;
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

  test('validators, check times and bundle times are kept per feed; the signature moves with imports only', async (t) => {
    const { store: { advisories: store } } = await engine.open(t);
    assert.deepEqual(await store.feedsSignature(), { feeds: 0, lastImport: '' });
    await store.importAdvisories(ALMA9, [realAlma9Osv('ALSA-2025:1681')], NOW);
    const signature = await store.feedsSignature();
    assert.deepEqual(signature, { feeds: 1, lastImport: NOW.toISOString() });
    await store.setFeedValidators(ALMA9.source, '"etag-1"', 'Wed, 26 Nov 2026 18:00:00 GMT');
    const later = new Date(NOW.getTime() + 60_000);
    await store.touchFeed(ALMA9.source, later);
    assert.equal(await store.bundleCreatedAt(ALMA9.source), null);
    await store.setBundleCreatedAt(ALMA9.source, '2026-11-25T00:00:00.000Z');
    assert.equal(await store.bundleCreatedAt(ALMA9.source), '2026-11-25T00:00:00.000Z');
    const feed = (await store.feeds())[0]!;
    assert.deepEqual([feed.etag, feed.lastModified, feed.checkedAt], ['"etag-1"', 'Wed, 26 Nov 2026 18:00:00 GMT', later.toISOString()]);
    assert.deepEqual(await store.feedsSignature(), signature, 'a check is no import');
  });

  test('a failure half-way through rolls the whole feed back, feed row included', async (t) => {
    const { store: { advisories: store }, sql: db } = await engine.open(t);
    await store.importAdvisories(ALMA9, [realAlma9Osv('ALSA-2025:1681')], NOW);
    const before = await dumpRows(db);
    const changes = await db.get<{ n: number }>(changeCount);
    const feedsBefore = await store.feeds();
    const good = realAlma9Osv('ALSA-2026:42736');
    // What a parser bug would hand over: the store's NOT NULL catches it mid-transaction.
    const broken = { ...realAlma9Osv('ALSA-2025:1681'), id: 'ALSA-BROKEN', severity: null as unknown as Severity };
    await assert.rejects(store.importAdvisories({ ...ALMA9, kind: 'osv+broken' }, [good, broken], new Date('2026-11-27T00:00:00.000Z')), { code: NOT_NULL[engine.name] });
    assert.deepEqual(await dumpRows(db), before);
    assert.deepEqual(await store.feeds(), feedsBefore);
    assert.deepEqual(await db.get(changeCount), changes, 'nor does the change log keep a row of it');
  });

  test('a bundle is stored whole or not at all', async (t) => {
    const { store: { advisories: store }, sql: db } = await engine.open(t);
    const bind = realAlma9Osv('ALSA-2025:1681');
    const feeds = [
      { feed: ALMA9, advisories: [bind], kev: [] },
      { feed: { source: 'broken', kind: 'osv', location: null }, advisories: [{ ...bind, id: 'ALSA-BROKEN', severity: null as unknown as Severity }], kev: [] },
    ];
    await assert.rejects(store.importBundle(feeds, '2026-11-25T00:00:00.000Z', NOW), { code: NOT_NULL[engine.name] });
    assert.deepEqual([await store.feeds(), (await dumpRows(db)).advisories], [[], 0]);
    const [r] = await store.importBundle(feeds.slice(0, 1), '2026-11-25T00:00:00.000Z', NOW);
    assert.deepEqual([r?.advisories.added, r?.epss], [1, null]);
    assert.equal(await store.bundleCreatedAt(ALMA9.source), '2026-11-25T00:00:00.000Z');
  });

  test('two imports of the same new advisories at once: both succeed, each advisory stored once', async (t) => {
    const { store: { advisories: store }, sql: db } = await engine.open(t);
    const advisories = (await almaAll()).slice(0, 300);
    const [a, b] = await Promise.all([store.importAdvisories(ALMA9, advisories, NOW), store.importAdvisories({ ...ALMA9, source: 'mirror' }, advisories, NOW)]);
    // One of them came second (SQLite's one writer, PostgreSQL's feed write lock) and found the rows there.
    assert.equal(a.added + b.added, 300);
    assert.equal(a.updated + b.updated + a.unchanged + b.unchanged, 300);
    assert.equal((await dumpRows(db)).advisories, 300);
  });
});

onEachEngine('AdvisoryStore feed input with U+0000', (engine) => {
  const NUL = '\u0000';
  const sample = (): Record<string, unknown> => JSON.parse(readFileSync(dataPath('osv', 'samples', 'ALSA-2022_4587.json'), 'utf8')) as Record<string, unknown>;
  const kevEntry = (cveID: string, vendorProject: string): Record<string, string> => kevCatalogEntry({ cveID, vendorProject });
  const vendorOf = sql('SELECT vendor_project FROM kev WHERE cve = ?');

  // A NUL in JSON text arrives as the escape `\u0000`: PostgreSQL's text and jsonb refuse it, SQLite takes it.
  test('a feed file with NUL in its records imports whole minus the bad record, the same on both engines, with the reasons reported', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const dir = await tempDir(t);
    const osvPath = join(dir, 'osv.jsonl');
    const lines = [sample(), { ...sample(), id: 'ALSA-2022:9001', summary: `Important: pcs${NUL} update` }, { ...sample(), id: `ALSA-2022:90${NUL}02` }];
    await writeFile(osvPath, lines.map((l) => JSON.stringify(l)).join('\n'));
    const osv = await importFeedPath(store.advisories, osvPath, { name: 'hostile-osv', now: NOW });
    assert.deepEqual(osv.advisories, { added: 2, updated: 0, unchanged: 0 });
    assert.equal(osv.parsed.report.warningCount('PW_ERR_FEED_FORMAT'), 2, 'one summary repaired, one record refused');
    assert.deepEqual(
      (await all(store.advisories)).map((a) => [a.id, a.summary]),
      [
        ['ALSA-2022:4587', 'Important: pcs security update'],
        ['ALSA-2022:9001', 'Important: pcs\uFFFD update'],
      ],
    );
    assert.deepEqual(await affectedRows(db, 'ALSA-2022:9001'), ['AlmaLinux:9/pcs', 'AlmaLinux:9/pcs-snmp'], 'the affected view reads the repaired advisory (a jsonb cast on PostgreSQL)');

    const kevPath = join(dir, 'kev.json');
    await writeFile(kevPath, JSON.stringify({ catalogVersion: '2099.01.01', vulnerabilities: [kevEntry('CVE-2099-0001', 'Acme'), kevEntry('CVE-2099-0002', `Ac${NUL}me`), kevEntry(`CVE-2099-0003${NUL}`, 'Acme')] }));
    const kev = await importFeedPath(store.advisories, kevPath, { name: 'hostile-kev', now: NOW });
    assert.deepEqual(kev.kev, { added: 2, updated: 0, unchanged: 0 });
    assert.equal(kev.parsed.report.warningCount('PW_ERR_FEED_FORMAT'), 2, 'one vendor repaired, one entry skipped');
    assert.deepEqual([...(await store.advisories.kev()).keys()].sort(), ['CVE-2099-0001', 'CVE-2099-0002']);
    assert.deepEqual(await db.get(vendorOf, ['CVE-2099-0002']), { vendor_project: 'Ac\uFFFDme' });
  });

  test('what the parsing boundary keeps out: on PostgreSQL a NUL reaching the store fails the whole import, and nothing of it stays', async (t) => {
    const { store: { advisories: store }, sql: db } = await engine.open(t);
    const good = realAlma9Osv('ALSA-2026:42736');
    const hostile = { ...realAlma9Osv('ALSA-2025:1681'), summary: `bind${NUL}` };
    const importing = store.importAdvisories(ALMA9, [good, hostile], NOW);
    if (engine.name === 'sqlite') {
      // SQLite holds it: the reason the rule sits at the parsing boundary, before either engine.
      assert.equal((await importing).added, 2);
      return;
    }
    await assert.rejects(importing);
    assert.deepEqual([await store.feeds(), (await dumpRows(db)).advisories], [[], 0]);
  });
});

onEachEngine('AdvisoryStore feed removal', (engine) => {
  test('feed remove deletes the feed, its advisories, KEV entries and coverage, with its audit row; an unknown name is refused', async (t) => {
    const { store: { advisories: store }, sql: db } = await engine.open(t);
    await store.importFeed(ALMA9, [realAlma9Osv('ALSA-2025:1681'), realAlma9Osv('ALSA-2026:42736')], [], NOW);
    const kev: KevEntry = { cve: 'CVE-2024-1086', dateAdded: '2024-05-30', dueDate: '2024-06-20', vendorProject: 'Linux', product: 'Kernel', knownRansomwareCampaignUse: 'Known' };
    await store.importKev({ source: 'kev', kind: 'kev-json', location: null }, [kev], NOW);
    await assert.rejects(store.removeFeed('nope', 'cli:test', NOW), { code: 'PW_ERR_FEED_UNKNOWN' });
    assert.deepEqual(await store.removeFeed(ALMA9.source, 'cli:test', NOW), { advisories: 2, kev: 0 });
    assert.deepEqual(await store.removeFeed('kev', 'cli:test', NOW), { advisories: 0, kev: 1 });
    assert.deepEqual(await store.feeds(), []);
    assert.deepEqual(await store.coverage(), []);
    assert.equal((await store.kev()).size, 0);
    const left = await dumpRows(db);
    assert.deepEqual([left.advisories, left.affected, left.kev], [0, 0, 0]);
    assert.deepEqual(await db.all(auditOf, ['feed.remove']), [
      { actor: 'cli:test', action: 'feed.remove', target: 'feed:almalinux9' },
      { actor: 'cli:test', action: 'feed.remove', target: 'feed:kev' },
    ]);
  });
});

onEachEngine('AdvisoryStore KEV', (engine) => {
  const JSON_KEV = { source: 'kev-json', kind: 'kev-json', location: dataPath('kev', 'known_exploited_vulnerabilities.json.gz') };
  const CSV_KEV = { source: 'kev-csv', kind: 'kev-csv', location: dataPath('kev', 'known_exploited_vulnerabilities-2025-11-17.csv.gz') };

  test('the real JSON (1404) and CSV (1460) catalogs as two feeds: counts per feed, merged per CVE, re-imports unchanged', async (t) => {
    const { store: { advisories: store }, sql: db } = await engine.open(t);
    const json = await parseFeedPath(JSON_KEV.location);
    const csv = await parseFeedPath(CSV_KEV.location);
    assert.deepEqual(await store.importKev(JSON_KEV, json.kev, NOW), { added: 1404, updated: 0, unchanged: 0 });
    assert.deepEqual(await store.importKev(CSV_KEV, csv.kev, NOW), { added: 1460, updated: 0, unchanged: 0 });
    const before = await dumpRows(db);
    // The two catalogs disagree on CVE-2024-1086's ransomware use: neither import may
    // overwrite the other's row, or every re-import would report 6 updates.
    assert.deepEqual(await store.importKev(JSON_KEV, json.kev, NOW), { added: 0, updated: 0, unchanged: 1404 });
    assert.deepEqual(await store.importKev(CSV_KEV, csv.kev, NOW), { added: 0, updated: 0, unchanged: 1460 });
    assert.deepEqual(await dumpRows(db), before);
    assert.deepEqual(await db.all(ransomwareOf, ['CVE-2024-1086']), [
      { feed: 'kev-csv', ransomware: 'Known' },
      { feed: 'kev-json', ransomware: 'Unknown' },
    ]);
    const merged = await store.kev();
    assert.equal(merged.size, 1460);
    assert.deepEqual(merged.get('CVE-2024-1086'), { dueDate: '2024-06-20', dateAdded: '2024-05-30' });
    const feeds = new Map((await store.feeds()).map((f) => [f.source, f]));
    assert.deepEqual([feeds.get('kev-json')?.records, feeds.get('kev-json')?.newest], [1404, '2025-08-25T00:00:00.000Z']);
    assert.deepEqual([feeds.get('kev-csv')?.records, feeds.get('kev-csv')?.newest], [1460, '2025-11-14T00:00:00.000Z']);
    let exported = 0;
    for await (const r of store.feedRecords(JSON_KEV.source)) if ('kev' in r) exported++;
    assert.equal(exported, 1404, 'a feed\'s KEV entries are exported page by page too');
  });

  test('a changed KEV entry is an update of that feed only', async (t) => {
    const { store: { advisories: store }, sql: db } = await engine.open(t);
    const json = await parseFeedPath(JSON_KEV.location);
    await store.importKev(JSON_KEV, json.kev, NOW);
    const moved = json.kev.map((k) => (k.cve === 'CVE-2024-1086' ? { ...k, dueDate: '2024-06-10', knownRansomwareCampaignUse: 'Known' } : k));
    assert.deepEqual(await store.importKev(JSON_KEV, moved, NOW), { added: 0, updated: 1, unchanged: 1403 });
    assert.deepEqual(await db.all(dueOf, ['CVE-2024-1086']), [{ due_date: '2024-06-10', ransomware: 'Known' }]);
    assert.equal((await store.kev()).get('CVE-2024-1086')?.dueDate, '2024-06-10');
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
    test(`version-1 KEV rows with ${c.name} owns them`, async (t) => {
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
      const records = Object.fromEntries((await asyncAdvisories(db).feeds()).map((f) => [f.source, f.records]));
      assert.equal(records[c.owner], 2);
      assert.equal(records.alma, 0, 'records are recounted from the rows');
    });
  }
});
