/**
 * Which collector to connect to when the config lists several (replicas serving one store
 * behind no load balancer, or beside one: issue 12 §3). Each agent ranks the list by a hash
 * of its id and each URL (rendezvous hashing) and starts at the top, so a fleet spreads over
 * the replicas instead of piling onto the first; it moves down its own ranking after any
 * failed attempt or lost connection, and stays where it is while that one serves it (no
 * flapping back to a "primary"). Moving to the next URL of the list instead sent every agent
 * of a dead replica to the same next one: the scale bench's SIGKILLed replica's 3,300
 * agents overflowed that one's pending-handshake limit and took 80 s to be served, where
 * their own rankings spread them evenly over the survivors.
 *
 * Moving on is quick (a jittered delay within backoff.ts's first window); only when every
 * collector in the list has failed since the last connection does the backoff grow, so a
 * dead replica costs its agents about a second, and a dead fleet is not hammered.
 */
import { createHash } from 'node:crypto';

export class CollectorRotation {
  readonly urls: readonly string[];
  /** The URLs in this agent's order of trying them. */
  readonly order: readonly string[];
  #index = 0;
  #failedSinceConnected = 0;

  constructor(urls: readonly string[], agentId: string) {
    if (urls.length === 0) throw new RangeError('no collector URL');
    this.urls = urls;
    const rank = (url: string): string => createHash('sha256').update(agentId).update('\0').update(url).digest('hex');
    this.order = urls
      .map((url) => ({ url, rank: rank(url) }))
      .sort((a, b) => (a.rank < b.rank ? -1 : a.rank > b.rank ? 1 : 0))
      .map((r) => r.url);
  }

  get current(): string {
    return this.order[this.#index] as string;
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
