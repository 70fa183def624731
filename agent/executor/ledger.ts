/**
 * The instruction ids this agent has accepted, on disk, so that a replay is refused even
 * after a restart. One JSON line per id, appended and fsync'd BEFORE the instruction runs:
 * a crash after running can never allow a second run, and a crash while appending leaves at
 * most a torn last line, whose instruction never ran either (it is skipped on open).
 *
 * Bounded: an id whose instruction expired more than RETAIN_AFTER_EXPIRY_MS ago is dropped
 * when the file is compacted, because the verifier refuses an expired instruction anyway.
 * The margin keeps an id past the verifier's clock-skew allowance and a small backwards
 * step of the clock.
 *
 * Fail closed: a ledger that cannot be read or written means nothing runs (the caller turns
 * the error into a refusal), never "nothing was run before".
 */
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { InstructionRefusedError } from '../../shared/errors.ts';
import { fsyncDirectory, writeFileAtomic } from '../../shared/atomic-write.ts';

export const LEDGER_FILE_NAME = 'instructions.ledger';
export const LEDGER_CODE = 'PW_ERR_INSTRUCTION_LEDGER';
/** A day: far beyond any clock-skew allowance, still bounded. */
export const RETAIN_AFTER_EXPIRY_MS = 24 * 3600_000;
/** A line is under 100 bytes; 64 MiB is 700,000 live ids, far past any real backlog. */
const MAX_LEDGER_BYTES = 64 * 1024 * 1024;
/** Appends between compactions: each costs a rewrite of the live ids. */
const COMPACT_EVERY = 1024;
const MODE = 0o600;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface LedgerOptions {
  now?: () => Date;
}

export interface LedgerOpenStats {
  /** Lines that were not a complete entry (a torn last line, garbage): skipped. */
  skipped: number;
  /** Entries dropped because their instruction expired long ago. */
  expired: number;
}

function parseLine(line: string): { id: string; expiresAtMs: number } | null {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const { id, expiresAt } = v as { id?: unknown; expiresAt?: unknown };
  if (typeof id !== 'string' || !UUID.test(id) || typeof expiresAt !== 'string') return null;
  const ms = Date.parse(expiresAt);
  return Number.isNaN(ms) ? null : { id: id.toLowerCase(), expiresAtMs: ms };
}

function line(id: string, expiresAtMs: number): string {
  return JSON.stringify({ id, expiresAt: new Date(expiresAtMs).toISOString() }) + '\n';
}

export class Ledger {
  readonly path: string;
  readonly openStats: LedgerOpenStats;
  readonly #ids: Map<string, number>;
  readonly #now: () => Date;
  #appends = 0;
  /** Appends and compactions go one at a time, so a compaction never loses an append. */
  #tail: Promise<unknown> = Promise.resolve();

  private constructor(path: string, ids: Map<string, number>, stats: LedgerOpenStats, now: () => Date) {
    this.path = path;
    this.#ids = ids;
    this.openStats = stats;
    this.#now = now;
  }

  /** Reads (creating if needed) `<stateDir>/instructions.ledger`; throws InstructionRefusedError (PW_ERR_INSTRUCTION_LEDGER) when it cannot. */
  static async open(stateDir: string, options: LedgerOptions = {}): Promise<Ledger> {
    const now = options.now ?? (() => new Date());
    const path = join(stateDir, LEDGER_FILE_NAME);
    try {
      await mkdir(stateDir, { recursive: true, mode: 0o700 });
      const { text, created } = await readOrCreate(path);
      const ids = new Map<string, number>();
      const stats: LedgerOpenStats = { skipped: 0, expired: 0 };
      const horizon = now().getTime() - RETAIN_AFTER_EXPIRY_MS;
      const lines = text.split('\n');
      // Text after the last newline is a torn append (or nothing).
      const torn = lines.pop() !== '';
      if (torn) stats.skipped++;
      for (const l of lines) {
        const entry = parseLine(l);
        if (entry === null) {
          stats.skipped++;
          continue;
        }
        if (entry.expiresAtMs < horizon) {
          stats.expired++;
          continue;
        }
        ids.set(entry.id, Math.max(entry.expiresAtMs, ids.get(entry.id) ?? 0));
      }
      const ledger = new Ledger(path, ids, stats, now);
      // A torn tail must go before the next append, or that append would join it on one line.
      if (stats.skipped > 0 || stats.expired > 0) await ledger.#compact();
      else if (created) await fsyncDirectory(stateDir);
      return ledger;
    } catch (err) {
      if (err instanceof InstructionRefusedError) throw err;
      throw new InstructionRefusedError(`cannot use the instruction ledger ${path}: ${(err as Error).message}`, LEDGER_CODE, { cause: err });
    }
  }

  has(id: string): boolean {
    return this.#ids.has(id.toLowerCase());
  }

  get size(): number {
    return this.#ids.size;
  }

  /** Durable when it resolves (written and fsync'd); only then may the instruction run. */
  record(id: string, expiresAt: string): Promise<void> {
    const ms = Date.parse(expiresAt);
    if (!UUID.test(id) || Number.isNaN(ms)) {
      return Promise.reject(new InstructionRefusedError(`not a ledger entry: ${JSON.stringify(id).slice(0, 80)} ${JSON.stringify(expiresAt).slice(0, 40)}`, LEDGER_CODE));
    }
    const key = id.toLowerCase();
    const next = this.#tail.then(async () => {
      try {
        await this.#append(line(key, ms));
      } catch (err) {
        throw new InstructionRefusedError(`cannot write the instruction ledger ${this.path}: ${(err as Error).message}`, LEDGER_CODE, { cause: err });
      }
      this.#ids.set(key, ms);
      if (++this.#appends >= COMPACT_EVERY) await this.#compact().catch(() => undefined);
    });
    this.#tail = next.catch(() => undefined);
    return next;
  }

  /** Waits for pending appends. */
  async close(): Promise<void> {
    await this.#tail;
  }

  async #append(text: string): Promise<void> {
    const handle = await open(this.path, 'a', MODE);
    try {
      await handle.writeFile(text);
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }

  /** Rewrites the live ids atomically (the old file stays whole until the rename). */
  async #compact(): Promise<void> {
    const horizon = this.#now().getTime() - RETAIN_AFTER_EXPIRY_MS;
    for (const [id, ms] of this.#ids) if (ms < horizon) this.#ids.delete(id);
    let text = '';
    for (const [id, ms] of this.#ids) text += line(id, ms);
    await writeFileAtomic(this.path, text, MODE);
    this.#appends = 0;
  }
}

async function readOrCreate(path: string): Promise<{ text: string; created: boolean }> {
  let handle;
  let created = false;
  try {
    handle = await open(path, 'r+');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    handle = await open(path, 'a+', MODE);
    created = true;
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new Error('not a regular file');
    if (info.size > MAX_LEDGER_BYTES) throw new Error(`larger than ${MAX_LEDGER_BYTES} bytes`);
    // Another tool may have made it readable to others; the ids are not secret, but the file is the agent's own.
    if ((info.mode & 0o077) !== 0) await handle.chmod(MODE);
    const text = (await handle.readFile()).toString('utf8');
    return { text, created };
  } finally {
    await handle.close();
  }
}
