/**
 * Turns a feed path into records, whatever its packaging: one `.json` document (a
 * top-level array is a list of records), a directory of `.json` / `.json.gz` files
 * (recursive; Alpine's secdb mirrors are directories of `.json.gz`), `.jsonl` (one JSON value per line, streamed),
 * osv.dev's `all.zip`, or a text feed (Debian DSA/DLA list, KEV CSV) yielded whole as one
 * string. Gzip is recognized by its magic bytes, whatever the name says.
 *
 * Two kinds of failure, on purpose:
 * - per record (a bad JSON line, an over-long line, a bad file inside a directory, a zip
 *   entry that is encrypted or not JSON): a warning in `report`, nothing yielded for it,
 *   the rest goes on;
 * - corruption of the container (truncated or corrupt gzip, any zip problem, a document
 *   over its size limit, an unreadable path): the generator throws a FeedFormatError /
 *   InputTooLargeError / SourceUnavailableError. Records already yielded came from the
 *   intact part, but the file as a whole is refused: the importer runs one transaction per
 *   file and rolls it back when the generator throws.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { FeedFormatError, FeedUnsupportedError, InputTooLargeError, NotRegularFileError, PatchwardenError, SourceUnavailableError } from '../../../shared/errors.ts';
import { openRegularFile } from '../../../shared/regular-file.ts';
import { DEFAULT_INFLATE_LIMITS, InflateBudget, type InflateLimits, inflateStream, inflateWhole } from './inflate.ts';
import { FeedReport } from '../../domain/feeds/types.ts';
import { DEFAULT_ZIP_LIMITS, ZipArchive, type ZipLimits } from './zip.ts';

export interface FeedRecord {
  /** Where the record came from, for messages: `file`, `file:line`, `archive.zip:entry.json`. */
  name: string;
  /** A parsed JSON value, or the whole text of a text feed. */
  record: unknown;
}

export interface ReadLimits extends ZipLimits, InflateLimits {
  /** One JSONL line. OSV records are KBs; a 16 MiB line is garbage or an attack. */
  maxLineBytes: number;
  /** One JSON document; the Debian tracker's full JSON is about 80 MB today. */
  maxDocumentBytes: number;
  /** A text feed: the DSA list is under 1 MB, the KEV CSV about 1.5 MB. */
  maxTextBytes: number;
  /** Directory nesting, so a symlink loop or a crafted tree cannot recurse forever. */
  maxDepth: number;
}

export const DEFAULT_READ_LIMITS: Readonly<ReadLimits> = Object.freeze({
  ...DEFAULT_ZIP_LIMITS,
  ...DEFAULT_INFLATE_LIMITS,
  maxLineBytes: 16 * 1024 * 1024,
  maxDocumentBytes: 256 * 1024 * 1024,
  maxTextBytes: 64 * 1024 * 1024,
  maxDepth: 32,
});

export interface ReadOptions {
  report?: FeedReport;
  limits?: Partial<ReadLimits>;
}

type Kind = 'zip' | 'jsonl' | 'json' | 'text';

const GZIP_MAGIC = [0x1f, 0x8b];
const CHUNK = 1 << 20;
/** Compressed input is read in small chunks, so the ratio cap (inflate.ts) trips a few MB into a bomb. */
const GZIP_CHUNK = 64 * 1024;

function kindOf(name: string, head: Buffer): Kind {
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && (head[2] === 3 || head[2] === 5)) return 'zip';
  const inner = name.toLowerCase().replace(/\.gz$/, '');
  if (inner.endsWith('.zip')) return 'zip';
  if (inner.endsWith('.jsonl') || inner.endsWith('.ndjson')) return 'jsonl';
  if (inner.endsWith('.json')) return 'json';
  return 'text';
}

function unreadable(path: string, err: unknown): PatchwardenError {
  if (err instanceof PatchwardenError) return err;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  // zlib reports truncation as Z_BUF_ERROR ("unexpected end of file") and garbage as Z_DATA_ERROR.
  if (code.startsWith('Z_') || code.startsWith('ERR_ZLIB')) {
    return new FeedFormatError(`${path}: gzip data is truncated or corrupt (${(err as Error).message})`, { cause: err });
  }
  return new SourceUnavailableError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
}

