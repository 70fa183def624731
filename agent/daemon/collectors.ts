/**
 * Which collector to connect to when the config lists several (replicas serving one store
 * behind no load balancer, or beside one: issue 12 §3). Each agent starts at a place of its
 * own in the list, from a hash of its id, so a fleet spreads over the replicas instead of
 * piling onto the first; it moves to the next after any failed attempt or lost connection,
 * and stays where it is while that one serves it (no flapping back to a "primary").
 *
 * Moving on is quick (a jittered delay within backoff.ts's first window); only when every
 * collector in the list has failed since the last connection does the backoff grow, so a
 * dead replica costs its agents about a second, and a dead fleet is not hammered.
 */
import { createHash } from 'node:crypto';

export class CollectorRotation {
  readonly urls: readonly string[];
  #index: number;
  #failedSinceConnected = 0;

  constructor(urls: readonly string[], agentId: string) {
    if (urls.length === 0) throw new RangeError('no collector URL');
    this.urls = urls;
    this.#index = createHash('sha256').update(agentId).digest().readUInt32BE(0) % urls.length;
  }

  get current(): string {
    return this.urls[this.#index] as string;
  }

  /**
   * The current collector could not be reached or dropped the connection: the next one is
   * current now. True when every listed collector has failed since the last connection.
   */
  failed(): boolean {
    this.#failedSinceConnected++;
    this.#index = (this.#index + 1) % this.urls.length;
    if (this.#failedSinceConnected < this.urls.length) return false;
    this.#failedSinceConnected = 0;
    return true;
  }

  /** A handshake with the current collector succeeded. */
  connected(): void {
    this.#failedSinceConnected = 0;
  }
}
