/**
 * Finding history and accepted risks. First-seen is kept from the first report that
 * raised a finding until it stops applying (resolved), so time-to-remediate is
 * `resolved - first_seen`; a finding that comes back starts a new clock.
 *
 * Two layers, so a feed change costs one write per inventory content, not one per host:
 * - `content_findings`: each inventory content's own timeline (what it matches, since when,
 *   when that stopped). Every host of a content shares it: a fleet of 100,000 hosts over
 *   2,000 contents keeps 2,000 timelines, not 100,000 copies of 250 findings.
 * - `finding_history`: what is the host's own. When a host's inventory moves to another
 *   content (switchContent), its history up to then is written here: findings it keeps
 *   carry their first-seen (a carry-over row), findings it no longer has are resolved, and
 *   the episodes it saw resolve under the old content are kept. `scan --record` writes here
 *   directly (its hosts are not enrolled and have no content).
 * A host's history (history()) is its rows, with its current content's timeline laid over
 * them from the moment it took that content (hosts.findings_since).
 */
import type { Finding } from '../../shared/protocol.ts';
import { historyKey, type HistoryEntry, type RiskException } from '../domain/correlate/findings.ts';
import type { Db } from './db.ts';

interface HistoryRow {
  advisory: string;
  package: string;
  first_seen: string;
  resolved: string | null;
  status: string;
  finding: string;
}

/** A history row as stored: its finding's JSON, parsed on demand. */
export interface StoredHistoryEntry extends HistoryEntry {
  readonly json: string;
  /** The finding's status as last recorded (`resolved` once it stopped applying). */
  readonly status: string;
}

function entry(firstSeen: string, resolvedAt: string | null, status: string, json: string | (() => string), ownFirstSeen = false): StoredHistoryEntry {
  let last: Finding | undefined;
  let text = typeof json === 'string' ? json : undefined;
  return {
    firstSeen,
    resolvedAt,
    status,
    get json() {
      return (text ??= (json as () => string)());
    },
    get last() {
      // A content's row carries the content's first-seen; the host's own replaces it.
      const parsed = JSON.parse(this.json) as Finding;
      return (last ??= ownFirstSeen ? parsed : { ...parsed, firstSeen });
    },
  };
}

function entries(rows: Iterable<HistoryRow>): Map<string, StoredHistoryEntry> {
  const out = new Map<string, StoredHistoryEntry>();
  for (const r of rows) out.set(historyKey(r.advisory, r.package), entry(r.first_seen, r.resolved, r.status, r.finding, true));
  return out;
}

/** Which content a host's history is laid over, and since when (hosts.findings_content, findings_since). */
export interface HostContent {
  content: string | null;
  since: string | null;
}

/**
 * Deletes a content's findings timeline when nobody needs it: no host's history is laid over
 * it and the content itself is gone (the reports naming it were pruned). Called where either
 * can stop: a host moving on (switchContent) and a content pruned (reports.ts).
 */
export function orphanTimelineDropper(db: Db): (content: string) => void {
  const timeline = db.prepare<[string, string, string]>(
    `DELETE FROM content_findings WHERE content = ?
     AND NOT EXISTS (SELECT 1 FROM hosts WHERE findings_content = ?) AND NOT EXISTS (SELECT 1 FROM inventory_contents WHERE hash = ?)`,
  );
  const texts = db.prepare<[string, string]>('DELETE FROM content_finding_texts WHERE content = ? AND NOT EXISTS (SELECT 1 FROM content_findings WHERE content = ?)');
  return (content) => {
    timeline.run(content, content, content);
    texts.run(content, content);
  };
}

export class FindingHistoryStore {
  readonly #db: Db;
  readonly #select;
  readonly #selectTimelineOf;
  readonly #selectTimeline;
  readonly #selectFinding;
  readonly #hostContent;
  readonly #setHostContent;
  readonly #upsert;
  readonly #upsertContent;
  readonly #resolve;
  readonly #resolveContent;
  readonly #keep;
  readonly #exceptions;
  readonly #fleetExceptions;
  readonly #recordTx;
  readonly #recordContentTx;
  readonly #switchTx;
  readonly #dropContent: (content: string) => void;

