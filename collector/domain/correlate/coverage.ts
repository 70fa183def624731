/**
 * Whether anyone looked: a host's findings mean something only when a loaded feed has
 * advisories for its ecosystem (`Debian:12`, `AlmaLinux:9`, `Alpine:v3.20`). Which
 * ecosystems a feed covers comes from its own data (the `ecosystem` of every affected
 * entry it holds, kept per feed by AdvisoryStore), never from a table of what a feed
 * "should" cover: the DSA list names Debian releases up to 11 only, so it covers no
 * Debian 12 host however it is named.
 *
 * - `assessed`: at least one covering feed was checked successfully within staleFeedHours.
 * - `stale`: covering feeds exist, all older than that.
 * - `not-assessed`: nothing covers the host (no ecosystem, a release no feed has
 *   advisories for, no feeds at all), or its inventory could not be read. Such a host is
 *   never counted as compliant: zero findings there mean nobody looked.
 */
import { LIMITS } from '../../../shared/protocol.ts';

export const ASSESSMENTS = ['assessed', 'stale', 'not-assessed'] as const;
export type Assessment = (typeof ASSESSMENTS)[number];

/** One feed's coverage as the store keeps it. */
export interface FeedCoverage {
  source: string;
  ecosystems: readonly string[];
  /** Last successful check (as the stale-feed warnings judge freshness); null: never. */
  checkedAt: string | null;
}

export interface HostAssessment {
  state: Assessment;
  /** Why, in one sentence an operator can act on. */
  reason: string;
  /** The feeds that cover the host's ecosystem, with their freshness. */
  feeds: { source: string; checkedAt: string | null; stale: boolean }[];
}

export interface AssessedHost {
  ecosystem: string | null;
  /** False when the stored inventory cannot be read (empty, or over the package limit). */
  inventoryReadable: boolean;
}

/** A host whose stored inventory cannot be read (no packages, or over the package limit) was not assessed, whatever covers its ecosystem. */
export function inventoryReadable(host: { packageCount: number }): boolean {
  return host.packageCount > 0 && host.packageCount <= LIMITS.packages;
}

export class CoverageView {
  readonly #byEcosystem = new Map<string, { source: string; checkedAt: string | null; stale: boolean }[]>();
  readonly #feedCount: number;

  constructor(feeds: readonly FeedCoverage[], now: Date, staleFeedHours: number) {
    const staleMs = staleFeedHours * 3600_000;
    this.#feedCount = feeds.length;
    for (const f of feeds) {
      const stale = f.checkedAt === null || now.getTime() - Date.parse(f.checkedAt) > staleMs;
      for (const e of f.ecosystems) {
        const list = this.#byEcosystem.get(e);
        const entry = { source: f.source, checkedAt: f.checkedAt, stale };
        if (list === undefined) this.#byEcosystem.set(e, [entry]);
        else list.push(entry);
      }
    }
  }

  /** The state every host of this ecosystem has (when its inventory is readable). */
  stateOf(ecosystem: string | null): Assessment {
    if (ecosystem === null) return 'not-assessed';
    const feeds = this.#byEcosystem.get(ecosystem);
    if (feeds === undefined) return 'not-assessed';
    return feeds.some((f) => !f.stale) ? 'assessed' : 'stale';
  }

  /** Ecosystems whose hosts are in this state (for `not-assessed`: the covered ones, which it is not). */
  ecosystems(state: Exclude<Assessment, 'not-assessed'>): string[] {
    return [...this.#byEcosystem.keys()].filter((e) => this.stateOf(e) === state).sort();
  }

  /** Every ecosystem some feed covers. */
  covered(): string[] {
    return [...this.#byEcosystem.keys()].sort();
  }

  assess(host: AssessedHost): HostAssessment {
    const feeds = host.ecosystem === null ? [] : (this.#byEcosystem.get(host.ecosystem) ?? []);
    const copy = feeds.map((f) => ({ ...f }));
    if (!host.inventoryReadable) return { state: 'not-assessed', reason: 'the host inventory could not be read: nothing was matched', feeds: copy };
    if (host.ecosystem === null) return { state: 'not-assessed', reason: 'the host has no known distribution: no feed can cover it', feeds: [] };
    if (this.#feedCount === 0) return { state: 'not-assessed', reason: 'no advisory feeds are loaded: import or sync feeds (see `feed import`, `feed sync`)', feeds: [] };
    if (feeds.length === 0) return { state: 'not-assessed', reason: `no loaded feed has advisories for ${host.ecosystem}: import a feed that covers it`, feeds: [] };
    if (feeds.some((f) => !f.stale)) return { state: 'assessed', reason: `covered by ${feeds.filter((f) => !f.stale).map((f) => f.source).join(', ')}`, feeds: copy };
    return { state: 'stale', reason: `every feed covering ${host.ecosystem} is older than the stale limit: ${feeds.map((f) => `${f.source} (${f.checkedAt ?? 'never checked'})`).join(', ')}`, feeds: copy };
  }
}
