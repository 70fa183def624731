/**
 * FIRST EPSS scores in SQLite: one set (the day's file), replaced whole by each import in
 * one transaction, so no CVE keeps yesterday's score beside today's percentiles. About
 * 320,000 rows: the day's model and score date are kept once in `epss_meta`, not per row.
 *
 * The set belongs to the feed it was imported as; `feed remove` of that feed deletes the
 * feed row, which cascades to `epss_meta`, whose trigger empties `epss`. A serving
 * collector sees every import or removal as a feed row change in the advisory change log
 * and reloads the scores when `signature()` moved (collector/services/findings/host-findings.ts).
 */
import { createHash } from 'node:crypto';
import type { EpssScore, EpssSet } from '../domain/feeds/epss.ts';
import type { Db } from './db.ts';
import type { FeedInfo } from './advisories.ts';

export const EPSS_MIGRATION = `
  CREATE TABLE epss (
    cve        TEXT PRIMARY KEY,
    score      REAL NOT NULL CHECK (score >= 0 AND score <= 1),
    percentile REAL NOT NULL CHECK (percentile >= 0 AND percentile <= 1)
  ) STRICT, WITHOUT ROWID;
  CREATE TABLE epss_meta (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    feed          TEXT NOT NULL REFERENCES feeds (source) ON DELETE CASCADE,
    model_version TEXT NOT NULL,
    score_date    TEXT NOT NULL,
    rows          INTEGER NOT NULL,
    hash          TEXT NOT NULL,
    imported_at   TEXT NOT NULL
  ) STRICT;
  CREATE TRIGGER epss_meta_gone AFTER DELETE ON epss_meta BEGIN
    DELETE FROM epss;
  END;
`;

export interface EpssImport {
  /** Scores stored by this import (0 when the set was the one already stored). */
  stored: number;
  /** Scores of the set this import replaced. */
  replaced: number;
  unchanged: boolean;
}

export interface EpssMeta {
  feed: string;
  modelVersion: string;
  scoreDate: string;
  rows: number;
  importedAt: string;
}

function setHash(set: EpssSet): string {
  const h = createHash('sha256').update(`${set.modelVersion}\n${set.scoreDate}\n`);
  for (const e of set.entries) h.update(`${e.cve},${e.score},${e.percentile}\n`);
  return h.digest('base64url');
}

/** One copy of the scores per open database (the gateway and the API read the same set), kept until the set changes. */
const loaded = new WeakMap<Db, { signature: string; scores: ReadonlyMap<string, EpssScore> }>();

/** The stored scores, read again only when the stored set changed (a few µs when it did not). */
export function currentEpss(db: Db): { scores: ReadonlyMap<string, EpssScore>; changed: boolean; signature: string } {
  const store = new EpssStore(db);
  const signature = store.signature();
  const had = loaded.get(db);
  if (had !== undefined && had.signature === signature) return { scores: had.scores, changed: false, signature };
  const scores = signature === '' ? new Map<string, EpssScore>() : store.all();
  loaded.set(db, { signature, scores });
  return { scores, changed: true, signature };
}

