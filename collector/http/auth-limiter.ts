/**
 * Failed authentications per source address, as a token bucket: a source may fail
 * AUTH_FAILURE_BURST times at once, then one more time every AUTH_FAILURE_REFILL_MS (10 a
 * minute). Past that, every authentication from the source (dashboard login or API bearer
 * token, right or wrong) is answered 429 PW_ERR_RATE_LIMITED with Retry-After, before the
 * token is looked at, so a guess that happens to be right cannot be told from one that is
 * wrong. A success does not refill the bucket: a valid token cannot buy more guesses.
 *
 * API tokens carry 256 random bits and cannot be guessed; the limit is there so that one
 * client cannot make the collector hash and log without end, and so that a leaked list
 * of old tokens cannot be tried at speed.
 *
 * The table is bounded (MAX_TRACKED_SOURCES, least recently failed forgotten first): a
 * flood from many addresses costs memory in proportion to the bound, never to the flood.
 * IPv6 sources are counted per /64, the block one host is normally given, so one host
 * cannot take a fresh bucket per address. The address is the TCP peer's: behind a reverse
 * proxy every client shares the proxy's bucket (X-Forwarded-For is not trusted).
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { Context } from 'hono';

export const AUTH_FAILURE_BURST = 10;
export const AUTH_FAILURE_REFILL_MS = 6_000;
export const MAX_TRACKED_SOURCES = 10_000;

interface Bucket {
  /** Failures the source may still make; refilled lazily from `at`. */
  allowance: number;
  at: number;
}

/** The key a source address is counted under: an IPv4 address (IPv4-mapped IPv6 included), an IPv6 /64, or the text as given. */
export function sourceKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped !== null) return mapped[1] as string;
  if (isIPv4(address)) return address;
  if (!isIPv6(address)) return address.slice(0, 64);
  const [head = '', tail = ''] = address.toLowerCase().split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = address.includes('::') ? [...left, ...new Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

/** The TCP peer's address as @hono/node-server gives it; `unknown` without a socket (app.request() in tests). */
export function sourceAddress(c: Context): string {
  const env = c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined;
  return env?.incoming?.socket?.remoteAddress ?? 'unknown';
}

export interface AuthLimiterOptions {
  burst?: number;
  refillMs?: number;
  maxSources?: number;
  /** Milliseconds; tests pass a clock. */
  now?: () => number;
}

export class AuthFailureLimiter {
  readonly #buckets = new Map<string, Bucket>();
  readonly #burst: number;
  readonly #refillMs: number;
  readonly #maxSources: number;
  readonly #now: () => number;

  constructor(opts: AuthLimiterOptions = {}) {
    this.#burst = opts.burst ?? AUTH_FAILURE_BURST;
    this.#refillMs = opts.refillMs ?? AUTH_FAILURE_REFILL_MS;
    this.#maxSources = opts.maxSources ?? MAX_TRACKED_SOURCES;
    this.#now = opts.now ?? Date.now;
  }

  /** Sources in the table now (at most maxSources). */
  get size(): number {
    return this.#buckets.size;
  }

  #refilled(key: string): Bucket | undefined {
    const b = this.#buckets.get(key);
    if (b === undefined) return undefined;
    const now = this.#now();
    b.allowance = Math.min(this.#burst, b.allowance + (now - b.at) / this.#refillMs);
    b.at = now;
    return b;
  }

  /** Milliseconds until the source may try again: 0 while it has failures left. */
  retryAfterMs(address: string): number {
    const b = this.#refilled(sourceKey(address));
    if (b === undefined || b.allowance >= 1) return 0;
    return Math.ceil((1 - b.allowance) * this.#refillMs);
  }

  /** Counts one failure; true when it was the source's last one (it is limited from now on). */
  fail(address: string): boolean {
    const key = sourceKey(address);
    let b = this.#refilled(key);
    if (b === undefined) {
      b = { allowance: this.#burst, at: this.#now() };
      while (this.#buckets.size >= this.#maxSources) {
        const oldest = this.#buckets.keys().next().value;
        if (oldest === undefined) break;
        this.#buckets.delete(oldest);
      }
    }
    // Re-inserted, so the Map's order is least recently failed first.
    this.#buckets.delete(key);
    this.#buckets.set(key, b);
    const before = b.allowance;
    b.allowance = Math.max(0, b.allowance - 1);
    return before >= 1 && b.allowance < 1;
  }
}
