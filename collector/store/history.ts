/**
 * Finding history. First-seen is kept from the first report that
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
 *
 * On the shared executor (issue 12, POSTGRES.md): the findings write is a hot path, so its
 * rows go down one prepared statement per row on SQLite (the fastest way there) and one
 * set-based statement per table on PostgreSQL (a round trip per row made it 12-19x slower).
 */
import type { Finding } from '../../shared/protocol.ts';
import { historyKey, type HistoryEntry, type RiskException } from '../domain/correlate/findings.ts';
import type { PartScope } from './part-scope.ts';
import type { SqlExecutor } from './sql/executor.ts';
import { sql } from './sql/query.ts';

interface TimelineRow {
  advisory: string;
  package: string;
  first_seen: string;
  resolved: string | null;
  status: string;
  /** Null when a timeline row has no text (none is written without one; '{}' stands in, as before). */
  finding: string | null;
}

/** A history row as stored: its finding's JSON, parsed on demand. */
export interface StoredHistoryEntry extends HistoryEntry {
  readonly json: string;
  /** The finding's status as last recorded (`resolved` once it stopped applying). */
  readonly status: string;
}

function entry(firstSeen: string, resolvedAt: string | null, status: string, json: string, ownFirstSeen = false): StoredHistoryEntry {
  let last: Finding | undefined;
  return {
    firstSeen,
    resolvedAt,
    status,
    json,
    get last() {
      // A content's row carries the content's first-seen; the host's own replaces it.
      const parsed = JSON.parse(json) as Finding;
      return (last ??= ownFirstSeen ? parsed : { ...parsed, firstSeen });
    },
  };
}

function entries(rows: Iterable<TimelineRow>): Map<string, StoredHistoryEntry> {
  const out = new Map<string, StoredHistoryEntry>();
  for (const r of rows) out.set(historyKey(r.advisory, r.package), entry(r.first_seen, r.resolved, r.status, r.finding ?? '{}', true));
  return out;
}

/** Which content a host's history is laid over, and since when (hosts.findings_content, findings_since). */
export interface HostContent {
  content: string | null;
  since: string | null;
}

const ownRows = sql('SELECT advisory, package, first_seen, resolved, status, finding FROM finding_history WHERE host = ?');
// The texts come with the timeline, in one read: buildFindings asks a finding that no longer
// applies for its last state synchronously, and a read per such row would be a round trip
// each on PostgreSQL. The two tables share their key, so the join is a lookup per row.
const TIMELINE = `SELECT c.advisory, c.package, c.first_seen, c.resolved, c.status, t.finding
  FROM content_findings c LEFT JOIN content_finding_texts t ON t.content = c.content AND t.package = c.package AND t.advisory = c.advisory
  WHERE c.content = ?`;
const timeline = sql(TIMELINE);
// SQLite takes the packages as a JSON array, PostgreSQL as a text array.
const timelineOf = sql({
  sqlite: `${TIMELINE} AND c.package IN (SELECT value FROM json_each(?))`,
  postgres: `${TIMELINE} AND c.package = ANY (?::text[])`,
});
// A host's history in one statement: its own rows (layer 0) and the timeline of the content it
// is laid over (layer 1), so that a read outside a transaction sees the host's rows and its
// content as one commit left them (a slice switching the host's content may commit between
// two statements), and PostgreSQL answers in one round trip rather than three.
const hostHistory = sql(`SELECT 0 AS layer, advisory, package, first_seen, resolved, status, finding, NULL AS since FROM finding_history WHERE host = ?
  UNION ALL
  SELECT 1, c.advisory, c.package, c.first_seen, c.resolved, c.status, t.finding, h.findings_since
  FROM hosts h JOIN content_findings c ON c.content = h.findings_content
  LEFT JOIN content_finding_texts t ON t.content = c.content AND t.package = c.package AND t.advisory = c.advisory
  WHERE h.agent_id = ? AND h.findings_since IS NOT NULL`);