  constructor(db: Db) {
    this.#db = db;
    this.#select = db.prepare<[string], HistoryRow>('SELECT advisory, package, first_seen, resolved, status, finding FROM finding_history WHERE host = ?');
    this.#selectTimelineOf = db.prepare<[string, string], Omit<HistoryRow, 'finding'>>(
      'SELECT advisory, package, first_seen, resolved, status FROM content_findings WHERE content = ? AND package IN (SELECT value FROM json_each(?))',
    );
    // A host's history reads its content's timeline without the findings' text: only a
    // finding that no longer applies shows its last state (`last`), read then.
    this.#selectTimeline = db.prepare<[string], Omit<HistoryRow, 'finding'>>('SELECT advisory, package, first_seen, resolved, status FROM content_findings WHERE content = ?');
    this.#selectFinding = db.prepare<[string, string, string], string>('SELECT finding FROM content_finding_texts WHERE content = ? AND advisory = ? AND package = ?').pluck();
    this.#hostContent = db.prepare<[string], { findings_content: string | null; findings_since: string | null }>('SELECT findings_content, findings_since FROM hosts WHERE agent_id = ?');
    this.#setHostContent = db.prepare<[string, string, string]>('UPDATE hosts SET findings_content = ?, findings_since = ? WHERE agent_id = ?');
    type RowWrite = Record<string, string | null>;
    const upsert = (table: string, owner: string) =>
      db.prepare(
        `INSERT INTO ${table} (${owner}, advisory, package, first_seen, last_seen, resolved, status, finding)
         VALUES (@owner, @advisory, @package, @firstSeen, @now, NULL, @status, @finding)
         ON CONFLICT (${owner}, advisory, package) DO UPDATE SET
           first_seen = CASE WHEN resolved IS NULL THEN first_seen ELSE excluded.first_seen END,
           last_seen = excluded.last_seen, resolved = NULL, status = excluded.status, finding = excluded.finding`,
      );
    const upsertHost = upsert('finding_history', 'host');
    this.#upsert = (row: RowWrite) => upsertHost.run(row);
    const upsertContent = db.prepare(
      `INSERT INTO content_findings (content, advisory, package, first_seen, last_seen, resolved, status)
       VALUES (@owner, @advisory, @package, @firstSeen, @now, NULL, @status)
       ON CONFLICT (content, package, advisory) DO UPDATE SET
         first_seen = CASE WHEN resolved IS NULL THEN first_seen ELSE excluded.first_seen END,
         last_seen = excluded.last_seen, resolved = NULL, status = excluded.status`,
    );
    const upsertText = db.prepare('INSERT OR REPLACE INTO content_finding_texts (content, advisory, package, finding) VALUES (@owner, @advisory, @package, @finding)');
    this.#upsertContent = (row: RowWrite) => {
      upsertContent.run(row);
      upsertText.run(row);
    };
    this.#resolve = db.prepare(`UPDATE finding_history SET resolved = @now, status = 'resolved' WHERE host = @owner AND advisory = @advisory AND package = @package AND resolved IS NULL`);
    this.#resolveContent = db.prepare(`UPDATE content_findings SET resolved = @now, status = 'resolved' WHERE content = @owner AND advisory = @advisory AND package = @package AND resolved IS NULL`);
    // A host's own row as its history says it is now (switchContent): written whole.
    this.#keep = db.prepare(
      `INSERT INTO finding_history (host, advisory, package, first_seen, last_seen, resolved, status, finding)
       VALUES (@owner, @advisory, @package, @firstSeen, @now, @resolved, @status, @finding)
       ON CONFLICT (host, advisory, package) DO UPDATE SET first_seen = excluded.first_seen, last_seen = excluded.last_seen,
         resolved = excluded.resolved, status = excluded.status, finding = excluded.finding`,
    );
    // Prepared once: both run for every correlated host, thousands of times in a burst of reports.
    this.#exceptions = db.prepare<[string, string], { advisory: string; package: string | null; owner: string; reason: string; expires: string }>(
      'SELECT advisory, package, owner, reason, expires FROM exceptions WHERE (host IS NULL OR host = ?) AND expires > ? ORDER BY id',
    );
    this.#fleetExceptions = db.prepare<[string], { advisory: string; package: string | null; owner: string; reason: string; expires: string }>(
      'SELECT advisory, package, owner, reason, expires FROM exceptions WHERE host IS NULL AND expires > ? ORDER BY id',
    );
    type Statement = ReturnType<Db['prepare']>;
    // `same` says whether a stored row still says what a finding says: nothing is written then.
    const record = (upsertRow: (row: RowWrite) => void, resolveRow: Statement, same: (before: StoredHistoryEntry, f: Finding, json: () => string) => boolean) =>
      db.transaction((owner: string, findings: readonly Finding[], nowIso: string, previous: ReadonlyMap<string, StoredHistoryEntry> | undefined) => {
        for (const f of findings) {
          const before = previous?.get(historyKey(f.advisory, f.package));
          if (f.status === 'resolved') {
            if (before?.resolvedAt != null) continue;
            resolveRow.run({ owner, advisory: f.advisory, package: f.package, now: f.resolvedAt ?? nowIso });
          } else {
            let text: string | undefined;
            const json = (): string => (text ??= JSON.stringify(f));
            // Unchanged since the last correlation: nothing to write. A host with 250 findings
            // otherwise rewrote 250 rows per report, most of its correlation time.
            if (before !== undefined && before.resolvedAt === null && same(before, f, json)) continue;
            upsertRow({ owner, advisory: f.advisory, package: f.package, firstSeen: f.firstSeen, now: nowIso, status: f.status, finding: json() });
          }
        }
      });
    this.#recordTx = record(this.#upsert, this.#resolve, (before, _f, json) => before.json === json());
    // A content's row is rewritten when its status changes, not when only the advisory's text
    // does (a new fixed version, a day that turns it overdue): its facts are when it came and
    // went, the finding itself is judged afresh at every read, and its text is kept to show
    // what a finding was once it stops applying. A feed change rewriting 50 advisories would
    // otherwise rewrite their rows in every content of the fleet.
    this.#recordContentTx = record(this.#upsertContent, this.#resolveContent, (before, f) => before.status === f.status);
    this.#dropContent = orphanTimelineDropper(db);
    this.#switchTx = db.transaction((host: string, content: string, current: ReadonlySet<string>, nowIso: string) => {
      const own = entries(this.#select.iterate(host));
      const at = this.hostContent(host);
      const was = this.history(host, at);
      for (const [key, e] of was) {
        const cut = key.indexOf('\u0000');
        const advisory = key.slice(0, cut);
        const pkg = key.slice(cut + 1);
        // Kept: first-seen carries over. Gone: resolved now. Resolved before: kept as it was.
        const resolved = e.resolvedAt === null && !current.has(key) ? nowIso : e.resolvedAt;
        const status = resolved === null ? e.status : 'resolved';
        const mine = own.get(key);
        if (mine !== undefined && mine.firstSeen === e.firstSeen && mine.resolvedAt === resolved && mine.status === status) continue;
        this.#keep.run({ owner: host, advisory, package: pkg, firstSeen: e.firstSeen, now: nowIso, resolved, status, finding: JSON.stringify(e.last) });
      }
      this.#setHostContent.run(content, nowIso, host);
      if (at.content !== null && at.content !== content) this.#dropContent(at.content);
    });
  }

  /** The content a host's history is laid over; both null before its first correlation (and for `scan --record` keys). */
  hostContent(host: string): HostContent {
    const r = this.#hostContent.get(host);
    return { content: r?.findings_content ?? null, since: r?.findings_since ?? null };
  }

  /**
   * What the host had: the input to buildFindings' first-seen and resolved logic. Its own
   * rows, with its content's timeline over them from `since`: a finding the content had
   * when the host took it is the host's from then (or from its carry-over row's first-seen),
   * one the content gained later from when it gained it, and an episode the content closed
   * before the host took it is not the host's. Each finding is parsed only if asked for (`last`).
   */
  history(host: string, at: HostContent = this.hostContent(host)): Map<string, StoredHistoryEntry> {
    const out = entries(this.#select.iterate(host));
    if (at.content === null || at.since === null) return out;
    const { since, content } = at;
    for (const r of this.#selectTimeline.iterate(content)) {
      if (r.resolved !== null && r.resolved <= since) continue;
      const key = historyKey(r.advisory, r.package);
      const mine = out.get(key);
      const firstSeen = r.first_seen > since ? r.first_seen : mine !== undefined && mine.resolvedAt === null ? mine.firstSeen : since;
      out.set(key, entry(firstSeen, r.resolved, r.status, () => this.#selectFinding.get(content, r.advisory, r.package) ?? '{}'));
    }
    return out;
  }

  /** A content's own timeline, or its rows of these packages: what its correlation compares against (recordContent). Each finding's text is read only if asked for. */
  contentHistory(content: string, packages?: readonly string[]): Map<string, StoredHistoryEntry> {
    const out = new Map<string, StoredHistoryEntry>();
    const rows = packages === undefined ? this.#selectTimeline.iterate(content) : this.#selectTimelineOf.iterate(content, JSON.stringify(packages));
    for (const r of rows) {
      out.set(historyKey(r.advisory, r.package), entry(r.first_seen, r.resolved, r.status, () => this.#selectFinding.get(content, r.advisory, r.package) ?? '{}', true));
    }
    return out;
  }

  /** Records a content's findings (judged without any host's history or exceptions) against `previous` (its contentHistory). */
  recordContent(content: string, findings: readonly Finding[], now: Date, previous: ReadonlyMap<string, StoredHistoryEntry>): void {
    this.#recordContentTx(content, findings, now.toISOString(), previous);
  }

  /**
   * The host's inventory is now of `content`, whose current findings are `current`
   * (historyKey): writes the host's history up to now as its own rows (see the file
   * comment), then lays the new content over it from `now`.
   */
  switchContent(host: string, content: string, current: ReadonlySet<string>, now: Date): void {
    this.#switchTx(host, content, current, now.toISOString());
  }

  /**
   * Records one correlation's findings as the host's own rows (`scan --record`). With
   * `previous` (the history() this correlation started from), only findings that changed
   * are written, so a row's last_seen is when its finding last changed.
   */
  record(host: string, findings: readonly Finding[], now: Date, previous?: ReadonlyMap<string, StoredHistoryEntry>): void {
    this.#recordTx(host, findings, now.toISOString(), previous);
  }

  /** `createdBy`: the actor who accepted the risk (`cli:<unix user>`), kept beside the owner it names (the CLI always gives it). */
  addException(e: RiskException & { host?: string | undefined; createdBy?: string | undefined }, now: Date): number {
    const r = this.#db
      .prepare('INSERT INTO exceptions (advisory, package, host, owner, reason, expires, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(e.advisory, e.package ?? null, e.host ?? null, e.owner, e.reason, e.expires, now.toISOString(), e.createdBy ?? null);
    return Number(r.lastInsertRowid);
  }

  /** Fleet-wide exceptions (no host) that have not expired: what applies to a host with none of its own. */
  fleetExceptions(now: Date): RiskException[] {
    return this.#fleetExceptions
      .all(now.toISOString())
      .map((r) => ({ advisory: r.advisory, package: r.package ?? undefined, owner: r.owner, reason: r.reason, expires: r.expires }));
  }

  /** Exceptions for this host (and fleet-wide ones) that have not expired. */
  exceptions(host: string, now: Date): RiskException[] {
    return this.#exceptions
      .all(host, now.toISOString())
      .map((r) => ({ advisory: r.advisory, package: r.package ?? undefined, owner: r.owner, reason: r.reason, expires: r.expires }));
  }
}
