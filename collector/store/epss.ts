/**
 * FIRST EPSS scores, on SQLite or PostgreSQL: one set (the day's file), replaced whole by each import in
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
import { FEED_WRITE_LOCK, type FeedInfo, lockFeedWrites } from './advisories.ts';
import type { PartScope } from './part-scope.ts';
import { putBatched } from './sql/batched.ts';
import { sql } from './sql/query.ts';

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

/** Scores a set-based PostgreSQL insert carries per statement: a day's set (about 320,000) is a few statements, none of them huge. */
const PG_BATCH = 50_000;

const upsertFeed = sql(
  `INSERT INTO feeds (source, kind, location, checked_at) VALUES (?, ?, ?, ?)
   ON CONFLICT (source) DO UPDATE SET kind = excluded.kind, location = excluded.location, checked_at = excluded.checked_at, last_error = NULL`,
);
const metaRow = sql('SELECT feed, model_version, score_date, rows, hash, imported_at FROM epss_meta WHERE id = 1');
const deleteMeta = sql('DELETE FROM epss_meta');
const deleteScores = sql('DELETE FROM epss');
const putScore = sql('INSERT INTO epss (cve, score, percentile) VALUES (?, ?, ?)');
// Numbers travel as text arrays (SqlValue's arrays are text): JavaScript's shortest
// round-trip form of a double reads back as the same float8.
const putScores = sql({ postgres: 'INSERT INTO epss (cve, score, percentile) SELECT * FROM unnest(?::text[], ?::float8[], ?::float8[])' });
const putMeta = sql('INSERT INTO epss_meta (id, feed, model_version, score_date, rows, hash, imported_at) VALUES (1, ?, ?, ?, ?, ?, ?)');
const dropOldHolder = sql('UPDATE feeds SET records = records - ? WHERE source = ? AND records >= ?');
const countFeed = sql(
  `UPDATE feeds SET
     records = (SELECT count(*) FROM advisories WHERE feed = ?) + (SELECT count(*) FROM kev WHERE feed = ?) + ?,
     newest = ?,
     imported_at = CASE WHEN ? = 1 THEN ? ELSE coalesce(imported_at, ?) END
   WHERE source = ?`,
);
const signatureRow = sql('SELECT hash, feed FROM epss_meta WHERE id = 1');
const allScores = sql('SELECT cve, score, percentile FROM epss');
const allScoresByCve = sql('SELECT cve, score, percentile FROM epss ORDER BY cve');
const oneScore = sql('SELECT score, percentile FROM epss WHERE cve = ?');

type MetaRow = { feed: string; model_version: string; score_date: string; rows: number; hash: string; imported_at: string };
type ScoreRow = { cve: string; score: number; percentile: number };

/** What current() keeps per store: the scores of the set whose signature it read last. */
interface LoadedEpss {
  value: { signature: string; scores: ReadonlyMap<string, EpssScore> } | null;
}

export class EpssStore {
  readonly #scope: PartScope;

  constructor(scope: PartScope) {
    this.#scope = scope;
  }

  /** Replaces the stored set with `set` in one transaction, as feed `feed`; the same set again writes only the feed's check time. */
  replace(feed: FeedInfo, set: EpssSet, now = new Date()): Promise<EpssImport> {
    const nowIso = now.toISOString();
    const hash = setHash(set);
    return this.#scope.atomic(async ({ ex }): Promise<EpssImport> => {
      // One set for the whole store: two imports at once on PostgreSQL would both empty and fill it.
      if (ex.dialect === 'postgres') await ex.run(lockFeedWrites, [FEED_WRITE_LOCK]);
      await ex.run(upsertFeed, [feed.source, feed.kind, feed.location, nowIso]);
      const old = await ex.get<MetaRow>(metaRow);
      const unchanged = old !== undefined && old.hash === hash && old.feed === feed.source;
      if (!unchanged) {
        // The trigger on epss_meta empties epss; deleting here too keeps it right if the meta row was absent.
        await ex.run(deleteMeta);
        await ex.run(deleteScores);
        if (ex.dialect === 'postgres') {
          await putBatched(ex, putScores, set.entries, PG_BATCH, [(e) => e.cve, (e) => String(e.score), (e) => String(e.percentile)]);
        } else for (const e of set.entries) await ex.run(putScore, [e.cve, e.score, e.percentile]);
        await ex.run(putMeta, [feed.source, set.modelVersion, set.scoreDate, set.entries.length, hash, nowIso]);
        // Another feed that held the set before holds none now.
        if (old !== undefined && old.feed !== feed.source) await ex.run(dropOldHolder, [old.rows, old.feed, old.rows]);
      }
      await ex.run(countFeed, [feed.source, feed.source, set.entries.length, set.scoreDate, unchanged ? 0 : 1, nowIso, nowIso, feed.source]);
      return { stored: unchanged ? 0 : set.entries.length, replaced: unchanged ? 0 : (old?.rows ?? 0), unchanged };
    });
  }

  async meta(): Promise<EpssMeta | null> {
    const r = await this.#scope.ex.get<MetaRow>(metaRow);
    return r === undefined ? null : { feed: r.feed, modelVersion: r.model_version, scoreDate: r.score_date, rows: r.rows, importedAt: r.imported_at };
  }

  /**
   * The stored scores, read again only when the stored set changed (a few µs when it did
   * not). One copy per store (the gateway and the API read the same set). The copy is
   * checked against signature() on every call, a read of the database, so it is right on
   * PostgreSQL too, where another replica may import a new set.
   */
  async current(): Promise<{ scores: ReadonlyMap<string, EpssScore>; changed: boolean; signature: string }> {
    const loaded = this.#scope.shared<LoadedEpss>('epss.current', () => ({ value: null }));
    const signature = await this.signature();
    const had = loaded.value;
    if (had !== null && had.signature === signature) return { scores: had.scores, changed: false, signature };
    const scores = signature === '' ? new Map<string, EpssScore>() : await this.all();
    loaded.value = { signature, scores };
    return { scores, changed: true, signature };
  }

  /** Changes whenever the stored set does (an import of another set, a removal): cheap, for a serving collector's tick. */
  async signature(): Promise<string> {
    const r = await this.#scope.ex.get<{ hash: string; feed: string }>(signatureRow);
    return r === undefined ? '' : `${r.feed}|${r.hash}`;
  }

  /** Every stored score by CVE, for correlation (about 40 MB for the full day's set). */
  async all(): Promise<Map<string, EpssScore>> {
    const out = new Map<string, EpssScore>();
    for (const r of await this.#scope.ex.all<ScoreRow>(allScores)) out.set(r.cve, { score: r.score, percentile: r.percentile });
    return out;
  }

  /** The whole set when `feed` holds it (what `feed export` carries), else null. */
  async setOf(feed: string): Promise<EpssSet | null> {
    const meta = await this.meta();
    if (meta?.feed !== feed) return null;
    const entries = (await this.#scope.ex.all<ScoreRow>(allScoresByCve)).map((r) => ({ cve: r.cve, score: r.score, percentile: r.percentile }));
    return { modelVersion: meta.modelVersion, scoreDate: meta.scoreDate, entries };
  }

  async get(cve: string): Promise<EpssScore | undefined> {
    const r = await this.#scope.ex.get<{ score: number; percentile: number }>(oneScore, [cve]);
    return r === undefined ? undefined : { score: r.score, percentile: r.percentile };
  }
}
