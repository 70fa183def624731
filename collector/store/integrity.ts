/**
 * A periodic `PRAGMA quick_check` on a worker thread with its own read-only connection, so
 * `/healthz` can say whether the database file is still sound (collector/store/health.ts).
 *
 * A `SELECT 1` answers from a file whose table pages were overwritten with random bytes:
 * only reading every b-tree page finds that, and on a store of a few GB that takes seconds
 * of I/O. So it runs on a schedule (at start, then every `intervalMs`), never per request,
 * and off the event loop. quick_check is integrity_check without the index-content
 * cross-checks: O(N) in the file's size, where integrity_check is O(N log N).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { stopWorker } from './checkpointer.ts';

/** Between two checks. A run reads the whole file: hourly keeps that under a few seconds of I/O an hour on a GB-sized store. */
export const INTEGRITY_CHECK_INTERVAL_MS = 60 * 60 * 1000;
/** quick_check stops after this many problems; /healthz shows the first few. */
const MAX_PROBLEMS = 10;

export type IntegrityStatus = 'ok' | 'corrupt' | 'error';

export interface IntegrityResult {
  status: IntegrityStatus;
  /** quick_check's own lines ("*** in database main *** Page 5: ..."), or the error that stopped it. */
  problems: string[];
  checkedAt: Date;
  ms: number;
}

// Plain CommonJS: it runs as an eval'd worker, from the bundle and from the sources alike.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
let db = null;
let timer = null;
const CORRUPT = new Set(['SQLITE_CORRUPT', 'SQLITE_NOTADB', 'SQLITE_CORRUPT_INDEX', 'SQLITE_CORRUPT_SEQUENCE', 'SQLITE_CORRUPT_VTAB']);
const run = () => {
  const started = Date.now();
  try {
    if (db === null) {
      // Read-only: the check must never be what changes the file it judges.
      db = new Database(workerData.path, { readonly: true, fileMustExist: true });
      db.pragma('busy_timeout = 1000');
    }
    const rows = db.pragma('quick_check(' + workerData.maxProblems + ')');
    const lines = rows.map((r) => String(r.quick_check));
    const ok = lines.length === 1 && lines[0] === 'ok';
    parentPort.postMessage({ status: ok ? 'ok' : 'corrupt', problems: ok ? [] : lines, at: Date.now(), ms: Date.now() - started });
  } catch (err) {
    const code = err && typeof err.code === 'string' ? err.code : '';
    // Busy: another connection is recovering the WAL; the next run will tell.
    if (code.startsWith('SQLITE_BUSY')) return;
    parentPort.postMessage({ status: CORRUPT.has(code) ? 'corrupt' : 'error', problems: [String(err && err.message) + (code ? ' (' + code + ')' : '')], at: Date.now(), ms: Date.now() - started });
    try { if (db !== null) db.close(); } catch {}
    db = null;
  }
};
const schedule = (ms) => {
  timer = setTimeout(() => { run(); schedule(workerData.intervalMs); }, ms);
};
schedule(workerData.firstDelayMs);
parentPort.on('message', (m) => {
  if (m === 'check') {
    clearTimeout(timer);
    run();
    schedule(workerData.intervalMs);
    return;
  }
  if (m !== 'stop') return;
  clearTimeout(timer);
  try { if (db !== null) db.close(); } catch {}
  parentPort.close();
});
`;

interface WorkerMessage {
  status: IntegrityStatus;
  problems: string[];
  at: number;
  ms: number;
}

function betterSqlite3Path(): string {
  // A string in the CommonJS bundle; undefined when the sources run as ESM (tests).
  const base = typeof __filename === 'string' ? __filename : import.meta.url;
  return createRequire(base).resolve('better-sqlite3');
}

export interface IntegrityCheckOptions {
  path: string;
  intervalMs?: number;
  /** Default 0: the first check starts with the collector (on its own thread). */
  firstDelayMs?: number;
  onResult?: (r: IntegrityResult) => void;
}

export class IntegrityCheck {
  readonly intervalMs: number;
  readonly startedAt = new Date();
  readonly #worker: Worker;
  readonly #exited: Promise<void>;
  #latest: IntegrityResult | null = null;
  #stopping = false;
  #workerError: string | null = null;

  constructor(opts: IntegrityCheckOptions) {
    this.intervalMs = opts.intervalMs ?? INTEGRITY_CHECK_INTERVAL_MS;
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { module: betterSqlite3Path(), path: opts.path, intervalMs: this.intervalMs, firstDelayMs: opts.firstDelayMs ?? 0, maxProblems: MAX_PROBLEMS },
    });
    this.#worker.unref();
    this.#worker.on('message', (m: WorkerMessage) => {
      this.#latest = { status: m.status, problems: m.problems, checkedAt: new Date(m.at), ms: m.ms };
      opts.onResult?.(this.#latest);
    });
    this.#worker.on('error', (err) => {
      this.#workerError = err.message;
    });
    this.#exited = new Promise((resolve) => {
      this.#worker.once('exit', () => {
        if (!this.#stopping) this.#workerError ??= 'the integrity check worker exited';
        resolve();
      });
    });
  }

  /** The newest result; null until the first check finishes. */
  latest(): IntegrityResult | null {
    return this.#latest;
  }

  /** Why no further results will come (the worker failed or exited), or null. */
  get failure(): string | null {
    return this.#workerError;
  }

  /** Starts a check now (the schedule restarts from it); the result arrives through latest() and onResult. */
  checkNow(): void {
    this.#worker.postMessage('check');
  }

  async stop(timeoutMs = 2000): Promise<void> {
    if (!this.#stopping) {
      this.#stopping = true;
      // A check in progress finishes first.
      await stopWorker(this.#worker, this.#exited, timeoutMs);
    }
    return this.#exited;
  }
}