const hostContentOf = sql('SELECT findings_content, findings_since FROM hosts WHERE agent_id = ?');
const setHostContent = sql('UPDATE hosts SET findings_content = ?, findings_since = ? WHERE agent_id = ?');

// The row of a finding that applies: its clock restarts only when the stored row was resolved.
const upsertOwn = sql(`INSERT INTO finding_history (host, advisory, package, first_seen, last_seen, resolved, status, finding)
  VALUES (?, ?, ?, ?, ?, NULL, ?, ?)
  ON CONFLICT (host, advisory, package) DO UPDATE SET
    first_seen = CASE WHEN finding_history.resolved IS NULL THEN finding_history.first_seen ELSE excluded.first_seen END,
    last_seen = excluded.last_seen, resolved = NULL, status = excluded.status, finding = excluded.finding`);
const upsertOwnMany = sql({
  postgres: `INSERT INTO finding_history (host, advisory, package, first_seen, last_seen, resolved, status, finding)
  SELECT ?, u.advisory, u.package, u.first_seen, ?, NULL, u.status, u.finding
  FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[]) AS u (advisory, package, first_seen, status, finding)
  ON CONFLICT (host, advisory, package) DO UPDATE SET
    first_seen = CASE WHEN finding_history.resolved IS NULL THEN finding_history.first_seen ELSE excluded.first_seen END,
    last_seen = excluded.last_seen, resolved = NULL, status = excluded.status, finding = excluded.finding`,
});
const resolveOwn = sql(`UPDATE finding_history SET resolved = ?, status = 'resolved' WHERE host = ? AND advisory = ? AND package = ? AND resolved IS NULL`);
const resolveOwnMany = sql({
  postgres: `UPDATE finding_history h SET resolved = u.resolved, status = 'resolved'
  FROM unnest(?::text[], ?::text[], ?::text[]) AS u (advisory, package, resolved)
  WHERE h.host = ? AND h.advisory = u.advisory AND h.package = u.package AND h.resolved IS NULL`,
});

const upsertTimeline = sql(`INSERT INTO content_findings (content, advisory, package, first_seen, last_seen, resolved, status)
  VALUES (?, ?, ?, ?, ?, NULL, ?)
  ON CONFLICT (content, package, advisory) DO UPDATE SET
    first_seen = CASE WHEN content_findings.resolved IS NULL THEN content_findings.first_seen ELSE excluded.first_seen END,
    last_seen = excluded.last_seen, resolved = NULL, status = excluded.status`);
const upsertTimelineMany = sql({
  postgres: `INSERT INTO content_findings (content, advisory, package, first_seen, last_seen, resolved, status)
  SELECT ?, u.advisory, u.package, u.first_seen, ?, NULL, u.status
  FROM unnest(?::text[], ?::text[], ?::text[], ?::text[]) AS u (advisory, package, first_seen, status)
  ON CONFLICT (content, package, advisory) DO UPDATE SET
    first_seen = CASE WHEN content_findings.resolved IS NULL THEN content_findings.first_seen ELSE excluded.first_seen END,
    last_seen = excluded.last_seen, resolved = NULL, status = excluded.status`,
});
const upsertText = sql(`INSERT INTO content_finding_texts (content, advisory, package, finding) VALUES (?, ?, ?, ?)
  ON CONFLICT (content, package, advisory) DO UPDATE SET finding = excluded.finding`);
const upsertTextMany = sql({
  postgres: `INSERT INTO content_finding_texts (content, advisory, package, finding)
  SELECT ?, u.advisory, u.package, u.finding FROM unnest(?::text[], ?::text[], ?::text[]) AS u (advisory, package, finding)
  ON CONFLICT (content, package, advisory) DO UPDATE SET finding = excluded.finding`,
});
const resolveTimeline = sql(`UPDATE content_findings SET resolved = ?, status = 'resolved' WHERE content = ? AND advisory = ? AND package = ? AND resolved IS NULL`);
const resolveTimelineMany = sql({
  postgres: `UPDATE content_findings c SET resolved = u.resolved, status = 'resolved'
  FROM unnest(?::text[], ?::text[], ?::text[]) AS u (advisory, package, resolved)
  WHERE c.content = ? AND c.advisory = u.advisory AND c.package = u.package AND c.resolved IS NULL`,
});

