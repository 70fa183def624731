/**
 * The correlator: an advisory index plus a cache of matches per inventory content.
 * Identical inventories (a fleet built from one image) are matched once; after a feed
 * import only the (ecosystem, package) pairs it changed are matched again.
 */
import { packagesHash } from '../../shared/inventory-hash.ts';
import { FINDINGS_SCHEMA, type Findings, type Inventory } from '../../shared/protocol.ts';
import type { Advisory } from '../feeds/types.ts';
import { AdvisoryIndex } from './advisory-index.ts';
import { buildFindings, type FindingContext } from './findings.ts';
import { comparatorFor, type MatchPlan, matchUnit, planInventory, type RawMatch } from './match.ts';

interface CacheEntry {
  inv: Inventory;
  plan: MatchPlan;
  /** Matches per unit of plan.units, filled lazily; a feed import clears the units whose key it changed. */
  matches: (RawMatch[] | undefined)[];
  /** Index key -> positions in plan.units, for that invalidation. */
  unitsByKey: Map<string, number[]>;
  /** Positions of the kernel units (matched afresh every time). */
  kernelUnits: number[];
  /**
   * The matches of every other unit, in unit order, once all are known; a feed import that
   * clears a unit clears this too. A cache hit is then a copy of this list plus the kernel
   * units, not a walk over 2,000 units.
   */
  flat: RawMatch[] | undefined;
}

export interface FeedState {
  source: string;
  newest: string | null;
  importedAt: string | null;
}

/** matchUnit's de-duplication set, which only kernel units read or write. */
const NO_KERNEL_SEEN: Set<string> = new Set();

/** Bytes of the inventory that decide its matches; collectedAt, host identity and hardware do not. */
export const matchHash = packagesHash;

export class Correlator {
  readonly index = new AdvisoryIndex();
  readonly #cache = new Map<string, CacheEntry>();
  readonly #maxCached: number;
  stats = { hits: 0, misses: 0, unitsMatched: 0 };

  constructor(options: { maxCachedInventories?: number } = {}) {
    this.#maxCached = options.maxCachedInventories ?? 10_000;
  }

  /** Loads or replaces advisories; cached matches of the pairs they touch are dropped. */
  apply(advisories: Iterable<Advisory>): number {
    const changed = this.index.apply(advisories);
    if (changed.size === 0) return 0;
    for (const entry of this.#cache.values()) {
      for (const k of changed) {
        const positions = entry.unitsByKey.get(k);
        if (positions === undefined) continue;
        for (const i of positions) entry.matches[i] = undefined;
        entry.flat = undefined;
      }
    }
    return changed.size;
  }

  matches(inv: Inventory, hash = matchHash(inv)): { matches: RawMatch[]; plan: MatchPlan } {
    let entry = this.#cache.get(hash);
    if (entry === undefined) {
      this.stats.misses++;
      const plan = planInventory(inv);
      const unitsByKey = new Map<string, number[]>();
      const kernelUnits: number[] = [];
      plan.units.forEach((u, i) => {
        const list = unitsByKey.get(u.key);
        if (list === undefined) unitsByKey.set(u.key, [i]);
        else list.push(i);
        if (u.kernel) kernelUnits.push(i);
      });
      entry = { inv, plan, matches: new Array<RawMatch[] | undefined>(plan.units.length), unitsByKey, kernelUnits, flat: undefined };
      if (this.#cache.size >= this.#maxCached) {
        const oldest = this.#cache.keys().next().value;
        if (oldest !== undefined) this.#cache.delete(oldest);
      }
      this.#cache.set(hash, entry);
    } else {
      this.stats.hits++;
    }
    const { plan } = entry;
    const { ecosystem } = plan;
    if (ecosystem === null) return { matches: [], plan };
    const cmp = comparatorFor(ecosystem);
    if (cmp === null) return { matches: [], plan };
    const cached = entry;
    if (cached.flat === undefined) {
      const flat: RawMatch[] = [];
      plan.units.forEach((u, i) => {
        if (u.kernel) return;
        let m = cached.matches[i];
        if (m === undefined) {
          m = matchUnit(cached.inv, u, this.index, cmp, ecosystem, NO_KERNEL_SEEN, plan.warnings);
          this.stats.unitsMatched++;
          cached.matches[i] = m;
        }
        flat.push(...m);
      });
      cached.flat = flat;
    }
    // Kernel units share one de-duplication set (an RHEL advisory lists kernel and
    // kernel-core), so they are always matched afresh; there are at most three. Their
    // matches come after the others' (findings are sorted by package and advisory).
    const out = cached.flat.slice();
    const seen = new Set<string>();
    for (const i of cached.kernelUnits) {
      const u = plan.units[i];
      if (u === undefined) continue;
      const m = matchUnit(cached.inv, u, this.index, cmp, ecosystem, seen, plan.warnings);
      this.stats.unitsMatched++;
      cached.matches[i] = m;
      out.push(...m);
    }
    return { matches: out, plan };
  }

  /** `hash`: the inventory's packagesHash when the caller has it already (the store does). */
  findings(inv: Inventory, ctx: FindingContext & { feeds?: readonly FeedState[]; hash?: string }): Findings {
    const { matches, plan } = this.matches(inv, ctx.hash);
    const staleMs = ctx.policy.staleFeedHours * 3600_000;
    const feeds = (ctx.feeds ?? []).map((f) => ({
      ...f,
      stale: f.importedAt === null || ctx.now.getTime() - Date.parse(f.importedAt) > staleMs,
    }));
    const warnings = [...new Set(plan.warnings)];
    for (const f of feeds) if (f.stale) warnings.push(`feed ${f.source} is stale (last imported ${f.importedAt ?? 'never'}): findings may be missing`);
    return {
      schema: FINDINGS_SCHEMA,
      host: inv.host.hostname,
      ecosystem: inv.host.ecosystem,
      generatedAt: ctx.now.toISOString(),
      kernel: { release: inv.kernel.release, managed: plan.kernelManaged },
      feeds,
      warnings,
      findings: buildFindings(matches, ctx),
    };
  }
}
