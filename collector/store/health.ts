/**
 * Whether the store is healthy, as `/healthz` reports it. "The database answers a query"
 * was not enough: a file with overwritten pages answers `SELECT 1`, and so does a store
 * on a full disk while every report fails to commit. Three things are checked:
 *
 * - a real commit: one row (store_heartbeat) rewritten in its own transaction, at most
 *   once per `writeIntervalMs` however often probes come, with a short busy timeout so a
 *   locked store answers "busy" instead of holding the event loop for 5 s;
 * - room to grow: the filesystem's free space for unprivileged writers, and SQLite's own
 *   `max_page_count` headroom, against `minFreeBytes`. In WAL mode the heartbeat rewrites
 *   WAL pages that already exist, so it still commits on a full disk while a report, which
 *   must grow the WAL and the file, fails; the free space is what tells;
 * - the newest periodic quick_check (collector/store/integrity.ts), with its age.
 *
 * A store is healthy only when it answers, committed its last heartbeat, has room and its
 * last check found nothing; each failure comes with a stable code and a reason.
 */
import { statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type Database from 'better-sqlite3';
import { errorMessage } from '../../shared/errors.ts';
import type { Db } from './db.ts';
import type { IntegrityCheck, IntegrityStatus } from './integrity.ts';

/** Probes closer together than this reuse the last commit's result. */
export const WRITE_PROBE_INTERVAL_MS = 10_000;
/** Two full-size reports (32 MiB frames), each written to the WAL and then into the file. */
export const MIN_FREE_BYTES = 64 * 1024 * 1024;
/** How long the heartbeat waits for another writer (a CLI import) before saying busy. */
const PROBE_BUSY_TIMEOUT_MS = 250;

export const HEALTH_CODES = Object.freeze({
  closed: 'PW_ERR_STORE',
  unwritable: 'PW_ERR_STORE_UNWRITABLE',
  full: 'PW_ERR_STORE_FULL',
  integrity: 'PW_ERR_STORE_INTEGRITY',
});

export interface HealthProblem {
  code: string;
  message: string;
}

export interface StoreHealthReport {
  ok: boolean;
  /** The database answers a query. */
  answers: boolean;
  /** The last heartbeat committed (and the store has room): writes can succeed. */
  writable: boolean;
  lastWriteAt: string | null;
  /** Bytes the store can still grow by: the smaller of the filesystem's free space and SQLite's page headroom; null in memory. */
  freeBytes: number | null;
  /** 'off' for a store with no periodic check (in memory, tests); 'pending' until the first one finishes. */
  integrity: IntegrityStatus | 'pending' | 'off';
  integrityCheckedAt: string | null;
  integrityAgeSeconds: number | null;
  integrityIntervalSeconds: number | null;
  problems: HealthProblem[];
}

export interface StoreHealthOptions {
  integrity?: IntegrityCheck | null;
  writeIntervalMs?: number;
  minFreeBytes?: number;
  /** Told when the set of problems changes (to log it once, not at every probe). */
  onChange?: (report: StoreHealthReport) => void;
}

interface WriteProbe {
  at: number;
  error: string | null;
  freeBytes: number | null;
}

export class StoreHealth {
  readonly #db: Db;
  readonly #dir: string | null;
  readonly #integrity: IntegrityCheck | null;
  readonly #writeIntervalMs: number;
  readonly #minFreeBytes: number;
  readonly #onChange: ((r: StoreHealthReport) => void) | undefined;
  #probe: WriteProbe | null = null;
  #lastWriteAt: Date | null = null;
  #lastCodes = '';
  #ping: Database.Statement | null = null;
  #beat: Database.Statement | null = null;

  constructor(db: Db, opts: StoreHealthOptions = {}) {
    this.#db = db;
    this.#dir = db.memory ? null : dirname(resolve(db.name));
    this.#integrity = opts.integrity ?? null;
    this.#writeIntervalMs = opts.writeIntervalMs ?? WRITE_PROBE_INTERVAL_MS;
    this.#minFreeBytes = opts.minFreeBytes ?? MIN_FREE_BYTES;
    this.#onChange = opts.onChange;
  }

  check(): StoreHealthReport {
    const problems: HealthProblem[] = [];
    const answers = this.#answers();
    if (!answers) problems.push({ code: HEALTH_CODES.closed, message: 'the database does not answer a query' });
    let probe: WriteProbe | null = null;
    if (answers) {
      if (this.#probe === null || performance.now() - this.#probe.at >= this.#writeIntervalMs) this.#probe = this.#writeProbe();
      probe = this.#probe;
      if (probe.error !== null) problems.push({ code: HEALTH_CODES.unwritable, message: `the store cannot commit: ${probe.error}` });
      if (probe.freeBytes !== null && probe.freeBytes < this.#minFreeBytes) {
        problems.push({ code: HEALTH_CODES.full, message: `the store has ${probe.freeBytes} bytes of room left, under the ${this.#minFreeBytes} a report may need` });
      }
    }
    const integrity = this.#integrityState(problems);
    const report: StoreHealthReport = {
      ok: problems.length === 0,
      answers,
      writable: probe !== null && probe.error === null && (probe.freeBytes === null || probe.freeBytes >= this.#minFreeBytes),
      lastWriteAt: this.#lastWriteAt?.toISOString() ?? null,
      freeBytes: probe?.freeBytes ?? null,
      ...integrity,
      problems,
    };
    const codes = problems.map((p) => p.code).join(',');
    if (codes !== this.#lastCodes) {
      this.#lastCodes = codes;
      this.#onChange?.(report);
    }
    return report;
  }

  #answers(): boolean {
    try {
      if (!this.#db.open) return false;
      this.#ping ??= this.#db.prepare('SELECT 1 AS ok');
      return (this.#ping.get() as { ok: number } | undefined)?.ok === 1;
    } catch {
      return false;
    }
  }

  #writeProbe(): WriteProbe {
    const at = performance.now();
    let error: string | null = null;
    if (this.#db.inTransaction) {
      // Never the case between requests; committing here would commit someone else's work.
      return { at, error: null, freeBytes: this.#room() };
    }
    const busy = this.#db.pragma('busy_timeout', { simple: true }) as number;
    this.#db.pragma(`busy_timeout = ${String(PROBE_BUSY_TIMEOUT_MS)}`);
    try {
      const now = new Date();
      // One statement in autocommit: run() returns only once its COMMIT succeeded.
      this.#beat ??= this.#db.prepare('INSERT INTO store_heartbeat (id, at, pid) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at, pid = excluded.pid');
      this.#beat.run(now.toISOString(), process.pid);
      this.#lastWriteAt = now;
    } catch (err) {
      error = errorMessage(err);
    } finally {
      this.#db.pragma(`busy_timeout = ${String(busy)}`);
    }
    return { at, error, freeBytes: this.#room() };
  }

  /** Bytes the database can still grow by; null when unknown (in memory). */
  #room(): number | null {
    if (this.#dir === null) return null;
    try {
      const fs = statfsSync(this.#dir);
      const disk = fs.bavail * fs.bsize;
      const pageSize = this.#db.pragma('page_size', { simple: true }) as number;
      const pages = this.#db.pragma('page_count', { simple: true }) as number;
      const max = this.#db.pragma('max_page_count', { simple: true }) as number;
      const free = this.#db.pragma('freelist_count', { simple: true }) as number;
      return Math.min(disk, (max - pages + free) * pageSize);
    } catch {
      return null;
    }
  }

  #integrityState(problems: HealthProblem[]): Pick<StoreHealthReport, 'integrity' | 'integrityCheckedAt' | 'integrityAgeSeconds' | 'integrityIntervalSeconds'> {
    const check = this.#integrity;
    if (check === null) return { integrity: 'off', integrityCheckedAt: null, integrityAgeSeconds: null, integrityIntervalSeconds: null };
    const latest = check.latest();
    const intervalSeconds = Math.round(check.intervalMs / 1000);
    const since = latest?.checkedAt ?? check.startedAt;
    const ageMs = Date.now() - since.getTime();
    if (latest !== null && latest.status !== 'ok') {
      const first = latest.problems.slice(0, 3).join('; ');
      problems.push({ code: HEALTH_CODES.integrity, message: latest.status === 'corrupt' ? `quick_check found the database damaged: ${first}` : `quick_check could not read the database: ${first}` });
    } else if (check.failure !== null) {
      problems.push({ code: HEALTH_CODES.integrity, message: `no further integrity checks: ${check.failure}` });
    } else if (ageMs > 2 * check.intervalMs + 10 * 60 * 1000) {
      // Two missed runs and then some: a check that never ends is no check.
      problems.push({ code: HEALTH_CODES.integrity, message: `no quick_check result for ${Math.round(ageMs / 1000)} s (one is due every ${intervalSeconds} s)` });
    }
    return {
      integrity: latest?.status ?? 'pending',
      integrityCheckedAt: latest?.checkedAt.toISOString() ?? null,
      integrityAgeSeconds: latest === null ? null : Math.round(ageMs / 1000),
      integrityIntervalSeconds: intervalSeconds,
    };
  }
}
