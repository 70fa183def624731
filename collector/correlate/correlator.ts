/**
 * The correlator: an advisory index plus a cache of matches per inventory content.
 * Identical inventories (a fleet built from one image) are matched once; after a feed
 * import only the (ecosystem, package) pairs it changed are matched again.
 *
 * A cache entry keeps only what matched (most of 2,000 packages match nothing), never the
 * inventory or its plan: the caller passes the inventory on every call, and the same
 * content hash means the same packages, kernel and ecosystem. An entry of a fleet image
 * with a dozen findings is a few hundred bytes, so thousands of distinct package sets fit;
 * keeping each set's 2,000 units and per-unit lists cost about 1 MB per set and made every
 * major GC of a busy collector walk them.
 */
import { packagesHash } from '../../shared/inventory-hash.ts';
import { FINDINGS_SCHEMA, type Findings, type Inventory } from '../../shared/protocol.ts';
import type { Advisory } from '../feeds/types.ts';
import { AdvisoryIndex } from './advisory-index.ts';
import { buildFindings, type FindingContext } from './findings.ts';
import { comparatorFor, type MatchUnit, matchUnit, planInventory, type RawMatch } from './match.ts';
import type { Compare } from './ranges.ts';

interface CacheEntry {
  /** The index generation these matches were made against (see Correlator.apply). */
  generation: number;
  ecosystem: string;
  kernelManaged: boolean;
  /** The plan's own warnings (an unmanaged kernel, say). */
  planWarnings: string[];
  /** Matches of the non-kernel units, by index key: only keys that matched. */
  byKey: Map<string, RawMatch[]>;
  /** Warnings of matching non-kernel units (a version the scheme rejects), by index key: at most WARNINGS_PER_KEY each, and how many more. */
  warningsByKey: Map<string, { shown: string[]; more: number }>;
  /** byKey's lists as one: what a cache hit copies. */
  flat: RawMatch[];
  /** At most three; matched afresh every time (they share one de-duplication set). */
  kernelUnits: MatchUnit[];
}

export interface FeedState {
  source: string;
  newest: string | null;
  importedAt: string | null;
}

/** What matching an inventory gives findings(): the matches, and the plan's facts. */
export interface InventoryMatches {
  matches: RawMatch[];
  kernelManaged: boolean;
  warnings: string[];
}

/** matchUnit's de-duplication set, which only kernel units read or write. */
const NO_KERNEL_SEEN: Set<string> = new Set();

/**
 * Warnings kept per index key, and per findings document. An inventory of 50,000 packages
 * with versions the scheme rejects makes one warning per package and advisory: millions of
 * lines that say the same thing. The rest are counted.
 */
const WARNINGS_PER_KEY = 8;
export const MAX_MATCH_WARNINGS = 1000;

/** Feed imports remembered for re-matching; an entry older than all of them is matched again whole. */
const KEPT_CHANGES = 32;

/** Bytes of the inventory that decide its matches; collectedAt, host identity and hardware do not. */
export const matchHash = packagesHash;

export class Correlator {
  readonly index = new AdvisoryIndex();
  readonly #cache = new Map<string, CacheEntry>();
  readonly #maxCached: number;
  readonly #maxCachedMatches: number;
  /** Matches held by all entries (their flat lists): what the cache's memory grows with. */
  #cachedMatches = 0;
  /** Bumped by every apply() that changed something; #changes says which keys it changed. */
  #generation = 0;
  readonly #changes: { generation: number; keys: ReadonlySet<string> }[] = [];
  /** unitsRematched: units matched again in a cached entry because an import or removal changed their pair. */
  stats = { hits: 0, misses: 0, unitsMatched: 0, unitsRematched: 0 };

  /**
   * The cache holds at most `maxCachedInventories` package sets and `maxCachedMatches`
   * matches over all of them (about 0.6 KB each, so 500,000 is about 300 MB); the oldest
   * sets go first. A set pushed out is matched again when a host reports it.
   */
  constructor(options: { maxCachedInventories?: number; maxCachedMatches?: number } = {}) {
    this.#maxCached = options.maxCachedInventories ?? 10_000;
    this.#maxCachedMatches = options.maxCachedMatches ?? 500_000;
  }

  /** Loads or replaces advisories; cached matches of the pairs they touch are matched again when next asked for. */
  apply(advisories: Iterable<Advisory>): number {
    return this.#changed(this.index.apply(advisories));
  }

  /** Drops advisories deleted from the store (`feed remove`); their pairs are matched again as apply's are. */
  remove(ids: Iterable<{ source: string; id: string }>): number {
    return this.#changed(this.index.remove(ids));
  }

  /** apply() and remove() at once; returns the index keys they changed, whose ecosystems say which hosts to judge again. */
  update(stored: Iterable<Advisory>, removed: Iterable<{ source: string; id: string }>): ReadonlySet<string> {
    const keys = this.index.apply(stored);
    for (const k of this.index.remove(removed)) keys.add(k);
    this.#changed(keys);
    return keys;
  }

  #changed(changed: ReadonlySet<string>): number {
    if (changed.size === 0) return 0;
    this.#generation++;
    this.#changes.push({ generation: this.#generation, keys: changed });
    if (this.#changes.length > KEPT_CHANGES) this.#changes.shift();
    return changed.size;
  }

