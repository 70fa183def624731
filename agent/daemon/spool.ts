/**
 * The outbox: every report is written here before it is sent and deleted only after the
 * collector acks it, so a report survives a dropped connection, a collector outage and an
 * agent restart, and is delivered in the order it was made.
 *
 * Layout: one file per report, `<seq>-<full|hash>-<inventory hash>-<report id>.json`,
 * `seq` zero-padded so names sort in delivery order and the kind and hash are known
 * without reading the file. Files are written atomically (temporary file, fsync, rename,
 * directory fsync). Deletions are not fsynced: a deletion lost to a crash only means the
 * report is sent again, and the collector answers `duplicate` for an id it already has.
 *
 * Bound (`spoolMaxBytes`): when over it, the OLDEST reports are dropped first, except the
 * newest full inventory, which is always kept (even if it alone is over the bound): it is
 * the host's current state, and the hash-only reports after it are meaningless without
 * it. Dropping the oldest loses history, never the present. Files set aside as unreadable
 * (`*.bad`) count against the bound too and are dropped before any report.
 *
 * A file that cannot be parsed or does not match the report schema (truncated by a full
 * disk, edited by hand, garbage) is renamed to `*.bad` with a warning and skipped; the
 * spool never throws on its contents. If the directory cannot be written (disk full,
 * read-only, no permission), reports are kept in memory instead, with a warning: the agent
 * keeps reporting, it only loses the restart guarantee until the disk is back.
 */
import { mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../../shared/errors.ts';
import { inventoryHash, packageSetHash } from '../../shared/inventory-hash.ts';
import { type Inventory, type ReportMessage, ReportMessageSchema } from '../../shared/protocol.ts';
import { TEMP_PREFIX, writeFileAtomic } from '../../shared/atomic-write.ts';

export interface SpoolWarning {
  code: string;
  message: string;
}

export interface SpoolEntry {
  readonly name: string;
  readonly seq: number;
  readonly id: string;
  readonly kind: 'full' | 'hash';
  readonly hash: string;
  readonly bytes: number;
  /** Set when the report could not be written to disk and lives only in memory. */
  readonly memory?: string;
}

const NAME = /^(\d{12})-(full|hash)-([0-9a-f]{64})-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.json$/;
const BAD_SUFFIX = '.bad';
/** A spooled report is one wire message, so it is never over the wire's own limit. */
const MAX_FILE_BYTES = 32 * 1024 * 1024;

export function entryName(seq: number, kind: 'full' | 'hash', hash: string, id: string): string {
  return `${String(seq).padStart(12, '0')}-${kind}-${hash}-${id}.json`;
}

function parseName(name: string, bytes: number): SpoolEntry | null {
  const m = NAME.exec(name);
  if (m === null) return null;
  return { name, seq: Number(m[1]), kind: m[2] as 'full' | 'hash', hash: m[3] as string, id: m[4] as string, bytes };
}

interface BadFile {
  name: string;
  bytes: number;
}

/** A spooled report: parsed, its exact bytes, and its inventory as written (the key order it was hashed in). */
export interface SpooledReport {
  report: ReportMessage;
  text: string;
  raw: Inventory | null;
  /** packageSetHash of the raw inventory's packages, null for a hash-only report. */
  packageSet: string | null;
}

export class Spool {
  readonly dir: string;
  readonly maxBytes: number;
  private readonly warn: (w: SpoolWarning) => void;
  private readonly list: SpoolEntry[] = [];
  private readonly bad: BadFile[] = [];
  private nextSeq = 1;
  private lock: Promise<unknown> = Promise.resolve();
  private overLimitWarned = false;

  private constructor(dir: string, maxBytes: number, warn: (w: SpoolWarning) => void) {
    this.dir = dir;
    this.maxBytes = maxBytes;
    this.warn = warn;
  }

  /** Opens (creating it, mode 0700) the spool directory and lists what an earlier run left. */
  static async open(dir: string, maxBytes: number, warn: (w: SpoolWarning) => void): Promise<Spool> {
    const spool = new Spool(dir, maxBytes, warn);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      if (name.startsWith(TEMP_PREFIX)) {
        // A write cut short by a crash before its rename: never acknowledged, never listed.
        await unlink(path).catch(() => undefined);
        continue;
      }
      let info;
      try {
        info = await stat(path);
      } catch {
        continue;
      }
      if (!info.isFile()) continue;
      if (name.endsWith(BAD_SUFFIX)) {
        spool.bad.push({ name, bytes: info.size });
        const seq = /^(\d{12})-/.exec(name);
        if (seq !== null) spool.nextSeq = Math.max(spool.nextSeq, Number(seq[1]) + 1);
        continue;
      }
      const entry = parseName(name, info.size);
      // Files we did not write are left alone and not counted: the directory is ours, but
      // deleting an operator's file is worse than ignoring it.
      if (entry === null) continue;
      spool.list.push(entry);
      spool.nextSeq = Math.max(spool.nextSeq, entry.seq + 1);
    }
    await spool.exclusive(() => spool.enforceBound());
    return spool;
  }

  /** Reports waiting for an ack, oldest first. */
  entries(): readonly SpoolEntry[] {
    return [...this.list];
  }

  get size(): number {
    return this.list.length;
  }

  /** Bytes held: reports plus files set aside as unreadable. */
  get bytes(): number {
    let total = 0;
    for (const e of this.list) total += e.bytes;
    for (const b of this.bad) total += b.bytes;
    return total;
  }

  /** The hash of the newest full inventory waiting to be delivered, if any. */
  newestFullHash(): string | null {
    for (let i = this.list.length - 1; i >= 0; i--) {
      const e = this.list[i] as SpoolEntry;
      if (e.kind === 'full') return e.hash;
    }
    return null;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  /** Writes the report, then drops the oldest reports if the spool is over its bound. */
  add(report: ReportMessage): Promise<SpoolEntry> {
    return this.exclusive(async () => {
      const text = JSON.stringify(report);
      const bytes = Buffer.byteLength(text);
      const name = entryName(this.nextSeq++, report.inventory === null ? 'hash' : 'full', report.hash, report.id);
      let entry: SpoolEntry;
      try {
        await writeFileAtomic(join(this.dir, name), text, 0o600);
        entry = { ...(parseName(name, bytes) as SpoolEntry) };
      } catch (err) {
        this.warn({
          code: 'PW_WARN_SPOOL_UNWRITABLE',
          message: `cannot write report ${report.id} to the spool ${this.dir} (${errorMessage(err)}): kept in memory only, it is lost if the agent stops before the collector acks it`,
        });
        entry = { ...(parseName(name, bytes) as SpoolEntry), memory: text };
      }
      this.list.push(entry);
      await this.enforceBound();
      return entry;
    });
  }

  /** The report, or null when the file is unreadable or invalid (it is then set aside with a warning). */
  async read(entry: SpoolEntry): Promise<ReportMessage | null> {
    return (await this.readRaw(entry))?.report ?? null;
  }

  /**
   * The report and its exact bytes. The bytes are what is sent: the collector checks the
   * hash against the inventory as it arrives, in the key order it was hashed in, and a
   * schema parse would rebuild the objects in the schema's order.
   */
  async readRaw(entry: SpoolEntry): Promise<SpooledReport | null> {
    let text: string;
    if (entry.memory !== undefined) {
      text = entry.memory;
    } else {
      try {
        text = await readBounded(join(this.dir, entry.name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          // Dropped by the bound (or by hand) since it was listed.
          this.forget(entry);
          return null;
        }
        await this.setAside(entry, errorMessage(err));
        return null;
      }
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      await this.setAside(entry, `not JSON (${(err as Error).message}); ${Buffer.byteLength(text)} bytes, truncated?`);
      return null;
    }
    const parsed = ReportMessageSchema.safeParse(json);
    if (!parsed.success) {
      const first = parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.')}: ${i.message}`);
      await this.setAside(entry, `not a report: ${first.join('; ')}`);
      return null;
    }
    const report = parsed.data;
    if (report.id !== entry.id || report.hash !== entry.hash || (report.inventory === null) !== (entry.kind === 'hash')) {
      await this.setAside(entry, 'its contents do not match its name (report id, hash or kind)');
      return null;
    }
    // Hashed as it was written (the raw JSON's key order), exactly as the collector will check it.
    const raw = (json as { inventory: Inventory | null }).inventory;
    const set = raw === null ? null : packageSetHash(raw.packages);
    if (raw !== null && inventoryHash(raw, set ?? undefined) !== report.hash) {
      await this.setAside(entry, 'its inventory does not have the hash it claims (edited after it was written?)');
      return null;
    }
    return { report, text, raw, packageSet: set };
  }

  /** After the collector's ack. A file already gone is not an error. */
  remove(entry: SpoolEntry): Promise<void> {
    return this.exclusive(async () => {
      if (entry.memory === undefined) await unlinkQuietly(join(this.dir, entry.name));
      this.forget(entry);
    });
  }

  /** Keeps a report the collector refuses, out of the delivery order, for an operator to look at. */
  setAside(entry: SpoolEntry, reason: string): Promise<void> {
    return this.exclusive(async () => {
      if (!this.forget(entry)) return;
      this.warn({ code: 'PW_WARN_SPOOL_CORRUPT', message: `spooled report ${join(this.dir, entry.name)} skipped: ${reason}` });
      if (entry.memory !== undefined) return;
      try {
        await rename(join(this.dir, entry.name), join(this.dir, entry.name + BAD_SUFFIX));
        this.bad.push({ name: entry.name + BAD_SUFFIX, bytes: entry.bytes });
      } catch {
        await unlinkQuietly(join(this.dir, entry.name));
      }
      await this.enforceBound();
    });
  }

  private forget(entry: SpoolEntry): boolean {
    const i = this.list.findIndex((e) => e.name === entry.name);
    if (i < 0) return false;
    this.list.splice(i, 1);
    return true;
  }

  private async enforceBound(): Promise<void> {
    while (this.bytes > this.maxBytes) {
      const bad = this.bad.shift();
      if (bad !== undefined) {
        await unlinkQuietly(join(this.dir, bad.name));
        continue;
      }
      const keep = this.newestFullName();
      const victim = this.list.find((e) => e.name !== keep);
      if (victim === undefined) {
        if (!this.overLimitWarned) {
          this.warn({
            code: 'PW_WARN_SPOOL_OVER_LIMIT',
            message: `the newest full inventory alone (${this.bytes} bytes) is over spoolMaxBytes (${this.maxBytes}); it is kept anyway, raise spoolMaxBytes`,
          });
          this.overLimitWarned = true;
        }
        return;
      }
      this.forget(victim);
      if (victim.memory === undefined) await unlinkQuietly(join(this.dir, victim.name));
      this.warn({
        code: 'PW_WARN_SPOOL_DROPPED',
        message: `spool over spoolMaxBytes (${this.maxBytes}): dropped the oldest report ${victim.id} (${victim.kind}, ${victim.bytes} bytes) undelivered`,
      });
    }
    this.overLimitWarned = false;
  }

  private newestFullName(): string | null {
    for (let i = this.list.length - 1; i >= 0; i--) {
      const e = this.list[i] as SpoolEntry;
      if (e.kind === 'full') return e.name;
    }
    return null;
  }
}

async function unlinkQuietly(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}

async function readBounded(path: string): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const info = await handle.stat();
    if (info.size > MAX_FILE_BYTES) throw new Error(`larger than ${MAX_FILE_BYTES} bytes`);
    const buf = Buffer.alloc(info.size);
    const { bytesRead } = await handle.read(buf, 0, info.size, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
}