// A host's own row as its history says it is now (switchContent): written whole.
const keepOwn = sql(`INSERT INTO finding_history (host, advisory, package, first_seen, last_seen, resolved, status, finding)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?)
  ON CONFLICT (host, advisory, package) DO UPDATE SET first_seen = excluded.first_seen, last_seen = excluded.last_seen,
    resolved = excluded.resolved, status = excluded.status, finding = excluded.finding`);
// An array parameter holds strings only (SqlValue): a row still open has '' for its resolved
// time, which no real timestamp is, and NULLIF turns it back.
const keepOwnMany = sql({
  postgres: `INSERT INTO finding_history (host, advisory, package, first_seen, last_seen, resolved, status, finding)
  SELECT ?, u.advisory, u.package, u.first_seen, ?, NULLIF(u.resolved, ''), u.status, u.finding
  FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[]) AS u (advisory, package, first_seen, resolved, status, finding)
  ON CONFLICT (host, advisory, package) DO UPDATE SET first_seen = excluded.first_seen, last_seen = excluded.last_seen,
    resolved = excluded.resolved, status = excluded.status, finding = excluded.finding`,
});

const dropTimeline = sql(`DELETE FROM content_findings WHERE content = ?
  AND NOT EXISTS (SELECT 1 FROM hosts WHERE findings_content = ?) AND NOT EXISTS (SELECT 1 FROM inventory_contents WHERE hash = ?)`);
const dropTexts = sql('DELETE FROM content_finding_texts WHERE content = ? AND NOT EXISTS (SELECT 1 FROM content_findings WHERE content = ?)');

const insertException = sql(
  'INSERT INTO exceptions (advisory, package, host, owner, reason, expires, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id',
);
/** One write of a correlation: a finding that applies (upsert) or one that stopped applying (resolve). */
type Write =
  | { kind: 'upsert'; advisory: string; package: string; firstSeen: string; status: string; finding: string }
  | { kind: 'resolve'; advisory: string; package: string; at: string };

/**
 * What a correlation's findings change against `previous`, in the findings' order. `same`
 * says whether a stored row still says what a finding says: nothing is written then.
 */
function writesOf(
  findings: readonly Finding[],
  nowIso: string,
  previous: ReadonlyMap<string, StoredHistoryEntry> | undefined,
  same: (before: StoredHistoryEntry, f: Finding, json: () => string) => boolean,
): Write[] {
  const out: Write[] = [];
  for (const f of findings) {
    const before = previous?.get(historyKey(f.advisory, f.package));
    if (f.status === 'resolved') {
      if (before?.resolvedAt != null) continue;
      out.push({ kind: 'resolve', advisory: f.advisory, package: f.package, at: f.resolvedAt ?? nowIso });
    } else {
      let text: string | undefined;
      const json = (): string => (text ??= JSON.stringify(f));
      // Unchanged since the last correlation: nothing to write. A host with 250 findings
      // otherwise rewrote 250 rows per report, most of its correlation time.
      if (before !== undefined && before.resolvedAt === null && same(before, f, json)) continue;
      out.push({ kind: 'upsert', advisory: f.advisory, package: f.package, firstSeen: f.firstSeen, status: f.status, finding: json() });
    }
  }
  return out;
}

/**
 * The writes as PostgreSQL's set-based statements take them: one per key (the last, as the
 * per-row loop leaves it; one statement may not change a row twice), in key order, so that
 * two transactions writing the same content lock its rows in the same order and do not deadlock.
 */
