/**
 * Advisories, feeds and KEV, on SQLite or PostgreSQL. An import is one transaction: a feed
 * file that fails to parse never reaches here, and one that fails half-way through is
 * rolled back, so the last good data stays. Each advisory is stored with a content hash, so
 * re-importing the same data writes nothing.
 *
 * An import writes many rows: SQLite runs a prepared statement per row (the fastest way
 * there), PostgreSQL one set-based statement per table and batch (a round trip per row is
 * what makes it slow, POSTGRES.md), both deciding added, updated and unchanged the same way.
 */
import { createHash } from 'node:crypto';
import type { FeedCoverage } from '../domain/correlate/coverage.ts';
import type { EpssSet } from '../domain/feeds/epss.ts';
import type { Advisory, KevEntry } from '../domain/feeds/types.ts';
import type { EpssImport } from './epss.ts';
import { type FeedRemoved, removeFeed } from './feed-removal.ts';
import type { PartScope } from './part-scope.ts';
import type { SqlExecutor } from './sql/executor.ts';
import { upsertBatched } from './sql/batched.ts';
import { sql } from './sql/query.ts';

/** Rows a paged read takes per statement. */
const READ_PAGE = 1000;
/** Rows a set-based PostgreSQL statement carries: an advisory's JSON is a few kB, so a batch stays some MB. */
const PG_BATCH = 2000;

export interface FeedInfo {
  source: string;
  kind: string;
  location: string | null;
}

export interface KevCounts {
  added: number;
  updated: number;
  unchanged: number;
}

export interface ImportResult {
  added: number;
  updated: number;
  unchanged: number;
  /** Advisories that were added or updated, for the correlator's index. */
  changed: Advisory[];
}

export interface FeedRow {
  source: string;
  kind: string;
  location: string | null;
  records: number;
  newest: string | null;
  importedAt: string | null;
  checkedAt: string | null;
  lastError: string | null;
  etag: string | null;
  lastModified: string | null;
}

function hashOf(data: string): string {
  return createHash('sha256').update(data).digest('base64url');
}

/**
 * Feed writes on PostgreSQL take this transaction lock first ("pwfeeds" read as a number), so
 * they run one after another as on SQLite's one writer: two imports naming the same advisory
 * (a CLI `feed import` beside a replica's sync) would otherwise both read it as new, both
 * count it added, and race on the coverage they recompute. Imports are rare; readers never wait.
 */
export const lockFeedWrites = sql({ postgres: 'SELECT pg_advisory_xact_lock(?::bigint)' });
export const FEED_WRITE_LOCK = 0x70776665656473n.toString();

const feedsSignature = sql('SELECT count(*) AS n, max(imported_at) AS last FROM feeds');
const getHash = sql('SELECT hash, feed FROM advisories WHERE source = ? AND id = ?');
const feedHashes = sql('SELECT source, id, hash FROM advisories WHERE feed = ?');
const getHashes = sql({
  postgres: `SELECT a.source, a.id, a.hash, a.feed FROM advisories a
             JOIN unnest(?::text[], ?::text[]) AS k (source, id) ON a.source = k.source AND a.id = k.id`,
});
// A feed's coverage is what its own advisories name; recomputed from the stored data
// (not the batch) so an updated advisory that drops an ecosystem drops it here too.
const clearCoverage = sql('DELETE FROM feed_coverage WHERE feed = ?');
const fillCoverage = sql({
  sqlite: `INSERT OR IGNORE INTO feed_coverage (feed, ecosystem)
           SELECT a.feed, json_extract(e.value, '$.ecosystem') FROM advisories a, json_each(a.data, '$.affected') e
           WHERE a.feed = ? AND json_extract(e.value, '$.ecosystem') IS NOT NULL`,
  postgres: `INSERT INTO feed_coverage (feed, ecosystem)
             SELECT DISTINCT a.feed, e.value ->> 'ecosystem' FROM advisories a,
               jsonb_array_elements(CASE WHEN jsonb_typeof(a.data::jsonb -> 'affected') = 'array' THEN a.data::jsonb -> 'affected' ELSE '[]'::jsonb END) e
             WHERE a.feed = ? AND e.value ->> 'ecosystem' IS NOT NULL
             ON CONFLICT DO NOTHING`,
});
const ADVISORY_CONFLICT = `ON CONFLICT (source, id) DO UPDATE SET feed = excluded.feed, hash = excluded.hash, severity = excluded.severity,
  published = excluded.published, modified = excluded.modified, withdrawn = excluded.withdrawn, data = excluded.data`;
