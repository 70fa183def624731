/**
 * OSV `ECOSYSTEM` range semantics on a distribution's own version rules: a version is
 * affected when introduced <= v < fixed, or introduced <= v <= last_affected; `0` or no
 * introduced means from the first version; no upper bound means no fix is published.
 */
import type { AdvisoryRange } from '../feeds/types.ts';

export type Compare = (a: string, b: string) => -1 | 0 | 1;

export interface RangeMatch {
  range: AdvisoryRange | null;
  /** The fixed version this range names; null when no fix is published. */
  fixed: string | null;
}

export function inRange(cmp: Compare, installed: string, r: AdvisoryRange): boolean {
  if (r.introduced !== null && r.introduced !== '0' && cmp(installed, r.introduced) < 0) return false;
  if (r.fixed !== null) return cmp(installed, r.fixed) < 0;
  if (r.lastAffected !== null) return cmp(installed, r.lastAffected) <= 0;
  return true;
}

/**
 * The first range (or explicit version) that contains `installed`, or null. A version the
 * scheme rejects throws (InvalidVersionError) so the caller can count it, never match it.
 */
export function matchRanges(cmp: Compare, installed: string, ranges: readonly AdvisoryRange[], versions: readonly string[]): RangeMatch | null {
  for (const r of ranges) if (inRange(cmp, installed, r)) return { range: r, fixed: r.fixed };
  for (const v of versions) if (cmp(installed, v) === 0) return { range: null, fixed: null };
  return null;
}

export function describeRange(r: AdvisoryRange | null): string {
  if (r === null) return 'listed as an affected version';
  const parts = [`introduced ${r.introduced ?? '0'}`];
  if (r.fixed !== null) parts.push(`fixed ${r.fixed}`);
  if (r.lastAffected !== null) parts.push(`last affected ${r.lastAffected}`);
  return `range ${parts.join(', ')}`;
}