export class EpssStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  /** Replaces the stored set with `set` in one transaction, as feed `feed`; the same set again writes only the feed's check time. */
  replace(feed: FeedInfo, set: EpssSet, now = new Date()): EpssImport {
    const db = this.#db;
    const nowIso = now.toISOString();
    const hash = setHash(set);
    return db.transaction((): EpssImport => {
      db.prepare(
        `INSERT INTO feeds (source, kind, location, checked_at) VALUES (@source, @kind, @location, @now)
         ON CONFLICT (source) DO UPDATE SET kind = excluded.kind, location = excluded.location, checked_at = excluded.checked_at, last_error = NULL`,
      ).run({ ...feed, now: nowIso });
      const old = db.prepare<[], { feed: string; rows: number; hash: string }>('SELECT feed, rows, hash FROM epss_meta WHERE id = 1').get();
      const unchanged = old !== undefined && old.hash === hash && old.feed === feed.source;
      if (!unchanged) {
        // The trigger on epss_meta empties epss; deleting here too keeps it right if the meta row was absent.
        db.prepare('DELETE FROM epss_meta').run();
        db.prepare('DELETE FROM epss').run();
        const put = db.prepare<[string, number, number]>('INSERT INTO epss (cve, score, percentile) VALUES (?, ?, ?)');
        for (const e of set.entries) put.run(e.cve, e.score, e.percentile);
        db.prepare('INSERT INTO epss_meta (id, feed, model_version, score_date, rows, hash, imported_at) VALUES (1, ?, ?, ?, ?, ?, ?)').run(
          feed.source,
          set.modelVersion,
          set.scoreDate,
          set.entries.length,
          hash,
          nowIso,
        );
        // Another feed that held the set before holds none now.
        if (old !== undefined && old.feed !== feed.source) db.prepare('UPDATE feeds SET records = records - ? WHERE source = ? AND records >= ?').run(old.rows, old.feed, old.rows);
      }
      db.prepare(
        `UPDATE feeds SET
           records = (SELECT count(*) FROM advisories WHERE feed = @source) + (SELECT count(*) FROM kev WHERE feed = @source) + @rows,
           newest = @scoreDate,
           imported_at = CASE WHEN @changed THEN @now ELSE coalesce(imported_at, @now) END
         WHERE source = @source`,
      ).run({ source: feed.source, rows: set.entries.length, scoreDate: set.scoreDate, changed: unchanged ? 0 : 1, now: nowIso });
      return { stored: unchanged ? 0 : set.entries.length, replaced: unchanged ? 0 : (old?.rows ?? 0), unchanged };
    })();
  }

  meta(): EpssMeta | null {
    const r = this.#db
      .prepare<[], { feed: string; model_version: string; score_date: string; rows: number; imported_at: string }>('SELECT feed, model_version, score_date, rows, imported_at FROM epss_meta WHERE id = 1')
      .get();
    return r === undefined ? null : { feed: r.feed, modelVersion: r.model_version, scoreDate: r.score_date, rows: r.rows, importedAt: r.imported_at };
  }

  /** Changes whenever the stored set does (an import of another set, a removal): cheap, for a serving collector's tick. */
  /** The stored scores, read again only when the stored set changed (currentEpss). */
  current(): { scores: ReadonlyMap<string, EpssScore>; changed: boolean; signature: string } {
    return currentEpss(this.#db);
  }

  signature(): string {
    const r = this.#db.prepare<[], { hash: string; feed: string }>('SELECT hash, feed FROM epss_meta WHERE id = 1').get();
    return r === undefined ? '' : `${r.feed}|${r.hash}`;
  }

  /** Every stored score by CVE, for correlation (about 40 MB for the full day's set). */
  all(): Map<string, EpssScore> {
    const out = new Map<string, EpssScore>();
    for (const r of this.#db.prepare<[], { cve: string; score: number; percentile: number }>('SELECT cve, score, percentile FROM epss').iterate()) {
      out.set(r.cve, { score: r.score, percentile: r.percentile });
    }
    return out;
  }

  /** The whole set when `feed` holds it (what `feed export` carries), else null. */
  setOf(feed: string): EpssSet | null {
    const meta = this.meta();
    if (meta?.feed !== feed) return null;
    const entries = this.#db
      .prepare<[], { cve: string; score: number; percentile: number }>('SELECT cve, score, percentile FROM epss ORDER BY cve')
      .all()
      .map((r) => ({ cve: r.cve, score: r.score, percentile: r.percentile }));
    return { modelVersion: meta.modelVersion, scoreDate: meta.scoreDate, entries };
  }

  get(cve: string): EpssScore | undefined {
    const r = this.#db.prepare<[string], { score: number; percentile: number }>('SELECT score, percentile FROM epss WHERE cve = ?').get(cve);
    return r === undefined ? undefined : { score: r.score, percentile: r.percentile };
  }
}
