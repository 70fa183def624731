/**
 * Every gzip input the collector inflates goes through here (feed files and directories,
 * `feed sync` downloads, which are read as feed files, and feed bundles), under two caps:
 *
 * - a total: the bytes inflated from one input, however many files it holds;
 * - a ratio: inflated bytes per compressed byte read so far. Real feeds inflate 11:1 to
 *   23:1 (the OSV JSON lines, CSAF and OVAL in ../shared/data); gzip itself reaches about
 *   1032:1, so a 1 MiB file of newlines is 1 GiB of work: refused after a few MB instead.
 *
 * The ratio is checked only past RATIO_FLOOR_BYTES of output: a small file of repeated
 * text compresses far and costs nothing. Both refusals are PW_ERR_INFLATE_LIMIT.
 */
import type { Readable } from 'node:stream';
import { pipeline, Transform } from 'node:stream';
import { promisify } from 'node:util';
import { createGunzip, gunzip as gunzipCallback } from 'node:zlib';
import { InflateLimitError } from '../../../shared/errors.ts';

export interface InflateLimits {
  /** Bytes inflated from one input in all (a feed path, a bundle's body). */
  maxInflatedBytes: number;
  /** Inflated bytes per compressed byte, checked as the data streams. */
  maxInflateRatio: number;
}

export const DEFAULT_INFLATE_LIMITS: Readonly<InflateLimits> = Object.freeze({
  maxInflatedBytes: 2 * 1024 * 1024 * 1024,
  maxInflateRatio: 100,
});

/** Output below this is never refused for its ratio. */
export const RATIO_FLOOR_BYTES = 1024 * 1024;

const gunzip = promisify(gunzipCallback);

/** What one input may still inflate: shared by every gzip file of a feed directory. */
export class InflateBudget {
  readonly limits: InflateLimits;
  #used = 0;

  constructor(limits: Partial<InflateLimits> = {}) {
    this.limits = { ...DEFAULT_INFLATE_LIMITS, ...limits };
  }

  get left(): number {
    return Math.max(0, this.limits.maxInflatedBytes - this.#used);
  }

  /** Counts `bytes` more output of `name`, refusing past the total. */
  take(name: string, bytes: number): void {
    this.#used += bytes;
    if (this.#used > this.limits.maxInflatedBytes) {
      throw new InflateLimitError(`${name}: inflates past the ${this.limits.maxInflatedBytes}-byte total for one input (a gzip bomb?)`);
    }
  }

  /** Refuses `inflated` bytes out of `compressed` bytes in when over the ratio (past the floor). */
  checkRatio(name: string, inflated: number, compressed: number): void {
    if (inflated > RATIO_FLOOR_BYTES && inflated > this.limits.maxInflateRatio * Math.max(1, compressed)) {
      throw new InflateLimitError(`${name}: inflates more than ${this.limits.maxInflateRatio}:1 (${inflated} bytes from ${compressed}; a gzip bomb?)`);
    }
  }

  /** The largest output the ratio allows for `compressed` bytes in. */
  ratioCap(compressed: number): number {
    return Math.max(RATIO_FLOOR_BYTES, this.limits.maxInflateRatio * compressed);
  }
}

/**
 * A whole gzip buffer, inflated under the budget and under `maxBytes` (the caller's own
 * size limit: over it is `tooLarge()`, the caller's error). zlib stops at the first cap
 * reached, so a bomb costs at most that much memory and time.
 */
export async function inflateWhole(data: Buffer, name: string, budget: InflateBudget, maxBytes: number, tooLarge: () => Error): Promise<Buffer> {
  const ratioCap = budget.ratioCap(data.length);
  const cap = Math.min(maxBytes, budget.left, ratioCap);
  let out: Buffer;
  try {
    out = await gunzip(data, { maxOutputLength: Math.max(1, cap) });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_BUFFER_TOO_LARGE') throw err;
    // The caller's own limit first: it is what an operator tunes.
    if (cap === maxBytes) throw tooLarge();
    if (cap === ratioCap) budget.checkRatio(name, ratioCap + 1, data.length);
    budget.take(name, budget.left + 1);
    throw err;
  }
  budget.take(name, out.length);
  return out;
}

/**
 * `compressed` gunzipped as a stream under the budget: the output is counted chunk by
 * chunk, against the compressed bytes zlib has taken in so far. Feed the source in small
 * chunks (64 KiB), so a bomb is caught a few MB in.
 */
export function inflateStream(compressed: Readable, name: string, budget: InflateBudget, chunkSize = 1 << 20): Readable {
  const gz = createGunzip({ chunkSize });
  let out = 0;
  const guard = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      out += chunk.length;
      try {
        budget.checkRatio(name, out, gz.bytesWritten);
        budget.take(name, chunk.length);
      } catch (err) {
        cb(err as Error);
        return;
      }
      cb(null, chunk);
    },
  });
  // pipeline destroys every stream with the first error, so the reader of `guard` sees it.
  return pipeline(compressed, gz, guard, () => undefined);
}
