/**
 * The correlator: an advisory index plus a cache of matches per inventory content.
 * Identical inventories (a fleet built from one image) are matched once; after a feed
 * import only the (ecosystem, package) pairs it changed are matched again.
 *
 * A cache entry keeps what matched and its units, never the inventory: the same content
 * hash means the same packages, kernel and ecosystem. Units are interned: a fleet's
 * package sets drift from a few images, so 2,000 sets share most of their units, and an
 * entry is an array of references to shared units (12 KB for 1,500 units) rather than
 * its own copies (about 1 MB per set, which made every major GC of a busy collector walk
 * them). Holding the units lets a feed change re-match a cached set without its inventory
 * (parsing 2,000 stored inventories alone took seconds), and an interned unit is matched
 * once per index generation however many sets hold it: the fan-out of a feed update over
 * a whole fleet (HostFindings.followStore) costs one match per distinct unit.
 */
import { packagesHash } from '../../../shared/inventory-hash.ts';
import { FINDINGS_SCHEMA, type Findings, type Inventory } from '../../../shared/protocol.ts';
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
  /** The non-kernel units, interned (see SharedUnit): what a refresh re-matches without the inventory. */
  units: SharedUnit[];
  /** At most three; matched afresh every time (they share one de-duplication set). */
  kernelUnits: MatchUnit[];
  /** What kernel matching reads (installed kernels, live patch): a few KB, kept so a refresh needs no inventory. */
  kernel: Inventory['kernel'];
}

/**
 * A unit shared by every cached set that holds the same one, with its matches at one index
 * generation: matched once per generation, however many sets hold it.
 */
interface SharedUnit {
  unit: MatchUnit;
  signature: string;
  /** Cache entries holding it; dropped from the intern table at 0. */
  refs: number;
  generation: number;
  matches: RawMatch[];
  warnings: string[];
}

/**
 * Adds, for each key of a minor-release stream (`Red Hat:9.4\0openssl`), its mainline key
 * (`Red Hat:9\0openssl`): units are keyed by the host's mainline ecosystem, and a held
 * host's unit reads its stream's entries too (match.ts releaseStream), so a change to the
 * stream must re-match it, and its ecosystem names the hosts to judge again.
 */
function withMainline(keys: Set<string>): Set<string> {
  for (const k of [...keys]) {
    const cut = k.indexOf('\u0000');
    const m = /^(.+:\d+)\.\d+$/.exec(k.slice(0, cut));
    if (m?.[1] !== undefined) keys.add(`${m[1]}${k.slice(cut)}`);
  }
  return keys;
}