const upsertAdvisory = sql(`INSERT INTO advisories (feed, source, id, hash, severity, published, modified, withdrawn, data)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ${ADVISORY_CONFLICT}`);
const upsertAdvisories = sql({
  postgres: `INSERT INTO advisories (feed, source, id, hash, severity, published, modified, withdrawn, data)
    SELECT ?::text, u.* FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[]) AS u ${ADVISORY_CONFLICT}`,
});
const upsertFeed = sql(
  `INSERT INTO feeds (source, kind, location, checked_at) VALUES (?, ?, ?, ?)
   ON CONFLICT (source) DO UPDATE SET kind = excluded.kind, location = excluded.location, checked_at = excluded.checked_at, last_error = NULL`,
);
// A feed's records are its advisories plus its KEV entries (a directory may hold
// both); KEV dates are days, stored as midnight UTC so `newest` compares as one kind.
const feedCounts = sql(
  `UPDATE feeds SET
     records = (SELECT count(*) FROM advisories WHERE feed = ?) + (SELECT count(*) FROM kev WHERE feed = ?),
     newest = (SELECT max(d) FROM (
       SELECT max(coalesce(modified, published)) AS d FROM advisories WHERE feed = ?
       UNION ALL SELECT max(date_added) || 'T00:00:00.000Z' FROM kev WHERE feed = ?) AS dates),
     imported_at = CASE WHEN ? = 1 THEN ? ELSE coalesce(imported_at, ?) END
   WHERE source = ?`,
);
const getKev = sql('SELECT date_added, due_date, vendor_project, product, ransomware FROM kev WHERE feed = ? AND cve = ?');
const getKevs = sql({ postgres: 'SELECT cve, date_added, due_date, vendor_project, product, ransomware FROM kev WHERE feed = ? AND cve = ANY (?::text[])' });
const KEV_CONFLICT = `ON CONFLICT (feed, cve) DO UPDATE SET date_added = excluded.date_added, due_date = excluded.due_date,
  vendor_project = excluded.vendor_project, product = excluded.product, ransomware = excluded.ransomware`;
const putKev = sql(`INSERT INTO kev (feed, cve, date_added, due_date, vendor_project, product, ransomware) VALUES (?, ?, ?, ?, ?, ?, ?) ${KEV_CONFLICT}`);
const putKevs = sql({
  postgres: `INSERT INTO kev (feed, cve, date_added, due_date, vendor_project, product, ransomware)
    SELECT ?::text, u.* FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[]) AS u ${KEV_CONFLICT}`,
});
const recordError = sql(
  `INSERT INTO feeds (source, kind, location, last_error) VALUES (?, ?, ?, ?)
   ON CONFLICT (source) DO UPDATE SET last_error = excluded.last_error`,
);
const setValidators = sql('UPDATE feeds SET etag = ?, last_modified = ? WHERE source = ?');
const touch = sql('UPDATE feeds SET checked_at = ?, last_error = NULL WHERE source = ?');
const advisoryPage = sql('SELECT source, id, data FROM advisories WHERE (source, id) > (?, ?) ORDER BY source, id LIMIT ?');
const feedAdvisoryPage = sql('SELECT source, id, data FROM advisories WHERE feed = ? AND (source, id) > (?, ?) ORDER BY source, id LIMIT ?');
const feedKevPage = sql('SELECT cve, date_added, due_date, vendor_project, product, ransomware FROM kev WHERE feed = ? AND cve > ? ORDER BY cve LIMIT ?');
const bundleCreatedAt = sql('SELECT bundle_created_at FROM feeds WHERE source = ?');
const setBundleCreatedAt = sql('UPDATE feeds SET bundle_created_at = ? WHERE source = ?');
const mergedKev = sql('SELECT cve, min(due_date) AS due_date, min(date_added) AS date_added FROM kev GROUP BY cve');
const coverage = sql('SELECT f.source, f.checked_at, c.ecosystem FROM feeds f LEFT JOIN feed_coverage c ON c.feed = f.source ORDER BY f.source, c.ecosystem');
const feeds = sql('SELECT * FROM feeds ORDER BY source');
// A revoked agent's host needs no feeds.
const enrolledEcosystems = sql(
  `SELECT DISTINCT h.ecosystem FROM hosts h JOIN agents a ON a.id = h.agent_id
   WHERE a.revoked_at IS NULL AND h.ecosystem IS NOT NULL ORDER BY h.ecosystem`,
);

