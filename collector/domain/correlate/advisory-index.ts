/**
 * In-memory index of the loaded advisories by (ecosystem, package): correlation is a map
 * lookup per installed package, not a query. Built from the store at start and patched
 * on every feed import, which also says which (ecosystem, package) pairs changed so
 * cached correlations are redone for those pairs only.
 */
import type { Advisory, AdvisoryRange, LivepatchFix } from '../feeds/types.ts';
import { compileModulePattern, type ModulePattern } from '../feeds/livepatch-pattern.ts';
import type { Severity } from '../../../shared/protocol.ts';

export interface AdvisoryMeta {
  source: string;
  id: string;
  cves: readonly string[];
  severity: Severity;
  published: string | null;
}

export interface IndexEntry {
  advisory: AdvisoryMeta;
  ranges: readonly AdvisoryRange[];
  versions: readonly string[];
  /** The source's reason there is no fix (CSAF `no_fix_planned`), for the finding's `why`. */
  note?: string;
  /** An Ubuntu LSN (listed under LIVEPATCH_PACKAGE): the live patch that fixes the advisory's CVEs. */
  livepatch?: { provider: LivepatchFix['provider']; patterns: readonly ModulePattern[]; fixedLevel: number };
}

/**
 * The index "package" LSNs are listed under, per ecosystem. Never a package name (they
 * start with a letter or digit), so no unit looks it up by accident; its index key still
 * names the ecosystem, which is what tells live re-correlation which hosts to judge again.
 * Kernel units are matched afresh on every findings() call, so nothing cached depends on it.
 */
export const LIVEPATCH_PACKAGE = '\u0001livepatch';

export function indexKey(ecosystem: string, pkg: string): string {
  return `${ecosystem}\u0000${pkg}`;
}

/** Where binary-keyed entries (Ubuntu OVAL's dpkginfo tests) are listed: never a unit's key. */
export function binaryKey(ecosystem: string, binary: string): string {
  return indexKey(ecosystem, `\u0002${binary}`);
}

function cvesOf(a: Advisory): string[] {
  const ids = new Set<string>();
  if (a.id.startsWith('CVE-')) ids.add(a.id);
  for (const x of a.aliases) if (x.startsWith('CVE-')) ids.add(x);
  return [...ids].sort();
}

export class AdvisoryIndex {
  readonly #byKey = new Map<string, IndexEntry[]>();
  /** advisory `${source}\0${id}` -> index keys it contributes to, for replacement. */
  readonly #keysOf = new Map<string, string[]>();
  /**
   * binaryKey -> the keys of the source units seen holding that binary (noteBinaries, as
   * units are matched). A change to a binary-keyed entry changes those units' keys too, so
   * live re-correlation (Correlator's refresh by changed keys) matches exactly the units
   * that hold the binary again. A unit is always matched (and noted) before anything cached
   * can depend on it, and this lives as long as the cache does.
   */
  readonly #sourcesOfBinary = new Map<string, Set<string>>();
  #generation = 0;

  get generation(): number {
    return this.#generation;
  }

  get size(): number {
    return this.#keysOf.size;
  }

  lookup(ecosystem: string, pkg: string): readonly IndexEntry[] {
    return this.#byKey.get(indexKey(ecosystem, pkg)) ?? [];
  }

  /** Binary-keyed entries of one binary package name. */
  lookupBinary(ecosystem: string, binary: string): readonly IndexEntry[] {
    return this.#byKey.get(binaryKey(ecosystem, binary)) ?? [];
  }

  /** Records that the unit `unitKey` holds these binaries (see #sourcesOfBinary). */
  noteBinaries(ecosystem: string, unitKey: string, binaries: readonly string[]): void {
    for (const b of binaries) {
      const k = binaryKey(ecosystem, b);
      const set = this.#sourcesOfBinary.get(k);
      if (set === undefined) this.#sourcesOfBinary.set(k, new Set([unitKey]));
      else set.add(unitKey);
    }
  }

  /** A changed key, and for a binary key the units holding that binary. */
  #touch(key: string, changed: Set<string>): void {
    changed.add(key);
    for (const k of this.#sourcesOfBinary.get(key) ?? []) changed.add(k);
  }

  /**
   * Adds or replaces advisories; withdrawn ones are removed. Returns the index keys
   * whose entries changed.
   */
  apply(advisories: Iterable<Advisory>): Set<string> {
    const changed = new Set<string>();
    for (const a of advisories) {
      const id = `${a.source}\u0000${a.id}`;
      this.#drop(a.source, a.id, changed);
      if (a.withdrawn !== null) continue;
      const meta: AdvisoryMeta = { source: a.source, id: a.id, cves: cvesOf(a), severity: a.severity, published: a.published };
      const keys: string[] = [];
      for (const aff of a.affected) {
        if (aff.ranges.length === 0 && aff.versions.length === 0) continue;
        const key = aff.binary === true ? binaryKey(aff.ecosystem, aff.package) : indexKey(aff.ecosystem, aff.package);
        let list = this.#byKey.get(key);
        if (list === undefined) {
          list = [];
          this.#byKey.set(key, list);
        }
        list.push(aff.note === undefined ? { advisory: meta, ranges: aff.ranges, versions: aff.versions } : { advisory: meta, ranges: aff.ranges, versions: aff.versions, note: aff.note });
        keys.push(key);
        this.#touch(key, changed);
      }
      if (a.livepatch !== undefined) {
        const patterns = a.livepatch.modules.map(compileModulePattern).filter((p): p is ModulePattern => p !== null);
        const key = indexKey(a.livepatch.ecosystem, LIVEPATCH_PACKAGE);
        let list = this.#byKey.get(key);
        if (list === undefined) this.#byKey.set(key, (list = []));
        list.push({ advisory: meta, ranges: [], versions: [], livepatch: { provider: a.livepatch.provider, patterns, fixedLevel: a.livepatch.fixedLevel } });
        keys.push(key);
        changed.add(key);
      }
      if (keys.length > 0) this.#keysOf.set(id, keys);
    }
    if (changed.size > 0) this.#generation++;
    return changed;
  }

  /** Removes advisories deleted from the store (`feed remove`); returns the index keys whose entries changed. */
  remove(ids: Iterable<{ source: string; id: string }>): Set<string> {
    const changed = new Set<string>();
    for (const x of ids) this.#drop(x.source, x.id, changed);
    if (changed.size > 0) this.#generation++;
    return changed;
  }

  #drop(source: string, advisoryId: string, changed: Set<string>): void {
    const id = `${source}\u0000${advisoryId}`;
    for (const key of this.#keysOf.get(id) ?? []) {
      const list = this.#byKey.get(key);
      if (list === undefined) continue;
      const kept = list.filter((e) => e.advisory.source !== source || e.advisory.id !== advisoryId);
      if (kept.length === 0) this.#byKey.delete(key);
      else this.#byKey.set(key, kept);
      this.#touch(key, changed);
    }
    this.#keysOf.delete(id);
  }
}