/** Identity of a unit: its key, the stream it is judged in, and every installed version with its binaries. */
function unitSignature(u: MatchUnit): string {
  let s = u.stream === undefined ? u.key : `${u.key}\u0001${u.stream}`;
  for (const v of u.versions) {
    s += `\u0001${v.version}\u0002${v.binaryCount}\u0002${v.binaries.join('\u0003')}`;
    // Binary-keyed advisories (Ubuntu OVAL) compare each binary's own version.
    if (v.binaryVersions !== undefined) s += `\u0004${v.binaryVersions.join('\u0003')}`;
  }
  return s;
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
  readonly #interned = new Map<string, SharedUnit>();
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
    return this.#changed(withMainline(this.index.apply(advisories)));
  }

  /** Drops advisories deleted from the store (`feed remove`); their pairs are matched again as apply's are. */
  remove(ids: Iterable<{ source: string; id: string }>): number {
    return this.#changed(withMainline(this.index.remove(ids)));
  }

  /** apply() and remove() at once; returns the index keys they changed, whose ecosystems say which hosts to judge again. */
  update(stored: Iterable<Advisory>, removed: Iterable<{ source: string; id: string }>): ReadonlySet<string> {
    const keys = this.index.apply(stored);
    for (const k of this.index.remove(removed)) keys.add(k);
    withMainline(keys);
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
      if (entry.generation !== this.#generation) this.#refresh(entry, cmp);
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
      for (const m of matchUnit(entry, u, this.index, cmp, ecosystem, seen, warnings)) out.push(m);
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
      units: [],
      kernelUnits: plan.units.filter((u) => u.kernel),
      kernel: inv.kernel,
    };
    for (const u of plan.units) {
      if (u.kernel) continue;
      const signature = unitSignature(u);
      let shared = this.#interned.get(signature);
      if (shared === undefined) {
        shared = { unit: u, signature, refs: 0, generation: -1, matches: [], warnings: [] };
        this.#interned.set(signature, shared);
      }
      shared.refs++;
      entry.units.push(shared);
    }
    this.#matchUnits(entry, entry.units, cmp);
    return entry;
  }

  /** Matches again the units whose keys feed imports changed since the entry was made. */
  #refresh(entry: CacheEntry, cmp: Compare): void {
    const first = this.#changes[0];
    const whole = first === undefined || first.generation > entry.generation + 1;
    let units: SharedUnit[];
    if (whole) {
      // Older than every import remembered: match it whole.
      units = entry.units;
      entry.byKey.clear();
      entry.warningsByKey.clear();
    } else {
      const keys = new Set<string>();
      for (const c of this.#changes) if (c.generation > entry.generation) for (const k of c.keys) keys.add(k);
      units = entry.units.filter((u) => keys.has(u.unit.key));
      for (const u of units) {
        entry.byKey.delete(u.unit.key);
        entry.warningsByKey.delete(u.unit.key);
      }
      this.stats.unitsRematched += units.length;
    }
    entry.generation = this.#generation;
    this.#matchUnits(entry, units, cmp);
  }

  /** Matches the units into the entry's byKey (once per unit and generation), then rebuilds its flat list. */
  #matchUnits(entry: CacheEntry, units: readonly SharedUnit[], cmp: Compare): void {
    for (const u of units) {
      if (u.generation !== this.#generation) {
        const warnings: string[] = [];
        u.matches = matchUnit(entry, u.unit, this.index, cmp, entry.ecosystem, NO_KERNEL_SEEN, warnings);
        u.warnings = warnings;
        u.generation = this.#generation;
        this.stats.unitsMatched++;
      }
      const key = u.unit.key;
      if (u.matches.length > 0) {
        const list = entry.byKey.get(key);
        if (list === undefined) entry.byKey.set(key, u.matches.slice());
        else for (const x of u.matches) list.push(x);
      }
      if (u.warnings.length > 0) {
        let w = entry.warningsByKey.get(key);
        if (w === undefined) entry.warningsByKey.set(key, (w = { shown: [], more: 0 }));
        for (const line of u.warnings) {
          if (w.shown.length < WARNINGS_PER_KEY) w.shown.push(line);
          else w.more++;
        }
      }
    }
    this.#cachedMatches -= entry.flat.length;
    entry.flat = [...entry.byKey.values()].flat();
    this.#cachedMatches += entry.flat.length;
  }

  /**
   * The current matches of a cached package set, without its inventory: what a feed
   * change's fan-out judges once for every host holding the set (changed units re-matched,
   * an interned unit once for all sets). Undefined when the set is not cached; the caller
   * then matches one inventory of it (matches()), which caches it.
   */
  matchesOf(hash: string): RawMatch[] | undefined {
    const entry = this.#cache.get(hash);
    if (entry === undefined) return undefined;
    const cmp = comparatorFor(entry.ecosystem);
    if (cmp === null) return undefined;
    if (entry.generation !== this.#generation) this.#refresh(entry, cmp);
    const out = entry.flat.slice();
    const seen = new Set<string>();
    const warnings: string[] = [];
    for (const u of entry.kernelUnits) for (const m of matchUnit(entry, u, this.index, cmp, entry.ecosystem, seen, warnings)) out.push(m);
    return out;
  }

  /** Bumped by every change to the index: findings judged at an older generation may be out of date. */
  get generation(): number {
    return this.#generation;
  }

  /** Drops the oldest sets while the cache is over either bound; the newest always stays. */
  #evict(): void {
    while (this.#cache.size > 1 && (this.#cache.size > this.#maxCached || this.#cachedMatches > this.#maxCachedMatches)) {
      const oldest = this.#cache.entries().next().value;
      if (oldest === undefined) return;
      this.#cache.delete(oldest[0]);
      this.#cachedMatches -= oldest[1].flat.length;
      for (const u of oldest[1].units) if (--u.refs === 0) this.#interned.delete(u.signature);
    }
  }

  /** Package sets and matches the cache holds now. */
  get cached(): { inventories: number; matches: number; units: number } {
    return { inventories: this.#cache.size, matches: this.#cachedMatches, units: this.#interned.size };
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