type KevRow = { date_added: string; due_date: string; vendor_project: string; product: string; ransomware: string | null };
type FeedRecord = { advisory: Advisory } | { kev: KevEntry };

/** An advisory as its row holds it. */
interface AdvisoryRow {
  feed: string;
  source: string;
  id: string;
  hash: string;
  severity: string;
  published: string | null;
  modified: string | null;
  withdrawn: string | null;
  data: string;
}

function advisoryRow(feed: string, a: Advisory): AdvisoryRow {
  const data = JSON.stringify(a);
  return { feed, source: a.source, id: a.id, hash: hashOf(data), severity: a.severity, published: a.published, modified: a.modified, withdrawn: a.withdrawn, data };
}

const keyOf = (source: string, id: string): string => `${source}\u0000${id}`;

/**
 * Counts an advisory against what is stored under its id (added, updated or unchanged, and
 * the feed it moves from), the same on both engines; true when its row is to be written.
 */
function tally(old: { hash: string; feed: string } | undefined, row: AdvisoryRow, result: ImportResult, touched: Set<string>): boolean {
  if (old?.hash === row.hash) {
    result.unchanged++;
    return false;
  }
  if (old === undefined) result.added++;
  else result.updated++;
  if (old !== undefined && old.feed !== row.feed) touched.add(old.feed);
  return true;
}

function sameKev(old: KevRow | undefined, e: KevEntry): boolean {
  return old !== undefined && old.date_added === e.dateAdded && old.due_date === e.dueDate && old.vendor_project === e.vendorProject && old.product === e.product && old.ransomware === e.knownRansomwareCampaignUse;
}

function kevRow(e: KevEntry): KevRow {
  return { date_added: e.dateAdded, due_date: e.dueDate, vendor_project: e.vendorProject, product: e.product, ransomware: e.knownRansomwareCampaignUse };
}

async function storeAdvisoriesSqlite(ex: SqlExecutor, feed: string, advisories: readonly Advisory[], result: ImportResult, touched: Set<string>): Promise<void> {
  // The feed's own rows in one read: a re-import (most syncs) compares them in memory, and
  // only an id this feed does not hold yet is looked up on its own.
  const own = new Map<string, { hash: string; feed: string }>();
  for (const r of await ex.all<{ source: string; id: string; hash: string }>(feedHashes, [feed])) own.set(keyOf(r.source, r.id), { hash: r.hash, feed });
  for (const a of advisories) {
    const row = advisoryRow(feed, a);
    const key = keyOf(a.source, a.id);
    const old = own.get(key) ?? (await ex.get<{ hash: string; feed: string }>(getHash, [a.source, a.id]));
    if (!tally(old, row, result, touched)) continue;
    await ex.run(upsertAdvisory, [row.feed, row.source, row.id, row.hash, row.severity, row.published, row.modified, row.withdrawn, row.data]);
    // An id given again later in this import is compared with what was just written.
    own.set(key, { hash: row.hash, feed });
    result.changed.push(a);
  }
}