function lastPerKey<W extends { advisory: string; package: string }>(writes: readonly W[]): W[] {
  const byKey = new Map<string, W>();
  for (const w of writes) {
    byKey.set(historyKey(w.advisory, w.package), w);
  }
  return [...byKey.values()].sort((a, b) => (a.package < b.package ? -1 : a.package > b.package ? 1 : a.advisory < b.advisory ? -1 : a.advisory > b.advisory ? 1 : 0));
}

function split(writes: readonly Write[]): { upserts: Extract<Write, { kind: 'upsert' }>[]; resolves: Extract<Write, { kind: 'resolve' }>[] } {
  const upserts: Extract<Write, { kind: 'upsert' }>[] = [];
  const resolves: Extract<Write, { kind: 'resolve' }>[] = [];
  for (const w of lastPerKey(writes)) {
    if (w.kind === 'upsert') upserts.push(w);
    else resolves.push(w);
  }
  return { upserts, resolves };
}

/** A host's own rows (`finding_history`). */
async function writeOwn(ex: SqlExecutor, host: string, writes: readonly Write[], nowIso: string): Promise<void> {
  if (ex.dialect === 'sqlite') {
    for (const w of writes) {
      if (w.kind === 'upsert') await ex.run(upsertOwn, [host, w.advisory, w.package, w.firstSeen, nowIso, w.status, w.finding]);
      else await ex.run(resolveOwn, [w.at, host, w.advisory, w.package]);
    }
    return;
  }
  const { upserts, resolves } = split(writes);
  if (upserts.length > 0) {
    await ex.run(upsertOwnMany, [
      host,
      nowIso,
      upserts.map((w) => w.advisory),
      upserts.map((w) => w.package),
      upserts.map((w) => w.firstSeen),
      upserts.map((w) => w.status),
      upserts.map((w) => w.finding),
    ]);
  }
  if (resolves.length > 0) await ex.run(resolveOwnMany, [resolves.map((w) => w.advisory), resolves.map((w) => w.package), resolves.map((w) => w.at), host]);
}

/** A content's timeline (`content_findings`) and its texts (`content_finding_texts`). */
async function writeTimeline(ex: SqlExecutor, content: string, writes: readonly Write[], nowIso: string): Promise<void> {
  if (ex.dialect === 'sqlite') {
    for (const w of writes) {
      if (w.kind === 'upsert') {
        await ex.run(upsertTimeline, [content, w.advisory, w.package, w.firstSeen, nowIso, w.status]);
        await ex.run(upsertText, [content, w.advisory, w.package, w.finding]);
      } else await ex.run(resolveTimeline, [w.at, content, w.advisory, w.package]);
    }
    return;
  }
  const { upserts, resolves } = split(writes);
  if (upserts.length > 0) {
    const advisories = upserts.map((w) => w.advisory);
    const packages = upserts.map((w) => w.package);
    await ex.run(upsertTimelineMany, [content, nowIso, advisories, packages, upserts.map((w) => w.firstSeen), upserts.map((w) => w.status)]);
    await ex.run(upsertTextMany, [content, advisories, packages, upserts.map((w) => w.finding)]);
  }
  if (resolves.length > 0) await ex.run(resolveTimelineMany, [resolves.map((w) => w.advisory), resolves.map((w) => w.package), resolves.map((w) => w.at), content]);
}

interface Kept {
  advisory: string;
  package: string;
  firstSeen: string;
  resolved: string | null;
  status: string;
  finding: string;
}

async function keepRows(ex: SqlExecutor, host: string, rows: readonly Kept[], nowIso: string): Promise<void> {
  if (ex.dialect === 'sqlite') {
    for (const r of rows) await ex.run(keepOwn, [host, r.advisory, r.package, r.firstSeen, nowIso, r.resolved, r.status, r.finding]);
    return;
  }
  if (rows.length === 0) return;
  // One row per key already (they come from a map); sorted for the lock order.
  const sorted = lastPerKey(rows);
  await ex.run(keepOwnMany, [
    host,
    nowIso,
    sorted.map((r) => r.advisory),
    sorted.map((r) => r.package),
    sorted.map((r) => r.firstSeen),
    sorted.map((r) => r.resolved ?? ''),
    sorted.map((r) => r.status),
    sorted.map((r) => r.finding),
  ]);
}

