/**
 * Per-host finding history and accepted risks. First-seen is kept from the first report
 * that raised a finding until it stops applying (resolved), so time-to-remediate is
 * `resolved - first_seen`; a finding that comes back starts a new clock.
 */
import type { Finding } from '../../shared/protocol.ts';
import { historyKey, type HistoryEntry, type RiskException } from '../correlate/findings.ts';
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

function entries(rows: Iterable<HistoryRow>): Map<string, StoredHistoryEntry> {
  const out = new Map<string, StoredHistoryEntry>();
  for (const r of rows) {
    let last: Finding | undefined;
    const json = r.finding;
    out.set(historyKey(r.advisory, r.package), {
      firstSeen: r.first_seen,
      resolvedAt: r.resolved,
      status: r.status,
      json,
      get last() {
        return (last ??= JSON.parse(json) as Finding);
      },
    });
  }
  return out;
}

export class FindingHistoryStore {
  readonly #db: Db;
  readonly #select;
  readonly #selectPackages;
  readonly #upsert;
  readonly #resolve;
  readonly #exceptions;
  readonly #recordTx;

  constructor(db: Db) {
    this.#db = db;
    this.#select = db.prepare<[string], HistoryRow>('SELECT advisory, package, first_seen, resolved, status, finding FROM finding_history WHERE host = ?');
    // `+package`: seek on (host, advisory) and filter the package; on the whole key SQLite
    // seeks every (advisory, package) pair, 1,800 seeks for 50 advisories over 36 packages.
    this.#selectPackages = db.prepare<[string, string, string], HistoryRow>(
      `SELECT advisory, package, first_seen, resolved, status, finding FROM finding_history
       WHERE host = ? AND advisory IN (SELECT value FROM json_each(?)) AND +package IN (SELECT value FROM json_each(?))`,
    );
    this.#upsert = db.prepare(
      `INSERT INTO finding_history (host, advisory, package, first_seen, last_seen, resolved, status, finding)
       VALUES (@host, @advisory, @package, @firstSeen, @now, NULL, @status, @finding)
       ON CONFLICT (host, advisory, package) DO UPDATE SET
         first_seen = CASE WHEN resolved IS NULL THEN first_seen ELSE excluded.first_seen END,
         last_seen = excluded.last_seen, resolved = NULL, status = excluded.status, finding = excluded.finding`,
    );
    this.#resolve = db.prepare(`UPDATE finding_history SET resolved = @now, status = 'resolved' WHERE host = @host AND advisory = @advisory AND package = @package AND resolved IS NULL`);
    // Prepared once: both run for every correlated host, thousands of times in a burst of reports.
    this.#exceptions = db.prepare<[string, string], { advisory: string; package: string | null; owner: string; reason: string; expires: string }>(
      'SELECT advisory, package, owner, reason, expires FROM exceptions WHERE (host IS NULL OR host = ?) AND expires > ? ORDER BY id',
    );
    this.#recordTx = db.transaction((host: string, findings: readonly Finding[], nowIso: string, previous: ReadonlyMap<string, StoredHistoryEntry> | undefined) => {
      for (const f of findings) {
        const before = previous?.get(historyKey(f.advisory, f.package));
        if (f.status === 'resolved') {
          if (before?.resolvedAt != null) continue;
          this.#resolve.run({ host, advisory: f.advisory, package: f.package, now: f.resolvedAt ?? nowIso });
        } else {
          const finding = JSON.stringify(f);
          // Unchanged since the last correlation: nothing to write. A host with 250 findings
          // otherwise rewrote 250 rows per report, most of its correlation time.
          if (before !== undefined && before.resolvedAt === null && before.json === finding) continue;
          this.#upsert.run({ host, advisory: f.advisory, package: f.package, firstSeen: f.firstSeen, now: nowIso, status: f.status, finding });
        }
      }
    });
  }

  /**
   * What the host had before: the input to buildFindings' first-seen and resolved logic,
   * and to record()'s comparison. Each row's finding is parsed only if asked for (`last`).
   */
  history(host: string): Map<string, StoredHistoryEntry> {
    return entries(this.#select.iterate(host));
  }

  /** The history of these advisories on these packages only: what a feed change's fan-out compares against (a seek on the key's (host, advisory) prefix). */
  historyOf(host: string, advisories: readonly string[], packages: readonly string[]): Map<string, StoredHistoryEntry> {
    return entries(this.#selectPackages.iterate(host, JSON.stringify(advisories), JSON.stringify(packages)));
  }

  /**
   * Records one correlation's findings for the host in one transaction. With `previous`
   * (the history() this correlation started from), only findings that changed are written,
   * so a row's last_seen is when its finding last changed; an open finding is current as of
   * the host's last report (hosts.last_report_at).
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

  /**
   * Ends an exception now (its expiry moves to `now`), keeping the row for the record; the
   * expiry it had is returned, undefined when there is no such exception or it has ended.
   */
  endException(id: number, now: Date): string | undefined {
    const at = now.toISOString();
    const row = this.#db.prepare<[number, string], { expires: string }>('SELECT expires FROM exceptions WHERE id = ? AND expires > ?').get(id, at);
    if (row === undefined) return undefined;
    this.#db.prepare<[string, number]>('UPDATE exceptions SET expires = ? WHERE id = ?').run(at, id);
    return row.expires;
  }

  /** Every exception ever added, ended ones too, oldest first: `exception list`. */
  allExceptions(): unknown[] {
    return this.#db.prepare('SELECT id, advisory, package, host, owner, reason, expires, created_at AS createdAt, created_by AS createdBy FROM exceptions ORDER BY id').all();
  }

  /** Exceptions for this host (and fleet-wide ones) that have not expired. */
  exceptions(host: string, now: Date): RiskException[] {
    return this.#exceptions
      .all(host, now.toISOString())
      .map((r) => ({ advisory: r.advisory, package: r.package ?? undefined, owner: r.owner, reason: r.reason, expires: r.expires }));
  }
}