async function storeAdvisoriesPostgres(ex: SqlExecutor, feed: string, advisories: readonly Advisory[], result: ImportResult, touched: Set<string>): Promise<void> {
  const items = advisories.map((advisory) => ({ advisory, row: advisoryRow(feed, advisory) }));
  await upsertBatched<(typeof items)[number], { source: string; id: string; hash: string; feed: string }>(ex, items, {
    size: PG_BATCH,
    key: (x) => keyOf(x.row.source, x.row.id),
    read: getHashes,
    readParams: (batch) => [batch.map((x) => x.row.source), batch.map((x) => x.row.id)],
    storedKey: (r) => keyOf(r.source, r.id),
    judge: (old, { advisory, row }) => {
      if (!tally(old, row, result, touched)) return undefined;
      result.changed.push(advisory);
      return { source: row.source, id: row.id, hash: row.hash, feed };
    },
    write: upsertAdvisories,
    leading: [feed],
    columns: [(x) => x.row.source, (x) => x.row.id, (x) => x.row.hash, (x) => x.row.severity, (x) => x.row.published, (x) => x.row.modified, (x) => x.row.withdrawn, (x) => x.row.data],
  });
}

async function storeKevSqlite(ex: SqlExecutor, feed: string, entries: readonly KevEntry[], counts: KevCounts): Promise<void> {
  for (const e of entries) {
    const old = await ex.get<KevRow>(getKev, [feed, e.cve]);
    if (sameKev(old, e)) {
      counts.unchanged++;
      continue;
    }
    if (old === undefined) counts.added++;
    else counts.updated++;
    await ex.run(putKev, [feed, e.cve, e.dateAdded, e.dueDate, e.vendorProject, e.product, e.knownRansomwareCampaignUse]);
  }
}

async function storeKevPostgres(ex: SqlExecutor, feed: string, entries: readonly KevEntry[], counts: KevCounts): Promise<void> {
  await upsertBatched<KevEntry, KevRow & { cve: string }>(ex, entries, {
    size: PG_BATCH,
    key: (e) => e.cve,
    read: getKevs,
    readParams: (batch) => [feed, batch.map((e) => e.cve)],
    storedKey: (r) => r.cve,
    judge: (old, e) => {
      if (sameKev(old, e)) {
        counts.unchanged++;
        return undefined;
      }
      if (old === undefined) counts.added++;
      else counts.updated++;
      return { cve: e.cve, ...kevRow(e) };
    },
    write: putKevs,
    leading: [feed],
    columns: [(e) => e.cve, (e) => e.dateAdded, (e) => e.dueDate, (e) => e.vendorProject, (e) => e.product, (e) => e.knownRansomwareCampaignUse],
  });
}

export class AdvisoryStore {
  readonly #scope: PartScope;

  constructor(scope: PartScope) {
    this.#scope = scope;
  }

