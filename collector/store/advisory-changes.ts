/**
 * The advisory change log: triggers (migration ADVISORY_CHANGES_MIGRATION) append a row
 * for every advisory, KEV entry or feed row written or deleted, whoever writes it (a CLI
 * `feed import` or `feed remove` in another process, a bundle import, a sync inside
 * `serve`). A serving collector reads the rows after the last one it applied on every
 * tick, as it reads report_imports, so its in-memory index follows the store without a
 * restart and re-matches only the (ecosystem, package) pairs the rows name.
 *
 * Rows are deleted once the serving collector has applied them; with no collector
 * serving they wait for its next start, which loads everything and clears them.
 */
import type { Advisory } from '../domain/feeds/types.ts';
import type { Db } from './db.ts';

/**
 * The migration that adds the log and its triggers. A trigger, not a call in each
 * writer: every importer, `feed remove` and any future writer are covered, inside their
 * own transaction, so a rolled-back import leaves no row either.
 */
export const ADVISORY_CHANGES_MIGRATION = `
  CREATE TABLE advisory_changes (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    kind   TEXT NOT NULL CHECK (kind IN ('advisory', 'kev', 'feed')),
    source TEXT,
    id     TEXT
  ) STRICT;
  CREATE TRIGGER advisory_changes_ins AFTER INSERT ON advisories BEGIN
    INSERT INTO advisory_changes (kind, source, id) VALUES ('advisory', NEW.source, NEW.id);
  END;
  CREATE TRIGGER advisory_changes_upd AFTER UPDATE ON advisories BEGIN
    INSERT INTO advisory_changes (kind, source, id) VALUES ('advisory', NEW.source, NEW.id);
  END;
  CREATE TRIGGER advisory_changes_del AFTER DELETE ON advisories BEGIN
    INSERT INTO advisory_changes (kind, source, id) VALUES ('advisory', OLD.source, OLD.id);
  END;
  CREATE TRIGGER advisory_changes_kev_ins AFTER INSERT ON kev BEGIN
    INSERT INTO advisory_changes (kind) VALUES ('kev');
  END;
  CREATE TRIGGER advisory_changes_kev_upd AFTER UPDATE ON kev BEGIN
    INSERT INTO advisory_changes (kind) VALUES ('kev');
  END;
  CREATE TRIGGER advisory_changes_kev_del AFTER DELETE ON kev BEGIN
    INSERT INTO advisory_changes (kind) VALUES ('kev');
  END;
  CREATE TRIGGER advisory_changes_feed_ins AFTER INSERT ON feeds BEGIN
    INSERT INTO advisory_changes (kind, source) VALUES ('feed', NEW.source);
  END;
  CREATE TRIGGER advisory_changes_feed_upd AFTER UPDATE ON feeds BEGIN
    INSERT INTO advisory_changes (kind, source) VALUES ('feed', NEW.source);
  END;
  CREATE TRIGGER advisory_changes_feed_del AFTER DELETE ON feeds BEGIN
    INSERT INTO advisory_changes (kind, source) VALUES ('feed', OLD.source);
  END;
`;

/** Rows read per call: a first import of a large feed is applied over several calls, never as one array of every row. */
export const CHANGES_PER_READ = 20_000;

export interface AdvisoryChangeBatch {
  /** The last row read; pass it to the next since() and to clear(). */
  seq: number;
  /** Each changed advisory as stored now, or `{ source, id }` alone when it was deleted. */
  advisories: ({ stored: Advisory } | { removed: { source: string; id: string } })[];
  /** A KEV entry changed: due dates of every host may move. */
  kev: boolean;
  /** A feed row changed (an import, a check, an error): feed states are read again. */
  feeds: boolean;
  /** More rows wait after `seq`. */
  more: boolean;
}

function byContent(rows: Iterable<{ agent_id: string; content_hash: string }>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const r of rows) {
    const list = out.get(r.content_hash);
    if (list === undefined) out.set(r.content_hash, [r.agent_id]);
    else list.push(r.agent_id);
  }
  return out;
}

