/**
 * Connections that have upgraded but not yet sent a valid hello or enroll, by source
 * address. One source holds at most `perAddress` of them; when all `total` slots are
 * taken, a newcomer from a source holding fewer than the busiest one closes the busiest
 * source's oldest (most likely idle) connection and takes its slot. So a flood of idle
 * upgrades, from one address or many, costs its sources their own slots but never the
 * slot of an agent connecting from anywhere else.
 *
 * Sources are IPv4 addresses and IPv6 /64 prefixes: whoever has one IPv6 address usually
 * has its whole /64, so counting single IPv6 addresses would count nothing.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** The source an address counts against: the IPv4 address, or the IPv6 /64 (`2001:db8:0:1::/64`). */
export function addressKey(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1] !== undefined) return mapped[1];
  if (isIPv4(address)) return address;
  const bare = address.replace(/%.*$/, '');
  if (!isIPv6(bare)) return address;
  const [head = '', tail] = bare.split('::');
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':').flatMap((g) => (g.includes('.') ? ['v4', 'v4'] : [g])));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const full = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `${full
    .slice(0, 4)
    .map((g) => (g === 'v4' ? '0' : g.toLowerCase().replace(/^0+(?=.)/, '')))
    .join(':')}::/64`;
}

export interface PendingLimits {
  /** Pending connections at most, from all sources together. */
  total: number;
  /** Pending connections at most from one source. */
  perAddress: number;
}

export type Admission<T> = { ok: true; evict: T | null } | { ok: false; reason: 'per-address' | 'full' };

export class PendingHandshakes<T> {
  readonly #limits: PendingLimits;
  /** Per source, its pending connections oldest first (a Set keeps insertion order). */
  readonly #bySource = new Map<string, Set<T>>();
  #size = 0;

  constructor(limits: PendingLimits) {
    for (const [name, n] of Object.entries(limits)) {
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`${name} is a whole number from 1 (got ${String(n)})`);
    }
    this.#limits = { ...limits };
  }

  get size(): number {
    return this.#size;
  }

  countOf(source: string): number {
    return this.#bySource.get(source)?.size ?? 0;
  }

  /**
   * Whether a new connection from `source` may upgrade, and which pending connection the
   * caller must close first to make room (null: there is room).
   */
  admit(source: string): Admission<T> {
    const mine = this.countOf(source);
    if (mine >= this.#limits.perAddress) return { ok: false, reason: 'per-address' };
    if (this.#size < this.#limits.total) return { ok: true, evict: null };
    let busiest: Set<T> | undefined;
    for (const set of this.#bySource.values()) if (busiest === undefined || set.size > busiest.size) busiest = set;
    // Only a source that would still hold more than the newcomer gives up a slot: sources
    // share the table evenly, and equals never close each other's connections in turn.
    if (busiest === undefined || busiest.size <= mine + 1) return { ok: false, reason: 'full' };
    const [oldest] = busiest;
    return oldest === undefined ? { ok: false, reason: 'full' } : { ok: true, evict: oldest };
  }

  add(source: string, item: T): void {
    let set = this.#bySource.get(source);
    if (set === undefined) {
      set = new Set();
      this.#bySource.set(source, set);
    }
    if (set.has(item)) return;
    set.add(item);
    this.#size++;
  }

  /** Forgets a connection (authenticated, refused or closed); false when it was not pending. */
  delete(source: string, item: T): boolean {
    const set = this.#bySource.get(source);
    if (set?.delete(item) !== true) return false;
    this.#size--;
    if (set.size === 0) this.#bySource.delete(source);
    return true;
  }
}