  /**
   * Stores everything one feed path gave, advisories and KEV entries, in one transaction:
   * either all of it is there afterwards or none of it.
   */
  importFeed(feed: FeedInfo, advisories: readonly Advisory[], kev: readonly KevEntry[], now = new Date()): Promise<{ advisories: ImportResult; kev: KevCounts }> {
    const nowIso = now.toISOString();
    return this.#scope.atomic(async ({ ex }) => {
      // Made afresh on every run: PostgreSQL may run this function again.
      const result: ImportResult = { added: 0, updated: 0, unchanged: 0, changed: [] };
      const counts: KevCounts = { added: 0, updated: 0, unchanged: 0 };
      if (ex.dialect === 'postgres') await ex.run(lockFeedWrites, [FEED_WRITE_LOCK]);
      await ex.run(upsertFeed, [feed.source, feed.kind, feed.location, nowIso]);
      // Feeds that held one of these advisories before (the same id imported under another name) lose it.
      const touched = new Set<string>();
      if (ex.dialect === 'postgres') {
        await storeAdvisoriesPostgres(ex, feed.source, advisories, result, touched);
        await storeKevPostgres(ex, feed.source, kev, counts);
      } else {
        await storeAdvisoriesSqlite(ex, feed.source, advisories, result, touched);
        await storeKevSqlite(ex, feed.source, kev, counts);
      }
      const changed = result.changed.length + counts.added + counts.updated > 0;
      await ex.run(feedCounts, [feed.source, feed.source, feed.source, feed.source, changed ? 1 : 0, nowIso, nowIso, feed.source]);
      if (result.changed.length > 0) {
        touched.add(feed.source);
        for (const f of touched) {
          await ex.run(clearCoverage, [f]);
          await ex.run(fillCoverage, [f]);
        }
      }
      return { advisories: result, kev: counts };
    });
  }

  /** Replaces the stored EPSS score set with this feed's, atomically (collector/store/epss.ts). */
  importEpss(feed: FeedInfo, set: EpssSet, now = new Date()): Promise<EpssImport> {
    return this.#scope.store.epss.replace(feed, set, now);
  }

  /** The EPSS set this feed holds, for a bundle; null when it holds none. */
  epssSetOf(source: string): Promise<EpssSet | null> {
    return this.#scope.store.epss.setOf(source);
  }

  /** Stores a whole feed's advisories atomically. */
  async importAdvisories(feed: FeedInfo, advisories: readonly Advisory[], now = new Date()): Promise<ImportResult> {
    return (await this.importFeed(feed, advisories, [], now)).advisories;
  }

  /** Records that a feed could not be fetched or parsed; its last good data stays. */
  async recordFeedError(feed: FeedInfo, message: string, now = new Date()): Promise<void> {
    await this.#scope.ex.run(recordError, [feed.source, feed.kind, feed.location, `${now.toISOString()} ${message}`]);
  }

  async setFeedValidators(source: string, etag: string | null, lastModified: string | null): Promise<void> {
    await this.#scope.ex.run(setValidators, [etag, lastModified, source]);
  }

  async touchFeed(source: string, now = new Date()): Promise<void> {
    await this.#scope.ex.run(touch, [now.toISOString(), source]);
  }

  /** Every stored advisory, read a page at a time (keyset on the primary key): no cursor stays open between pages. */
  async *allAdvisories(): AsyncGenerator<Advisory> {
    for (let after: [string, string] = ['', '']; ; ) {
      const rows = await this.#scope.ex.all<{ source: string; id: string; data: string }>(advisoryPage, [after[0], after[1], READ_PAGE]);
      for (const row of rows) yield JSON.parse(row.data) as Advisory;
      const last = rows[rows.length - 1];
      if (rows.length < READ_PAGE || last === undefined) return;
      after = [last.source, last.id];
    }
  }

  /** One feed's advisories and KEV entries as stored (what `feed export` puts in a bundle), a page at a time. */
  async *feedRecords(source: string): AsyncGenerator<FeedRecord> {
    for (let after: [string, string] = ['', '']; ; ) {
      const rows = await this.#scope.ex.all<{ source: string; id: string; data: string }>(feedAdvisoryPage, [source, after[0], after[1], READ_PAGE]);
      for (const row of rows) yield { advisory: JSON.parse(row.data) as Advisory };
      const last = rows[rows.length - 1];
      if (rows.length < READ_PAGE || last === undefined) break;
      after = [last.source, last.id];
    }
    for (let after = ''; ; ) {
      const rows = await this.#scope.ex.all<KevRow & { cve: string }>(feedKevPage, [source, after, READ_PAGE]);
      for (const r of rows) {
        yield { kev: { cve: r.cve, dateAdded: r.date_added, dueDate: r.due_date, vendorProject: r.vendor_project, product: r.product, knownRansomwareCampaignUse: r.ransomware } };
      }
      const last = rows[rows.length - 1];
      if (rows.length < READ_PAGE || last === undefined) return;
      after = last.cve;
    }
  }

  /**
   * A feed bundle's feeds in one transaction, each stored as importFeed stores a feed
   * file, and marked with the bundle's time: the whole bundle is there afterwards or none.
   */
  importBundle(
    feeds: readonly { feed: FeedInfo; advisories: readonly Advisory[]; kev: readonly KevEntry[]; epss?: EpssSet | undefined }[],
    createdAt: string,
    now = new Date(),
  ): Promise<{ advisories: ImportResult; kev: KevCounts; epss: EpssImport | null }[]> {
    return this.#scope.atomic(async ({ store }) => {
      const out: { advisories: ImportResult; kev: KevCounts; epss: EpssImport | null }[] = [];
      for (const f of feeds) {
        const r = await store.advisories.importFeed(f.feed, f.advisories, f.kev, now);
        // After importFeed, which counts the feed's advisories and KEV entries only: the set's scores are added to them.
        const epss = f.epss === undefined ? null : await store.advisories.importEpss(f.feed, f.epss, now);
        await store.advisories.setBundleCreatedAt(f.feed.source, createdAt);
        out.push({ ...r, epss });
      }
      return out;
    });
  }

  /** When the newest feed bundle imported for this feed was made; an older one is refused (collector/services/airgap/feed-bundle.ts). */
  async bundleCreatedAt(source: string): Promise<string | null> {
    return (await this.#scope.ex.get<{ bundle_created_at: string | null }>(bundleCreatedAt, [source]))?.bundle_created_at ?? null;
  }

  async setBundleCreatedAt(source: string, createdAt: string): Promise<void> {
    await this.#scope.ex.run(setBundleCreatedAt, [createdAt, source]);
  }

  /** Stores a KEV catalog atomically, as this feed's entries (other KEV feeds keep theirs). */
  async importKev(feed: FeedInfo, entries: readonly KevEntry[], now = new Date()): Promise<KevCounts> {
    return (await this.importFeed(feed, [], entries, now)).kev;
  }

  /**
   * Every known-exploited CVE, merged over the KEV feeds: the earliest due date and date
   * added any of them gives (a deadline is never pushed back by a second copy).
   */
  async kev(): Promise<Map<string, { dueDate: string; dateAdded: string }>> {
    const out = new Map<string, { dueDate: string; dateAdded: string }>();
    for (const r of await this.#scope.ex.all<{ cve: string; due_date: string; date_added: string }>(mergedKev)) out.set(r.cve, { dueDate: r.due_date, dateAdded: r.date_added });
    return out;
  }

  /**
   * Each feed with the ecosystems its advisories name (kept by importFeed) and its last
   * successful check: what decides whether a host was looked at (correlate/coverage.ts).
   */
  async coverage(): Promise<FeedCoverage[]> {
    const out = new Map<string, FeedCoverage & { ecosystems: string[] }>();
    for (const r of await this.#scope.ex.all<{ source: string; checked_at: string | null; ecosystem: string | null }>(coverage)) {
      let f = out.get(r.source);
      if (f === undefined) out.set(r.source, (f = { source: r.source, checkedAt: r.checked_at, ecosystems: [] }));
      if (r.ecosystem !== null) f.ecosystems.push(r.ecosystem);
    }
    return [...out.values()];
  }

  /**
   * Changes when a feed is added or removed or its data changes (imported_at moves only
   * then, a KEV import too): what cached due dates and counts must follow.
   */
  async feedsSignature(): Promise<{ feeds: number; lastImport: string }> {
    const r = await this.#scope.ex.get<{ n: number; last: string | null }>(feedsSignature);
    return { feeds: r?.n ?? 0, lastImport: r?.last ?? '' };
  }

  async feeds(): Promise<FeedRow[]> {
    const rows = await this.#scope.ex.all<{
      source: string;
      kind: string;
      location: string | null;
      records: number;
      newest: string | null;
      imported_at: string | null;
      checked_at: string | null;
      last_error: string | null;
      etag: string | null;
      last_modified: string | null;
    }>(feeds);
    return rows.map((r) => ({
      source: r.source,
      kind: r.kind,
      location: r.location,
      records: r.records,
      newest: r.newest,
      importedAt: r.imported_at,
      checkedAt: r.checked_at,
      lastError: r.last_error,
      etag: r.etag,
      lastModified: r.last_modified,
    }));
  }

  /** Removes a feed with its advisories and KEV entries, audited, in one transaction (store/feed-removal.ts). */
  removeFeed(source: string, actor: string, now = new Date()): Promise<FeedRemoved> {
    return removeFeed(this.#scope, source, actor, now);
  }

  /** The ecosystems of the fleet's enrolled hosts (`Debian:12`, `Alpine:v3.21`): what the feed catalogue picks its entries by. */
  async enrolledEcosystems(): Promise<string[]> {
    return (await this.#scope.ex.all<{ ecosystem: string }>(enrolledEcosystems)).map((r) => r.ecosystem);
  }
}
