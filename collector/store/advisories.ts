/**
 * Advisories, feeds and KEV in SQLite. An import is one transaction: a feed file that
 * fails to parse never reaches here, and one that fails half-way through is rolled back,
 * so the last good data stays. Each advisory is stored with a content hash, so
 * re-importing the same data writes nothing.
 */
import { createHash } from 'node:crypto';
import type { FeedCoverage } from '../domain/correlate/coverage.ts';
import type { EpssSet } from '../domain/feeds/epss.ts';
import type { Advisory, KevEntry } from '../domain/feeds/types.ts';
import type { Db } from './db.ts';
import { EpssStore, type EpssImport } from './epss.ts';

/** Rows a paged read takes per statement. */
const READ_PAGE = 1000;

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

export class AdvisoryStore {
  readonly #db: Db;
  readonly #getHash;
  readonly #upsert;
  readonly #clearCoverage;
  readonly #fillCoverage;
  readonly #upsertFeed;
  readonly #feedCounts;
  readonly #getKev;
  readonly #putKev;
  readonly #feedsSignature;

  constructor(db: Db) {
    this.#db = db;
    this.#feedsSignature = db.prepare<[], { n: number; last: string | null }>('SELECT count(*) AS n, max(imported_at) AS last FROM feeds');
    this.#getHash = db.prepare<[string, string], { hash: string; feed: string }>('SELECT hash, feed FROM advisories WHERE source = ? AND id = ?');
    // A feed's coverage is what its own advisories name; recomputed from the stored data
    // (not the batch) so an updated advisory that drops an ecosystem drops it here too.
    this.#clearCoverage = db.prepare<[string]>('DELETE FROM feed_coverage WHERE feed = ?');
    this.#fillCoverage = db.prepare<[string]>(
      `INSERT OR IGNORE INTO feed_coverage (feed, ecosystem)
       SELECT a.feed, json_extract(e.value, '$.ecosystem') FROM advisories a, json_each(a.data, '$.affected') e
       WHERE a.feed = ? AND json_extract(e.value, '$.ecosystem') IS NOT NULL`,
    );
    this.#upsert = db.prepare(
      `INSERT INTO advisories (feed, source, id, hash, severity, published, modified, withdrawn, data)
       VALUES (@feed, @source, @id, @hash, @severity, @published, @modified, @withdrawn, @data)
       ON CONFLICT (source, id) DO UPDATE SET feed = excluded.feed, hash = excluded.hash, severity = excluded.severity,
         published = excluded.published, modified = excluded.modified, withdrawn = excluded.withdrawn, data = excluded.data`,
    );
    this.#upsertFeed = db.prepare(
      `INSERT INTO feeds (source, kind, location, checked_at) VALUES (@source, @kind, @location, @now)
       ON CONFLICT (source) DO UPDATE SET kind = excluded.kind, location = excluded.location, checked_at = excluded.checked_at, last_error = NULL`,
    );
    // A feed's records are its advisories plus its KEV entries (a directory may hold
    // both); KEV dates are days, stored as midnight UTC so `newest` compares as one kind.
    this.#feedCounts = db.prepare(
      `UPDATE feeds SET
         records = (SELECT count(*) FROM advisories WHERE feed = @source) + (SELECT count(*) FROM kev WHERE feed = @source),
         newest = (SELECT max(d) FROM (
           SELECT max(coalesce(modified, published)) AS d FROM advisories WHERE feed = @source
           UNION ALL SELECT max(date_added) || 'T00:00:00.000Z' FROM kev WHERE feed = @source)),
         imported_at = CASE WHEN @changed THEN @now ELSE coalesce(imported_at, @now) END
       WHERE source = @source`,
    );
    this.#getKev = db.prepare<[string, string], { date_added: string; due_date: string; vendor_project: string; product: string; ransomware: string | null }>(
      'SELECT date_added, due_date, vendor_project, product, ransomware FROM kev WHERE feed = ? AND cve = ?',
    );
    this.#putKev = db.prepare(
      `INSERT INTO kev (feed, cve, date_added, due_date, vendor_project, product, ransomware) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (feed, cve) DO UPDATE SET date_added = excluded.date_added, due_date = excluded.due_date,
         vendor_project = excluded.vendor_project, product = excluded.product, ransomware = excluded.ransomware`,
    );
  }

  /**
   * Stores everything one feed path gave, advisories and KEV entries, in one transaction:
   * either all of it is there afterwards or none of it.
   */
  importFeed(feed: FeedInfo, advisories: readonly Advisory[], kev: readonly KevEntry[], now = new Date()): { advisories: ImportResult; kev: KevCounts } {
    const result: ImportResult = { added: 0, updated: 0, unchanged: 0, changed: [] };
    const counts: KevCounts = { added: 0, updated: 0, unchanged: 0 };
    const nowIso = now.toISOString();
    this.#db.transaction(() => {
      this.#upsertFeed.run({ ...feed, now: nowIso });
      // Feeds that held one of these advisories before (the same id imported under another name) lose it.
      const touched = new Set<string>();
      for (const a of advisories) this.#storeAdvisory(feed.source, a, result, touched);
      for (const e of kev) this.#storeKev(feed.source, e, counts);
      const changed = result.changed.length + counts.added + counts.updated > 0;
      this.#feedCounts.run({ source: feed.source, now: nowIso, changed: changed ? 1 : 0 });
      if (result.changed.length > 0) {
        touched.add(feed.source);
        for (const f of touched) this.#recomputeCoverage(f);
      }
    })();
    return { advisories: result, kev: counts };
  }

  #recomputeCoverage(feed: string): void {
    this.#clearCoverage.run(feed);
    this.#fillCoverage.run(feed);
  }

  #storeAdvisory(feed: string, a: Advisory, result: ImportResult, touched: Set<string>): void {
    const data = JSON.stringify(a);
    const hash = hashOf(data);
    const old = this.#getHash.get(a.source, a.id);
    if (old?.hash === hash) {
      result.unchanged++;
      return;
    }
    if (old === undefined) result.added++;
    else result.updated++;
    if (old !== undefined && old.feed !== feed) touched.add(old.feed);
    this.#upsert.run({
      feed,
      source: a.source,
      id: a.id,
      hash,
      severity: a.severity,
      published: a.published,
      modified: a.modified,
      withdrawn: a.withdrawn,
      data,
    });
    result.changed.push(a);
  }

  #storeKev(feed: string, e: KevEntry, counts: KevCounts): void {
    const old = this.#getKev.get(feed, e.cve);
    const ransomware = e.knownRansomwareCampaignUse;
    if (old !== undefined && old.date_added === e.dateAdded && old.due_date === e.dueDate && old.vendor_project === e.vendorProject && old.product === e.product && old.ransomware === ransomware) {
      counts.unchanged++;
      return;
    }
    if (old === undefined) counts.added++;
    else counts.updated++;
    this.#putKev.run(feed, e.cve, e.dateAdded, e.dueDate, e.vendorProject, e.product, ransomware);
  }

  /** Replaces the stored EPSS score set with this feed's, atomically (collector/store/epss.ts). */
  importEpss(feed: FeedInfo, set: EpssSet, now = new Date()): EpssImport {
    return new EpssStore(this.#db).replace(feed, set, now);
  }

  /** The EPSS set this feed holds, for a bundle; null when it holds none. */
  epssSetOf(source: string): EpssSet | null {
    return new EpssStore(this.#db).setOf(source);
  }

  /** Stores a whole feed's advisories atomically. */
  importAdvisories(feed: FeedInfo, advisories: readonly Advisory[], now = new Date()): ImportResult {
    return this.importFeed(feed, advisories, [], now).advisories;
  }

  /** Records that a feed could not be fetched or parsed; its last good data stays. */
  recordFeedError(feed: FeedInfo, message: string, now = new Date()): void {
    this.#db
      .prepare(
        `INSERT INTO feeds (source, kind, location, last_error) VALUES (?, ?, ?, ?)
         ON CONFLICT (source) DO UPDATE SET last_error = excluded.last_error`,
      )
      .run(feed.source, feed.kind, feed.location, `${now.toISOString()} ${message}`);
  }

  setFeedValidators(source: string, etag: string | null, lastModified: string | null): void {
    this.#db.prepare('UPDATE feeds SET etag = ?, last_modified = ? WHERE source = ?').run(etag, lastModified, source);
  }

  touchFeed(source: string, now = new Date()): void {
    this.#db.prepare('UPDATE feeds SET checked_at = ?, last_error = NULL WHERE source = ?').run(now.toISOString(), source);
  }

  /** Every stored advisory, read a page at a time (keyset on the primary key): no cursor stays open between pages. */
  *allAdvisories(): Generator<Advisory> {
    const page = this.#db.prepare<[string, string, number], { source: string; id: string; data: string }>(
      'SELECT source, id, data FROM advisories WHERE (source, id) > (?, ?) ORDER BY source, id LIMIT ?',
    );
    for (let after: [string, string] = ['', '']; ; ) {
      const rows = page.all(after[0], after[1], READ_PAGE);
      for (const row of rows) yield JSON.parse(row.data) as Advisory;
      const last = rows[rows.length - 1];
      if (rows.length < READ_PAGE || last === undefined) return;
      after = [last.source, last.id];
    }
  }

  /** One feed's advisories and KEV entries as stored (what `feed export` puts in a bundle), a page at a time. */
  *feedRecords(source: string): Generator<{ advisory: Advisory } | { kev: KevEntry }> {
    const advisories = this.#db.prepare<[string, string, string, number], { source: string; id: string; data: string }>(
      'SELECT source, id, data FROM advisories WHERE feed = ? AND (source, id) > (?, ?) ORDER BY source, id LIMIT ?',
    );
    for (let after: [string, string] = ['', '']; ; ) {
      const rows = advisories.all(source, after[0], after[1], READ_PAGE);
      for (const row of rows) yield { advisory: JSON.parse(row.data) as Advisory };
      const last = rows[rows.length - 1];
      if (rows.length < READ_PAGE || last === undefined) break;
      after = [last.source, last.id];
    }
    const kev = this.#db.prepare<[string, string, number], { cve: string; date_added: string; due_date: string; vendor_project: string; product: string; ransomware: string | null }>(
      'SELECT cve, date_added, due_date, vendor_project, product, ransomware FROM kev WHERE feed = ? AND cve > ? ORDER BY cve LIMIT ?',
    );
    for (let after = ''; ; ) {
      const rows = kev.all(source, after, READ_PAGE);
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
  ): { advisories: ImportResult; kev: KevCounts; epss: EpssImport | null }[] {
    return this.#db.transaction(() =>
      feeds.map((f) => {
        const r = this.importFeed(f.feed, f.advisories, f.kev, now);
        // After importFeed, which counts the feed's advisories and KEV entries only: the set's scores are added to them.
        const epss = f.epss === undefined ? null : this.importEpss(f.feed, f.epss, now);
        this.setBundleCreatedAt(f.feed.source, createdAt);
        return { ...r, epss };
      }),
    )();
  }

  /** When the newest feed bundle imported for this feed was made; an older one is refused (collector/services/airgap/feed-bundle.ts). */
  bundleCreatedAt(source: string): string | null {
    return this.#db.prepare<[string], string | null>('SELECT bundle_created_at FROM feeds WHERE source = ?').pluck().get(source) ?? null;
  }

  setBundleCreatedAt(source: string, createdAt: string): void {
    this.#db.prepare('UPDATE feeds SET bundle_created_at = ? WHERE source = ?').run(createdAt, source);
  }

  /** Stores a KEV catalog atomically, as this feed's entries (other KEV feeds keep theirs). */
  importKev(feed: FeedInfo, entries: readonly KevEntry[], now = new Date()): KevCounts {
    return this.importFeed(feed, [], entries, now).kev;
  }

  /**
   * Every known-exploited CVE, merged over the KEV feeds: the earliest due date and date
   * added any of them gives (a deadline is never pushed back by a second copy).
   */
  kev(): Map<string, { dueDate: string; dateAdded: string }> {
    const out = new Map<string, { dueDate: string; dateAdded: string }>();
    const rows = this.#db.prepare<[], { cve: string; due_date: string; date_added: string }>(
      'SELECT cve, min(due_date) AS due_date, min(date_added) AS date_added FROM kev GROUP BY cve',
    );
    for (const r of rows.iterate()) out.set(r.cve, { dueDate: r.due_date, dateAdded: r.date_added });
    return out;
  }

  /**
   * Each feed with the ecosystems its advisories name (kept by importFeed) and its last
   * successful check: what decides whether a host was looked at (correlate/coverage.ts).
   */
  coverage(): FeedCoverage[] {
    const out = new Map<string, FeedCoverage & { ecosystems: string[] }>();
    const rows = this.#db.prepare<[], { source: string; checked_at: string | null; ecosystem: string | null }>(
      'SELECT f.source, f.checked_at, c.ecosystem FROM feeds f LEFT JOIN feed_coverage c ON c.feed = f.source ORDER BY f.source, c.ecosystem',
    );
    for (const r of rows.iterate()) {
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
  feedsSignature(): { feeds: number; lastImport: string } {
    const r = this.#feedsSignature.get();
    return { feeds: r?.n ?? 0, lastImport: r?.last ?? '' };
  }

  feeds(): FeedRow[] {
    return this.#db
      .prepare<[], { source: string; kind: string; location: string | null; records: number; newest: string | null; imported_at: string | null; checked_at: string | null; last_error: string | null; etag: string | null; last_modified: string | null }>(
        'SELECT * FROM feeds ORDER BY source',
      )
      .all()
      .map((r) => ({
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
}