  matches(inv: Inventory, hash = matchHash(inv)): InventoryMatches {
    const ecosystem = inv.host.ecosystem;
    const cmp = ecosystem === null ? null : comparatorFor(ecosystem);
    if (ecosystem === null || cmp === null) {
      const plan = planInventory(inv);
      return { matches: [], kernelManaged: plan.kernelManaged, warnings: plan.warnings };
    }
    let entry = this.#cache.get(hash);
    if (entry !== undefined) {
      this.stats.hits++;
      if (entry.generation !== this.#generation) this.#refresh(entry, inv, cmp);
    } else {
      this.stats.misses++;
      entry = this.#build(inv, ecosystem, cmp);
      this.#cache.set(hash, entry);
    }
    this.#evict();
    const warnings = [...entry.planWarnings];
    let more = 0;
    for (const w of entry.warningsByKey.values()) {
      for (const line of w.shown) {
        if (warnings.length < MAX_MATCH_WARNINGS) warnings.push(line);
        else more++;
      }
      more += w.more;
    }
    const out = entry.flat.slice();
    const seen = new Set<string>();
    for (const u of entry.kernelUnits) {
      for (const m of matchUnit(inv, u, this.index, cmp, ecosystem, seen, warnings)) out.push(m);
      this.stats.unitsMatched++;
    }
    if (more > 0) warnings.push(`${more} more warnings like these were left out`);
    return { matches: out, kernelManaged: entry.kernelManaged, warnings };
  }

  #build(inv: Inventory, ecosystem: string, cmp: Compare): CacheEntry {
    const plan = planInventory(inv);
    const entry: CacheEntry = {
      generation: this.#generation,
      ecosystem,
      kernelManaged: plan.kernelManaged,
      planWarnings: plan.warnings,
      byKey: new Map(),
      warningsByKey: new Map(),
      flat: [],
      kernelUnits: plan.units.filter((u) => u.kernel),
    };
    this.#matchUnits(entry, inv, plan.units, cmp);
    return entry;
  }

  /** Matches again the units whose keys feed imports changed since the entry was made. */
  #refresh(entry: CacheEntry, inv: Inventory, cmp: Compare): void {
    const first = this.#changes[0];
    if (first === undefined || first.generation > entry.generation + 1) {
      // Older than every import remembered: match it whole.
      const rebuilt = this.#build(inv, entry.ecosystem, cmp);
      this.#cachedMatches -= entry.flat.length;
      Object.assign(entry, rebuilt);
      return;
    }
    const keys = new Set<string>();
    for (const c of this.#changes) if (c.generation > entry.generation) for (const k of c.keys) keys.add(k);
    const units = planInventory(inv).units.filter((u) => !u.kernel && keys.has(u.key));
    for (const u of units) {
      entry.byKey.delete(u.key);
      entry.warningsByKey.delete(u.key);
    }
    entry.generation = this.#generation;
    this.stats.unitsRematched += units.length;
    this.#matchUnits(entry, inv, units, cmp);
  }

  /** Matches the non-kernel units into the entry's byKey, then rebuilds its flat list. */
  #matchUnits(entry: CacheEntry, inv: Inventory, units: readonly MatchUnit[], cmp: Compare): void {
    const warnings: string[] = [];
    for (const u of units) {
      if (u.kernel) continue;
      const m = matchUnit(inv, u, this.index, cmp, entry.ecosystem, NO_KERNEL_SEEN, warnings);
      this.stats.unitsMatched++;
      if (m.length > 0) {
        const list = entry.byKey.get(u.key);
        if (list === undefined) entry.byKey.set(u.key, m);
        else for (const x of m) list.push(x);
      }
      if (warnings.length > 0) {
        let w = entry.warningsByKey.get(u.key);
        if (w === undefined) entry.warningsByKey.set(u.key, (w = { shown: [], more: 0 }));
        for (const line of warnings.splice(0)) {
          if (w.shown.length < WARNINGS_PER_KEY) w.shown.push(line);
          else w.more++;
        }
      }
    }
    this.#cachedMatches -= entry.flat.length;
    entry.flat = [...entry.byKey.values()].flat();
    this.#cachedMatches += entry.flat.length;
  }

  /** Drops the oldest sets while the cache is over either bound; the newest always stays. */
  #evict(): void {
    while (this.#cache.size > 1 && (this.#cache.size > this.#maxCached || this.#cachedMatches > this.#maxCachedMatches)) {
      const oldest = this.#cache.entries().next().value;
      if (oldest === undefined) return;
      this.#cache.delete(oldest[0]);
      this.#cachedMatches -= oldest[1].flat.length;
    }
  }

  /** Package sets and matches the cache holds now. */
  get cached(): { inventories: number; matches: number } {
    return { inventories: this.#cache.size, matches: this.#cachedMatches };
  }

  /** `hash`: the inventory's packagesHash when the caller has it already (the store does). */
  findings(inv: Inventory, ctx: FindingContext & { feeds?: readonly FeedState[]; hash?: string }): Findings {
    const { matches, kernelManaged, warnings: matchWarnings } = this.matches(inv, ctx.hash);
    const staleMs = ctx.policy.staleFeedHours * 3600_000;
    const feeds = (ctx.feeds ?? []).map((f) => ({
      ...f,
      stale: f.importedAt === null || ctx.now.getTime() - Date.parse(f.importedAt) > staleMs,
    }));
    const warnings = [...new Set(matchWarnings)];
    for (const f of feeds) if (f.stale) warnings.push(`feed ${f.source} is stale (last imported ${f.importedAt ?? 'never'}): findings may be missing`);
    return {
      schema: FINDINGS_SCHEMA,
      host: inv.host.hostname,
      ecosystem: inv.host.ecosystem,
      generatedAt: ctx.now.toISOString(),
      kernel: { release: inv.kernel.release, managed: kernelManaged },
      feeds,
      warnings,
      findings: buildFindings(matches, ctx),
    };
  }
}