async function readHead(path: string): Promise<Buffer> {
  const fh = await openRegularFile(path);
  try {
    const buf = Buffer.alloc(4);
    const { bytesRead } = await fh.read(buf, 0, 4, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The file's bytes as a stream of chunks, gunzipped (under the budget) when it starts with the gzip magic. */
async function* fileChunks(path: string, budget: InflateBudget): AsyncGenerator<Buffer> {
  const fh = await openRegularFile(path);
  const head = Buffer.alloc(2);
  await fh.read(head, 0, 2, 0).catch((err: unknown) => {
    void fh.close();
    throw unreadable(path, err);
  });
  const gz = head[0] === GZIP_MAGIC[0] && head[1] === GZIP_MAGIC[1];
  // The stream closes the handle when it ends or is destroyed.
  const raw = fh.createReadStream({ start: 0, highWaterMark: gz ? GZIP_CHUNK : CHUNK });
  const stream = gz ? inflateStream(raw, path, budget, CHUNK) : raw;
  try {
    for await (const chunk of stream) yield chunk as Buffer;
  } catch (err) {
    throw unreadable(path, err);
  } finally {
    raw.destroy();
    stream.destroy();
  }
}

/**
 * The records of one JSON document: the value itself, or each element when it is an
 * array (some OSV exporters publish one array of records instead of one file each).
 */
function documentRecords(name: string, value: unknown): FeedRecord[] {
  return Array.isArray(value) ? value.map((record: unknown, i) => ({ name: `${name}[${i}]`, record })) : [{ name, record: value }];
}

/**
 * A whole document as text, gunzipped when it has the gzip magic, refused past `limit`
 * bytes (compressed or not). One read instead of a stream: documents are parsed whole
 * anyway, and a directory of 60k small OSV files pays per file for every extra step.
 */
async function readWhole(path: string, limit: number, budget: InflateBudget): Promise<string> {
  let raw: Buffer;
  const fh = await openRegularFile(path);
  try {
    try {
      const size = (await fh.stat()).size;
      if (size > limit) throw new InputTooLargeError(`${path}: ${size} bytes, limit ${limit}`);
      raw = await fh.readFile();
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw unreadable(path, err);
  }
  let data = raw;
  if (raw[0] === GZIP_MAGIC[0] && raw[1] === GZIP_MAGIC[1]) {
    try {
      data = await inflateWhole(raw, path, budget, limit, () => new InputTooLargeError(`${path}: inflates past ${limit} bytes`));
    } catch (err) {
      throw unreadable(path, err);
    }
  }
  if (data.length > limit) throw new InputTooLargeError(`${path}: more than ${limit} bytes`);
  const text = data.toString('utf8');
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function parseJson(text: string, name: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new FeedFormatError(`${name}: not valid JSON (${(err as Error).message.slice(0, 200)})`, { cause: err });
  }
}

/**
 * JSON values one per line, streamed: a line is assembled only up to `maxLineBytes`;
 * past that its bytes are dropped as they arrive until the newline, so a 1 GB line costs
 * time, never memory. Blank lines are skipped.
 */
export async function* readJsonLines(chunks: AsyncIterable<Buffer> | Iterable<Buffer>, name: string, options: ReadOptions = {}): AsyncGenerator<FeedRecord> {
  const report = options.report ?? new FeedReport();
  const max = options.limits?.maxLineBytes ?? DEFAULT_READ_LIMITS.maxLineBytes;
  let parts: Buffer[] = [];
  let length = 0;
  let skipping = false;
  let line = 0;

  const finish = (): FeedRecord | null => {
    line++;
    const where = `${name}:${line}`;
    if (skipping) {
      skipping = false;
      report.warn(where, new InputTooLargeError(`line is longer than ${max} bytes; skipped`));
      return null;
    }
    const buf = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, length);
    parts = [];
    length = 0;
    const text = buf.toString('utf8');
    if (text.trim() === '') return null;
    try {
      return { name: where, record: parseJson(text, where) };
    } catch (err) {
      if (!(err instanceof FeedFormatError)) throw err;
      report.warn(where, err);
      return null;
    }
  };

  for await (const chunk of chunks) {
    let start = 0;
    while (start < chunk.length) {
      // Empty lines cost a count and nothing else: a file of newlines is read at memchr speed.
      if (length === 0 && !skipping && chunk[start] === 10) {
        line++;
        start++;
        continue;
      }
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      if (!skipping) {
        if (length + (end - start) > max) {
          skipping = true;
          parts = [];
          length = 0;
        } else if (end > start) {
          parts.push(chunk.subarray(start, end));
          length += end - start;
        }
      }
      if (nl === -1) break;
      const rec = finish();
      if (rec !== null) yield rec;
      start = nl + 1;
    }
  }
  if (skipping || length > 0) {
    const rec = finish();
    if (rec !== null) yield rec;
  }
}

async function* readZip(path: string, limits: ReadLimits, report: FeedReport): AsyncGenerator<FeedRecord> {
  const zip = await ZipArchive.open(path, limits).catch((err: unknown) => {
    throw unreadable(path, err);
  });
  try {
    for (const entry of zip.entries) {
      const where = `${path}:${entry.name}`;
      if (entry.name.endsWith('/')) continue;
      if (!entry.name.toLowerCase().endsWith('.json')) {
        report.count('zip entries not .json');
        continue;
      }
      if (entry.unsupported !== null) {
        report.warn(where, new FeedUnsupportedError(`zip entry is ${entry.unsupported}; skipped`));
        continue;
      }
      const data = await zip.read(entry);
      let text = data.toString('utf8');
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      let value: unknown;
      try {
        value = parseJson(text, where);
      } catch (err) {
        if (!(err instanceof FeedFormatError)) throw err;
        report.warn(where, err);
        continue;
      }
      yield* documentRecords(where, value);
    }
  } finally {
    await zip.close();
  }
}

async function* readDirectory(dir: string, depth: number, limits: ReadLimits, report: FeedReport, budget: InflateBudget): AsyncGenerator<FeedRecord> {
  if (depth > limits.maxDepth) {
    report.warn(dir, new InputTooLargeError(`directories nested deeper than ${limits.maxDepth}; skipped`));
    return;
  }
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    report.warn(dir, unreadable(dir, err));
    return;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isSymbolicLink()) {
      // A feed checkout has no links; following them could leave the tree or loop.
      report.count('symbolic links skipped');
    } else if (e.isDirectory()) {
      yield* readDirectory(path, depth + 1, limits, report, budget);
    } else if (e.isFile() && /\.json(\.gz)?$/i.test(e.name)) {
      let value: unknown;
      try {
        value = parseJson(await readWhole(path, limits.maxDocumentBytes, budget), path);
      } catch (err) {
        // A bomb refuses the whole path: it is hostile, and the total is the directory's.
        if (err instanceof PatchwardenError && err.code === 'PW_ERR_INFLATE_LIMIT') throw err;
        report.warn(path, unreadable(path, err));
        continue;
      }
      yield* documentRecords(path, value);
    }
  }
}

/** Records of one feed path; see the module comment for what is skipped and what throws. */
export async function* readFeedFile(path: string, options: ReadOptions = {}): AsyncGenerator<FeedRecord> {
  const limits: ReadLimits = { ...DEFAULT_READ_LIMITS, ...options.limits };
  const report = options.report ?? new FeedReport();
  const budget = new InflateBudget(limits);
  const info = await stat(path).catch((err: unknown) => {
    throw unreadable(path, err);
  });
  if (info.isDirectory()) {
    yield* readDirectory(path, 0, limits, report, budget);
    return;
  }
  if (!info.isFile()) throw new NotRegularFileError(`${path} is neither a regular file nor a directory: refused without reading it`);
  const kind = kindOf(basename(path), await readHead(path));
  switch (kind) {
    case 'zip':
      yield* readZip(path, limits, report);
      return;
    case 'jsonl':
      yield* readJsonLines(fileChunks(path, budget), path, { report, limits });
      return;
    case 'json':
      yield* documentRecords(path, parseJson(await readWhole(path, limits.maxDocumentBytes, budget), path));
      return;
    case 'text':
      yield { name: path, record: await readWhole(path, limits.maxTextBytes, budget) };
      return;
  }
}