async function hostContentOn(ex: SqlExecutor, host: string): Promise<HostContent> {
  const r = await ex.get<{ findings_content: string | null; findings_since: string | null }>(hostContentOf, [host]);
  return { content: r?.findings_content ?? null, since: r?.findings_since ?? null };
}

/**
 * `rows` (a content's timeline) laid over a host's own rows from `since`: a finding the content
 * had when the host took it is the host's from then (or from its carry-over row's first-seen),
 * one the content gained later from when it gained it, and an episode the content closed
 * before the host took it is not the host's.
 */
function laid(own: Map<string, StoredHistoryEntry>, since: string, rows: Iterable<TimelineRow>): Map<string, StoredHistoryEntry> {
  for (const r of rows) {
    if (r.resolved !== null && r.resolved <= since) continue;
    const key = historyKey(r.advisory, r.package);
    const mine = own.get(key);
    const firstSeen = r.first_seen > since ? r.first_seen : mine !== undefined && mine.resolvedAt === null ? mine.firstSeen : since;
    own.set(key, entry(firstSeen, r.resolved, r.status, r.finding ?? '{}'));
  }
  return own;
}

/** The host's own rows with the timeline of `at` laid over them (history() with its content given, and switchContent). */
async function historyOn(ex: SqlExecutor, host: string, at: HostContent, own?: ReadonlyMap<string, StoredHistoryEntry>): Promise<Map<string, StoredHistoryEntry>> {
  const out = own === undefined ? entries(await ex.all<TimelineRow>(ownRows, [host])) : new Map(own);
  if (at.content === null || at.since === null) return out;
  return laid(out, at.since, await ex.all<TimelineRow>(timeline, [at.content]));
}

export class FindingHistoryStore {
  readonly #scope: PartScope;

  constructor(scope: PartScope) {
    this.#scope = scope;
  }

