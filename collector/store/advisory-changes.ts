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
import type { SqlExecutor } from './sql/executor.ts';
import { sql } from './sql/query.ts';

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

/** A list of names passed as one JSON array: the same parameter on both engines. */
const IN_LIST = { sqlite: 'SELECT value FROM json_each(?)', postgres: 'SELECT jsonb_array_elements_text(?::jsonb)' } as const;

const lastSeq = sql('SELECT coalesce(max(seq), 0) AS seq FROM advisory_changes');
// Each changed advisory read as stored now, in the statement that reads the log: one
// round trip per call, and a consistent view of both tables.
const since = sql(
  `SELECT c.seq, c.kind, c.source, c.id, a.data FROM advisory_changes c
   LEFT JOIN advisories a ON c.kind = 'advisory' AND a.source = c.source AND a.id = c.id
   WHERE c.seq > ? ORDER BY c.seq LIMIT ?`,
);
const clear = sql('DELETE FROM advisory_changes WHERE seq <= ?');
const hostsIn = sql({
  sqlite: `SELECT agent_id FROM hosts WHERE ecosystem IN (${IN_LIST.sqlite}) ORDER BY agent_id`,
  postgres: `SELECT agent_id FROM hosts WHERE ecosystem IN (${IN_LIST.postgres}) ORDER BY agent_id`,
});
const HOSTS_BY_CONTENT = `SELECT h.agent_id, r.content_hash FROM hosts h JOIN reports r ON r.agent_id = h.agent_id AND r.id = h.last_report_id WHERE`;
const hostsByContentIn = sql({
  sqlite: `${HOSTS_BY_CONTENT} h.ecosystem IN (${IN_LIST.sqlite}) ORDER BY r.content_hash, h.agent_id`,
  postgres: `${HOSTS_BY_CONTENT} h.ecosystem IN (${IN_LIST.postgres}) ORDER BY r.content_hash, h.agent_id`,
});
const hostsByContentOf = sql({
  sqlite: `${HOSTS_BY_CONTENT} h.agent_id IN (${IN_LIST.sqlite}) ORDER BY r.content_hash, h.agent_id`,
  postgres: `${HOSTS_BY_CONTENT} h.agent_id IN (${IN_LIST.postgres}) ORDER BY r.content_hash, h.agent_id`,
});

type HostContent = { agent_id: string; content_hash: string };

export class AdvisoryChanges {
  readonly #ex: SqlExecutor;

  constructor(ex: SqlExecutor) {
    this.#ex = ex;
  }

  /**
   * The same hosts grouped by the content of their latest inventory (its packagesHash):
   * hosts of one content share their matches, so a feed change is matched once per group.
   */
  async hostsByContentIn(ecosystems: Iterable<string>): Promise<Map<string, string[]>> {
    return byContent(await this.#ex.all<HostContent>(hostsByContentIn, [JSON.stringify([...ecosystems])]));
  }

  /** These hosts (those that have reported), grouped the same way. */
  async hostsByContentOf(agentIds: Iterable<string>): Promise<Map<string, string[]>> {
    return byContent(await this.#ex.all<HostContent>(hostsByContentOf, [JSON.stringify([...agentIds])]));
  }

  /** Hosts whose latest inventory is of one of these ecosystems: the only ones an advisory of theirs can change. */
  async hostsIn(ecosystems: Iterable<string>): Promise<string[]> {
    return (await this.#ex.all<{ agent_id: string }>(hostsIn, [JSON.stringify([...ecosystems])])).map((r) => r.agent_id);
  }

  async lastSeq(): Promise<number> {
    return (await this.#ex.get<{ seq: number }>(lastSeq))?.seq ?? 0;
  }

  /** The changes after `seq`, each advisory once, read as stored now (so the newest write wins). */
  async since(seq: number): Promise<AdvisoryChangeBatch> {
    const rows = await this.#ex.all<{ seq: number; kind: string; source: string | null; id: string | null; data: string | null }>(since, [seq, CHANGES_PER_READ]);
    const batch: AdvisoryChangeBatch = { seq: rows[rows.length - 1]?.seq ?? seq, advisories: [], kev: false, feeds: false, more: rows.length === CHANGES_PER_READ };
    const seen = new Set<string>();
    for (const r of rows) {
      if (r.kind === 'kev') batch.kev = true;
      if (r.kind === 'feed') batch.feeds = true;
      if (r.kind !== 'advisory' || r.source === null || r.id === null) continue;
      const key = `${r.source}\u0000${r.id}`;
      if (seen.has(key)) continue;
      seen.add(key);
      batch.advisories.push(r.data === null ? { removed: { source: r.source, id: r.id } } : { stored: JSON.parse(r.data) as Advisory });
    }
    return batch;
  }

  /** Forgets the rows up to `seq`: the serving collector has applied them. */
  async clear(seq: number): Promise<void> {
    await this.#ex.run(clear, [seq]);
  }
}