export class AdvisoryChanges {
  readonly #lastSeq;
  readonly #since;
  readonly #get;
  readonly #clear;
  readonly #hostsIn;
  readonly #hostsByContent;
  readonly #hostsByContentOf;

  constructor(db: Db) {
    this.#lastSeq = db.prepare<[], number>('SELECT coalesce(max(seq), 0) FROM advisory_changes').pluck();
    this.#since = db.prepare<[number, number], { seq: number; kind: string; source: string | null; id: string | null }>(
      'SELECT seq, kind, source, id FROM advisory_changes WHERE seq > ? ORDER BY seq LIMIT ?',
    );
    this.#get = db.prepare<[string, string], string>('SELECT data FROM advisories WHERE source = ? AND id = ?').pluck();
    this.#clear = db.prepare<[number]>('DELETE FROM advisory_changes WHERE seq <= ?');
    this.#hostsIn = db.prepare<[string], string>('SELECT agent_id FROM hosts WHERE ecosystem IN (SELECT value FROM json_each(?)) ORDER BY agent_id').pluck();
    this.#hostsByContent = db.prepare<[string], { agent_id: string; content_hash: string }>(
      `SELECT h.agent_id, r.content_hash FROM hosts h JOIN reports r ON r.agent_id = h.agent_id AND r.id = h.last_report_id
       WHERE h.ecosystem IN (SELECT value FROM json_each(?)) ORDER BY r.content_hash, h.agent_id`,
    );
    this.#hostsByContentOf = db.prepare<[string], { agent_id: string; content_hash: string }>(
      `SELECT h.agent_id, r.content_hash FROM hosts h JOIN reports r ON r.agent_id = h.agent_id AND r.id = h.last_report_id
       WHERE h.agent_id IN (SELECT value FROM json_each(?)) ORDER BY r.content_hash, h.agent_id`,
    );
  }

  /**
   * The same hosts grouped by the content of their latest inventory (its packagesHash):
   * hosts of one content share their matches, so a feed change is matched once per group.
   */
  hostsByContentIn(ecosystems: Iterable<string>): Map<string, string[]> {
    return byContent(this.#hostsByContent.iterate(JSON.stringify([...ecosystems])));
  }

  /** These hosts (those that have reported), grouped the same way. */
  hostsByContentOf(agentIds: Iterable<string>): Map<string, string[]> {
    return byContent(this.#hostsByContentOf.iterate(JSON.stringify([...agentIds])));
  }

  /** Hosts whose latest inventory is of one of these ecosystems: the only ones an advisory of theirs can change. */
  hostsIn(ecosystems: Iterable<string>): string[] {
    return this.#hostsIn.all(JSON.stringify([...ecosystems]));
  }

  lastSeq(): number {
    return this.#lastSeq.get() ?? 0;
  }

  /** The changes after `seq`, each advisory once, read as stored now (so the newest write wins). */
  since(seq: number): AdvisoryChangeBatch {
    const rows = this.#since.all(seq, CHANGES_PER_READ);
    const batch: AdvisoryChangeBatch = { seq: rows[rows.length - 1]?.seq ?? seq, advisories: [], kev: false, feeds: false, more: rows.length === CHANGES_PER_READ };
    const seen = new Set<string>();
    for (const r of rows) {
      if (r.kind === 'kev') batch.kev = true;
      if (r.kind === 'feed') batch.feeds = true;
      if (r.kind !== 'advisory' || r.source === null || r.id === null) continue;
      const key = `${r.source}\u0000${r.id}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const data = this.#get.get(r.source, r.id);
      batch.advisories.push(data === undefined ? { removed: { source: r.source, id: r.id } } : { stored: JSON.parse(data) as Advisory });
    }
    return batch;
  }

  /** Forgets the rows up to `seq`: the serving collector has applied them. */
  clear(seq: number): void {
    this.#clear.run(seq);
  }
}
