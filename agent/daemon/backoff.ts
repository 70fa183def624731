/**
 * Reconnect delays: exponential backoff with FULL jitter (AWS Architecture Blog,
 * "Exponential Backoff And Jitter", 2015): attempt n waits a uniform random time in
 * [0, min(cap, base * 2^n)). When a collector restarts, every agent loses its connection
 * in the same second; without jitter they would all come back in the same second too,
 * and again after each doubling. Full jitter spreads them evenly over the whole window,
 * which is what keeps a restarting collector from being stampeded.
 *
 * The attempt counter resets only after a connection has stayed up for `stableMs`: a
 * collector that accepts and then drops every connection (overloaded, failing its
 * database) keeps seeing the window grow instead of a reconnect storm.
 */

export interface BackoffOptions {
  /** Window of the first retry. */
  baseMs?: number;
  /** The window never grows past this. */
  capMs?: number;
  /** How long a connection must stay up before the next failure counts as a first one. */
  stableMs?: number;
  /** Uniform in [0, 1); injectable so tests can check the distribution with a seeded source. */
  random?: () => number;
}

export const DEFAULT_BACKOFF = Object.freeze({ baseMs: 1000, capMs: 5 * 60_000, stableMs: 60_000 });

export class Backoff {
  readonly baseMs: number;
  readonly capMs: number;
  readonly stableMs: number;
  private readonly random: () => number;
  private attempt = 0;
  private connectedAt: number | null = null;
  /** The window and attempt number the last next() drew from, for logs. */
  last = { windowMs: 0, attempt: 0 };

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? DEFAULT_BACKOFF.baseMs;
    this.capMs = options.capMs ?? DEFAULT_BACKOFF.capMs;
    this.stableMs = options.stableMs ?? DEFAULT_BACKOFF.stableMs;
    this.random = options.random ?? Math.random;
    if (!(this.baseMs > 0 && this.capMs >= this.baseMs && this.stableMs >= 0)) {
      throw new RangeError(`backoff needs 0 < baseMs <= capMs and stableMs >= 0 (got ${this.baseMs}, ${this.capMs}, ${this.stableMs})`);
    }
  }

  /** The upper bound of the window the next delay is drawn from. */
  window(): number {
    // 2^attempt overflows to Infinity after ~1000 attempts; min() keeps that harmless,
    // but stop counting once the cap is reached so the number stays meaningful in logs.
    return Math.min(this.capMs, this.baseMs * 2 ** this.attempt);
  }

  /** Failed attempts since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** Call when a connection is established (the handshake succeeded). */
  connected(now: number = Date.now()): void {
    this.connectedAt = now;
  }

  /** The delay before the next attempt; counts the attempt. */
  next(now: number = Date.now()): number {
    if (this.connectedAt !== null && now - this.connectedAt >= this.stableMs) this.attempt = 0;
    this.connectedAt = null;
    const windowMs = this.window();
    const delay = Math.floor(this.random() * windowMs);
    this.last = { windowMs, attempt: this.attempt };
    if (windowMs < this.capMs) this.attempt++;
    return delay;
  }

  /**
   * The delay before trying another collector of the same fleet (collectors.ts): drawn from
   * the first window, not counted as an attempt, so a fleet leaving a dead replica spreads
   * over a second rather than arriving at once.
   */
  rotation(): number {
    return Math.floor(this.random() * this.baseMs);
  }

  reset(): void {
    this.attempt = 0;
    this.connectedAt = null;
  }
}
