/**
 * WAL checkpoints on a worker thread with its own connection, so the thread that acks
 * reports never waits for one.
 *
 * SQLite's automatic checkpoint runs inside whichever COMMIT crosses the threshold: it
 * copies the WAL's pages into the database file and syncs both, on the event loop. Under a
 * stream of reports that was about a third of what storing a report cost, and each one
 * stalled every connection for its fsync. A PASSIVE checkpoint from another connection
 * runs beside the writer (it never blocks it, and skips frames a reader still needs), so
 * the worker checkpoints every `intervalMs` and the main connection only keeps a far
 * higher automatic threshold as a backstop for a stopped or stuck worker.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../logger.ts';
import type { Db } from './db.ts';

/** The main connection's own threshold while the worker runs (pages; 4 KiB each, so 40 MB). */
export const BACKSTOP_PAGES = 10_000;
/** A WAL that grew past this is truncated back to it when SQLite restarts it. */
const WAL_SIZE_LIMIT = 64 * 1024 * 1024;

// Plain CommonJS: it runs as an eval'd worker, from the bundle and from the sources alike.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('busy_timeout = 1000');
const run = () => {
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)');
    parentPort.postMessage({ type: 'done', walFrames: r.log, checkpointed: r.checkpointed });
  } catch (err) {
    parentPort.postMessage({ type: 'failed', message: String(err && err.message) });
  }
};
const timer = setInterval(run, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  run();
  db.close();
  parentPort.close();
});
`;

type WorkerMessage = { type: 'done'; walFrames: number; checkpointed: number } | { type: 'failed'; message: string };

/** better-sqlite3 as this process loads it: beside dist/collector.js, or the repo's for the sources. */
function betterSqlite3Path(): string {
  // A string in the CommonJS bundle; undefined when the sources run as ESM (tests).
  const base = typeof __filename === 'string' ? __filename : import.meta.url;
  return createRequire(base).resolve('better-sqlite3');
}

export interface CheckpointerStats {
  checkpoints: number;
  failures: number;
  /** Frames in the WAL at the last checkpoint. */
  walFrames: number;
}

export class WalCheckpointer {
  readonly #worker: Worker;
  readonly #log: Logger;
  readonly #exited: Promise<void>;
  #stopping = false;
  readonly stats: CheckpointerStats = { checkpoints: 0, failures: 0, walFrames: 0 };

  /** `db` is the main connection: its own automatic checkpoint becomes the backstop. */
  constructor(db: Db, opts: { path: string; intervalMs?: number; logger: Logger }) {
    this.#log = opts.logger;
    db.pragma(`wal_autocheckpoint = ${String(BACKSTOP_PAGES)}`);
    db.pragma(`journal_size_limit = ${String(WAL_SIZE_LIMIT)}`);
    this.#worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module: betterSqlite3Path(), path: opts.path, intervalMs: opts.intervalMs ?? 250 } });
    this.#worker.unref();
    this.#worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'done') {
        this.stats.checkpoints++;
        this.stats.walFrames = m.walFrames;
      } else {
        this.stats.failures++;
        this.#log.warn({ code: 'PW_ERR_STORE' }, `WAL checkpoint failed (the main connection checkpoints past ${String(BACKSTOP_PAGES)} pages): ${m.message}`);
      }
    });
    this.#worker.on('error', (err) => {
      this.stats.failures++;
      this.#log.error({ err, code: 'PW_ERR_STORE' }, `the WAL checkpoint worker failed; the main connection checkpoints past ${String(BACKSTOP_PAGES)} pages`);
    });
    this.#exited = new Promise((resolve) => {
      this.#worker.once('exit', () => {
        if (!this.#stopping) this.#log.warn('the WAL checkpoint worker exited');
        resolve();
      });
    });
  }

  /** A last checkpoint, then the worker's connection closes; call before closing the main connection. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (!this.#stopping) {
      this.#stopping = true;
      await stopWorker(this.#worker, this.#exited, timeoutMs);
    }
    return this.#exited;
  }
}

/**
 * Asks a store worker to stop (it finishes the work in hand and closes its connection), and
 * terminates it if it has not exited within timeoutMs: a very large file is not waited for.
 */
export async function stopWorker(worker: Worker, exited: Promise<void>, timeoutMs: number): Promise<void> {
  worker.postMessage('stop');
  const timer = setTimeout(() => void worker.terminate(), timeoutMs);
  await exited;
  clearTimeout(timer);
}