  /** The content a host's history is laid over; both null before its first correlation (and for `scan --record` keys). */
  hostContent(host: string): Promise<HostContent> {
    return hostContentOn(this.#scope.ex, host);
  }

  /**
   * What the host had: the input to buildFindings' first-seen and resolved logic. Its own
   * rows, with its content's timeline laid over them from `since` (laid()). Each finding is
   * parsed only if asked for (`last`).
   */
  async history(host: string, at?: HostContent): Promise<Map<string, StoredHistoryEntry>> {
    const ex = this.#scope.ex;
    if (at !== undefined) return historyOn(ex, host, at);
    const rows = await ex.all<TimelineRow & { layer: number; since: string | null }>(hostHistory, [host, host]);
    const out = entries(rows.filter((r) => r.layer === 0));
    const over = rows.filter((r) => r.layer === 1);
    const since = over[0]?.since;
    return since === undefined || since === null ? out : laid(out, since, over);
  }

  /** A content's own timeline, or its rows of these packages: what its correlation compares against (recordContent). */
  async contentHistory(content: string, packages?: readonly string[]): Promise<Map<string, StoredHistoryEntry>> {
    const ex = this.#scope.ex;
    const rows =
      packages === undefined
        ? await ex.all<TimelineRow>(timeline, [content])
        : await ex.all<TimelineRow>(timelineOf, [content, ex.dialect === 'sqlite' ? JSON.stringify(packages) : packages]);
    return entries(rows);
  }

  /**
   * Records a content's findings (judged without any host's history or exceptions) against `previous` (its contentHistory).
   *
   * A content's row is rewritten when its status changes, not when only the advisory's text
   * does (a new fixed version, a day that turns it overdue): its facts are when it came and
   * went, the finding itself is judged afresh at every read, and its text is kept to show
   * what a finding was once it stops applying. A feed change rewriting 50 advisories would
   * otherwise rewrite their rows in every content of the fleet.
   */
  async recordContent(content: string, findings: readonly Finding[], now: Date, previous: ReadonlyMap<string, StoredHistoryEntry>): Promise<void> {
    const nowIso = now.toISOString();
    const writes = writesOf(findings, nowIso, previous, (before, f) => before.status === f.status);
    if (writes.length === 0) return;
    await this.#scope.atomic((s) => writeTimeline(s.ex, content, writes, nowIso));
  }

  /**
   * The host's inventory is now of `content`, whose current findings are `current`
   * (historyKey): writes the host's history up to now as its own rows (see the file
   * comment), then lays the new content over it from `now`.
   */
  async switchContent(host: string, content: string, current: ReadonlySet<string>, now: Date): Promise<void> {
    const nowIso = now.toISOString();
    await this.#scope.atomic(async (s) => {
      const ex = s.ex;
      const own = entries(await ex.all<TimelineRow>(ownRows, [host]));
      const at = await hostContentOn(ex, host);
      const was = await historyOn(ex, host, at, own);
      const kept: Kept[] = [];
      for (const [key, e] of was) {
        const cut = key.indexOf('\u0000');
        // Kept: first-seen carries over. Gone: resolved now. Resolved before: kept as it was.
        const resolved = e.resolvedAt === null && !current.has(key) ? nowIso : e.resolvedAt;
        const status = resolved === null ? e.status : 'resolved';
        const mine = own.get(key);
        if (mine !== undefined && mine.firstSeen === e.firstSeen && mine.resolvedAt === resolved && mine.status === status) continue;
        kept.push({ advisory: key.slice(0, cut), package: key.slice(cut + 1), firstSeen: e.firstSeen, resolved, status, finding: JSON.stringify(e.last) });
      }
      await keepRows(ex, host, kept, nowIso);
      await ex.run(setHostContent, [content, nowIso, host]);
      if (at.content !== null && at.content !== content) await dropOn(ex, at.content);
    });
  }

  /**
   * Records one correlation's findings as the host's own rows (`scan --record`). With
   * `previous` (the history() this correlation started from), only findings that changed
   * are written, so a row's last_seen is when its finding last changed.
   */
  async record(host: string, findings: readonly Finding[], now: Date, previous?: ReadonlyMap<string, StoredHistoryEntry>): Promise<void> {
    const nowIso = now.toISOString();
    const writes = writesOf(findings, nowIso, previous, (before, _f, json) => before.json === json());
    if (writes.length === 0) return;
    await this.#scope.atomic((s) => writeOwn(s.ex, host, writes, nowIso));
  }

  /**
   * Deletes a content's findings timeline and texts when nobody needs them: no host's history
   * is laid over it and the content itself is gone (the reports naming it were pruned).
   * Called where either can stop: a host moving on (switchContent) and a content pruned (reports.ts).
   */
  async dropOrphanTimeline(content: string): Promise<void> {
    await this.#scope.atomic((s) => dropOn(s.ex, content));
  }

  /** `createdBy`: the actor who accepted the risk (`cli:<unix user>`), kept beside the owner it names (the CLI always gives it). */
  async addException(e: RiskException & { host?: string | undefined; createdBy?: string | undefined }, now: Date): Promise<number> {
    const r = await this.#scope.ex.get<{ id: number }>(insertException, [
      e.advisory,
      e.package ?? null,
      e.host ?? null,
      e.owner,
      e.reason,
      e.expires,
      now.toISOString(),
      e.createdBy ?? null,
    ]);
    return Number(r?.id);
  }
}

async function dropOn(ex: SqlExecutor, content: string): Promise<void> {
  await ex.run(dropTimeline, [content, content, content]);
  await ex.run(dropTexts, [content, content]);
}
