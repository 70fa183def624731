/**
 * A small ZIP reader for osv.dev's per-ecosystem `all.zip` exports: central directory
 * first (so nothing is read from a truncated file), then each entry by positional reads,
 * stored or deflated, CRC-32 checked. Never the whole archive in memory.
 *
 * The archive is refused as a whole (FeedFormatError / InputTooLargeError, thrown by
 * openZip or read) for: no end-of-central-directory record (truncated), a central
 * directory outside the file, multi-disk archives, an entry name with `..`, a leading
 * `/` or `\`, a drive letter or a NUL (path traversal), declared sizes over the limits
 * or beyond what deflate can reach (zip bombs), entries whose data overlap another
 * entry's (the overlapping-file bomb), inflated data longer or shorter than declared,
 * and CRC mismatches. Encrypted entries and compression methods other than stored (0)
 * and deflate (8) are left to the caller to skip (`unsupported`).
 *
 * Format: PKWARE APPNOTE.TXT 6.3.10, sections 4.3.7 (local header), 4.3.12 (central
 * directory), 4.3.14-4.3.16 (ZIP64 and end records), 4.5.3 (ZIP64 extra field).
 */
import type { FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { FeedFormatError, InflateLimitError, InputTooLargeError } from '../../../shared/errors.ts';
import { openRegularFile } from '../../../shared/regular-file.ts';
import { DEFAULT_INFLATE_LIMITS, RATIO_FLOOR_BYTES } from './inflate.ts';

const inflateRaw = promisify(zlib.inflateRaw);

export interface ZipLimits {
  /** Largest uncompressed entry; one osv.dev record is at most a few MB. */
  maxEntryBytes: number;
  /** Sum of all declared uncompressed sizes. */
  maxTotalBytes: number;
  maxEntries: number;
  maxCentralDirectoryBytes: number;
  /** Declared inflated bytes per compressed byte, for each entry and for the archive (inflate.ts). */
  maxInflateRatio: number;
}

export const DEFAULT_ZIP_LIMITS: Readonly<ZipLimits> = Object.freeze({
  maxEntryBytes: 64 * 1024 * 1024,
  maxTotalBytes: 32 * 1024 * 1024 * 1024,
  maxEntries: 2_000_000,
  maxCentralDirectoryBytes: 512 * 1024 * 1024,
  maxInflateRatio: DEFAULT_INFLATE_LIMITS.maxInflateRatio,
});

export interface ZipEntry {
  name: string;
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
  /** Where the next entry's local header (or the central directory) starts: this entry's data must end before it. */
  boundary: number;
  /** Set when the entry cannot be read here (encrypted, unknown method); skip it. */
  unsupported: string | null;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;
const WINDOW = 1 << 20;
const SYNC_INFLATE_BYTES = 256 * 1024;
/** Deflate cannot expand data by more than about 1032:1 (RFC 1951 block limits). */
const MAX_DEFLATE_RATIO = 1032;

function crcTable(): Uint32Array {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
}
let table: Uint32Array | null = null;

/** CRC-32 (IEEE); zlib.crc32 from Node 20.15 / 22.2, a table otherwise. */
export function crc32(data: Uint8Array): number {
  const native = (zlib as { crc32?: (d: Uint8Array) => number }).crc32;
  if (typeof native === 'function') return native(data) >>> 0;
  table ??= crcTable();
  let c = 0xffffffff;
  for (const byte of data) c = (table[(c ^ byte) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** True for names that could escape an extraction directory, on POSIX or Windows. */
export function isUnsafeEntryName(name: string): boolean {
  if (name === '' || name.includes('\0')) return true;
  if (name.startsWith('/') || name.startsWith('\\') || /^[A-Za-z]:/.test(name)) return true;
  return name.split(/[/\\]/).some((part) => part === '..');
}

async function readAt(fh: FileHandle, position: number, length: number, what: string): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw new FeedFormatError(`zip ${what}: file ends early (truncated)`);
    done += bytesRead;
  }
  return buf;
}

function u64(buf: Buffer, at: number, what: string): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FeedFormatError(`zip ${what}: 64-bit value too large`);
  return Number(v);
}

export class ZipArchive {
  readonly entries: readonly ZipEntry[];
  readonly #fh: FileHandle;
  readonly #name: string;
  #window: { start: number; data: Buffer } | null = null;

  private constructor(fh: FileHandle, name: string, entries: ZipEntry[]) {
    this.#fh = fh;
    this.#name = name;
    this.entries = entries;
  }

  /** Reads and checks the central directory; the file stays open until close(). */
  static async open(path: string, limits: Partial<ZipLimits> = {}): Promise<ZipArchive> {
    const all = { ...DEFAULT_ZIP_LIMITS, ...limits };
    const fh = await openRegularFile(path);
    try {
      const entries = await readCentralDirectory(fh, path, all);
      return new ZipArchive(fh, path, entries);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.#fh.close();
  }

  /**
   * Bytes [position, position + length) of the archive. Entries are small and stored one
   * after the other, so reads go through a 1 MiB window: one read serves many entries
   * instead of two reads per entry.
   */
  async #bytes(position: number, length: number, what: string): Promise<Buffer> {
    const w = this.#window;
    if (w !== null && position >= w.start && position + length <= w.start + w.data.length) {
      return w.data.subarray(position - w.start, position - w.start + length);
    }
    const size = Math.max(length, WINDOW);
    const buf = Buffer.alloc(size);
    let done = 0;
    while (done < size) {
      const { bytesRead } = await this.#fh.read(buf, done, size - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    if (done < length) throw new FeedFormatError(`zip ${what}: file ends early (truncated)`);
    this.#window = { start: position, data: buf.subarray(0, done) };
    return this.#window.data.subarray(0, length);
  }

  /** The entry's bytes, inflated and CRC-checked. */
  async read(entry: ZipEntry): Promise<Buffer> {
    const what = `${this.#name}: entry ${JSON.stringify(entry.name)}`;
    if (entry.unsupported !== null) throw new FeedFormatError(`zip ${what}: ${entry.unsupported}`);
    const header = await this.#bytes(entry.localHeaderOffset, 30, what);
    if (header.readUInt32LE(0) !== SIG_LOCAL) throw new FeedFormatError(`zip ${what}: no local header where the central directory says`);
    const dataStart = entry.localHeaderOffset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
    if (dataStart + entry.compressedSize > entry.boundary) {
      throw new FeedFormatError(`zip ${what}: data overlaps the next entry or the central directory`);
    }
    const raw = await this.#bytes(dataStart, entry.compressedSize, what);
    let data: Buffer;
    if (entry.method === 0) {
      data = Buffer.from(raw);
    } else {
      try {
        // maxOutputLength stops inflating as soon as the output passes the declared size,
        // so a lying header costs at most that much memory. Small entries inflate in
        // place: a thread-pool round trip costs more than the work.
        const options = { maxOutputLength: Math.max(1, entry.uncompressedSize) };
        data = entry.uncompressedSize <= SYNC_INFLATE_BYTES ? zlib.inflateRawSync(raw, options) : await inflateRaw(raw, options);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
          throw new InputTooLargeError(`zip ${what}: inflates past its declared ${entry.uncompressedSize} bytes (zip bomb?)`, { cause: err });
        }
        throw new FeedFormatError(`zip ${what}: deflate data is corrupt: ${(err as Error).message}`, { cause: err });
      }
    }
    if (data.length !== entry.uncompressedSize) {
      throw new FeedFormatError(`zip ${what}: ${data.length} bytes, ${entry.uncompressedSize} declared`);
    }
    const actual = crc32(data);
    if (actual !== entry.crc32) {
      throw new FeedFormatError(`zip ${what}: CRC-32 ${actual.toString(16)} does not match the declared ${entry.crc32.toString(16)}`);
    }
    return data;
  }
}

async function findEnd(fh: FileHandle, path: string, size: number): Promise<{ eocd: Buffer; eocdOffset: number }> {
  if (size < EOCD_SIZE) throw new FeedFormatError(`zip ${path}: ${size} bytes is too short for a zip (truncated)`);
  const tailLength = Math.min(size, EOCD_SIZE + MAX_COMMENT);
  const tail = await readAt(fh, size - tailLength, tailLength, path);
  for (let i = tailLength - EOCD_SIZE; i >= 0; i--) {
    if (tail.readUInt32LE(i) !== SIG_EOCD) continue;
    // The comment must run exactly to the end of the file, or this is a stray signature
    // inside data and the real end record was cut off.
    if (i + EOCD_SIZE + tail.readUInt16LE(i + 20) !== tailLength) continue;
    return { eocd: tail.subarray(i, i + EOCD_SIZE), eocdOffset: size - tailLength + i };
  }
  throw new FeedFormatError(`zip ${path}: no end of central directory record (truncated or not a zip)`);
}

async function readCentralDirectory(fh: FileHandle, path: string, limits: ZipLimits): Promise<ZipEntry[]> {
  const size = (await fh.stat()).size;
  const { eocd, eocdOffset } = await findEnd(fh, path, size);
  if (eocd.readUInt16LE(4) !== 0 || eocd.readUInt16LE(6) !== 0) throw new FeedFormatError(`zip ${path}: multi-disk archives are not supported`);
  let count = eocd.readUInt16LE(10);
  let cdSize = eocd.readUInt32LE(12);
  let cdOffset = eocd.readUInt32LE(16);
  let cdEnd = eocdOffset;
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    if (eocdOffset < 20) throw new FeedFormatError(`zip ${path}: ZIP64 locator missing`);
    const locator = await readAt(fh, eocdOffset - 20, 20, path);
    if (locator.readUInt32LE(0) !== SIG_EOCD64_LOCATOR) throw new FeedFormatError(`zip ${path}: ZIP64 locator missing`);
    const at = u64(locator, 8, path);
    if (at + 56 > eocdOffset - 20) throw new FeedFormatError(`zip ${path}: ZIP64 end record outside the file`);
    const end64 = await readAt(fh, at, 56, path);
    if (end64.readUInt32LE(0) !== SIG_EOCD64) throw new FeedFormatError(`zip ${path}: ZIP64 end record missing`);
    count = u64(end64, 32, path);
    cdSize = u64(end64, 40, path);
    cdOffset = u64(end64, 48, path);
    cdEnd = at;
  }
  if (count > limits.maxEntries) throw new InputTooLargeError(`zip ${path}: ${count} entries, limit ${limits.maxEntries}`);
  if (cdSize > limits.maxCentralDirectoryBytes) throw new InputTooLargeError(`zip ${path}: central directory of ${cdSize} bytes, limit ${limits.maxCentralDirectoryBytes}`);
  if (cdOffset + cdSize > cdEnd) throw new FeedFormatError(`zip ${path}: central directory runs past its end record (truncated or corrupt)`);
  const cd = await readAt(fh, cdOffset, cdSize, path);

  const entries: ZipEntry[] = [];
  let total = 0;
  let p = 0;
  for (let n = 0; n < count; n++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== SIG_CENTRAL) throw new FeedFormatError(`zip ${path}: central directory entry ${n} is corrupt`);
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    const crc = cd.readUInt32LE(p + 16);
    let compressedSize = cd.readUInt32LE(p + 20);
    let uncompressedSize = cd.readUInt32LE(p + 24);
    const nameLength = cd.readUInt16LE(p + 28);
    const extraLength = cd.readUInt16LE(p + 30);
    const commentLength = cd.readUInt16LE(p + 32);
    const disk = cd.readUInt16LE(p + 34);
    let localHeaderOffset = cd.readUInt32LE(p + 42);
    const next = p + 46 + nameLength + extraLength + commentLength;
    if (next > cd.length) throw new FeedFormatError(`zip ${path}: central directory entry ${n} runs past the directory`);
    const nameBytes = cd.subarray(p + 46, p + 46 + nameLength);
    // Bit 11: UTF-8 names; otherwise CP437, read as latin1, which agrees on ASCII names.
    const name = nameBytes.toString(flags & 0x800 ? 'utf8' : 'latin1');
    const extra = cd.subarray(p + 46 + nameLength, p + 46 + nameLength + extraLength);
    for (let e = 0; e + 4 <= extra.length; ) {
      const id = extra.readUInt16LE(e);
      const len = extra.readUInt16LE(e + 2);
      if (id === 0x0001) {
        // ZIP64 extended information: only the fields whose 32-bit value is saturated, in this order.
        let q = e + 4;
        const end = q + len;
        const take = (): number => {
          if (q + 8 > end || q + 8 > extra.length) throw new FeedFormatError(`zip ${path}: entry ${JSON.stringify(name)} has a short ZIP64 field`);
          const v = u64(extra, q, path);
          q += 8;
          return v;
        };
        if (uncompressedSize === 0xffffffff) uncompressedSize = take();
        if (compressedSize === 0xffffffff) compressedSize = take();
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = take();
      }
      e += 4 + len;
    }
    if (disk !== 0 && disk !== 0xffff) throw new FeedFormatError(`zip ${path}: multi-disk archives are not supported`);
    if (isUnsafeEntryName(name)) throw new FeedFormatError(`zip ${path}: entry name ${JSON.stringify(name.slice(0, 200))} escapes the archive (path traversal)`);
    if (uncompressedSize > limits.maxEntryBytes) {
      throw new InputTooLargeError(`zip ${path}: entry ${JSON.stringify(name)} declares ${uncompressedSize} bytes, limit ${limits.maxEntryBytes}`);
    }
    // Deflate never grows data by more than a few bytes per 16 KiB block, so a compressed
    // size far over the entry limit is a lie that would only make us allocate it.
    if (compressedSize > limits.maxEntryBytes + (limits.maxEntryBytes >> 6) + 1024) {
      throw new InputTooLargeError(`zip ${path}: entry ${JSON.stringify(name)} declares ${compressedSize} compressed bytes, limit ${limits.maxEntryBytes}`);
    }
    if (method === 8 && uncompressedSize > compressedSize * MAX_DEFLATE_RATIO + 1024) {
      throw new InputTooLargeError(`zip ${path}: entry ${JSON.stringify(name)} declares a ratio deflate cannot produce (zip bomb?)`);
    }
    if (method === 8 && uncompressedSize > Math.max(RATIO_FLOOR_BYTES, compressedSize * limits.maxInflateRatio)) {
      throw new InflateLimitError(`zip ${path}: entry ${JSON.stringify(name)} declares more than ${limits.maxInflateRatio}:1 (${uncompressedSize} bytes from ${compressedSize}; a zip bomb?)`);
    }
    if (method === 0 && uncompressedSize !== compressedSize) throw new FeedFormatError(`zip ${path}: stored entry ${JSON.stringify(name)} has two sizes`);
    total += uncompressedSize;
    if (total > limits.maxTotalBytes) throw new InputTooLargeError(`zip ${path}: entries total more than ${limits.maxTotalBytes} bytes`);
    // Stored entries count too: many small entries can each stay under the floor.
    if (total > Math.max(RATIO_FLOOR_BYTES, size * limits.maxInflateRatio)) {
      throw new InflateLimitError(`zip ${path}: entries total more than ${limits.maxInflateRatio} times the archive's ${size} bytes (a zip bomb?)`);
    }
    if (localHeaderOffset + 30 + compressedSize > cdOffset) throw new FeedFormatError(`zip ${path}: entry ${JSON.stringify(name)} lies outside the data area`);
    let unsupported: string | null = null;
    if (flags & 0x1) unsupported = 'encrypted';
    else if (method !== 0 && method !== 8) unsupported = `compression method ${method}`;
    entries.push({ name, method, flags, crc32: crc, compressedSize, uncompressedSize, localHeaderOffset, boundary: cdOffset, unsupported });
    p = next;
  }
  // Each entry's data must end before the next local header: overlapping entries are how
  // "better" zip bombs reuse one compressed stream many times.
  const byOffset = [...entries].sort((a, b) => a.localHeaderOffset - b.localHeaderOffset);
  for (let i = 0; i < byOffset.length; i++) {
    const cur = byOffset[i];
    const nxt = byOffset[i + 1];
    if (cur === undefined) continue;
    if (nxt !== undefined) {
      if (nxt.localHeaderOffset === cur.localHeaderOffset) throw new FeedFormatError(`zip ${path}: two entries share one local header (overlapping entries)`);
      cur.boundary = nxt.localHeaderOffset;
    }
  }
  return entries;
}
