/**
 * U+0000 at the feed-parsing boundary (the rule of shared/text.ts): PostgreSQL's `text`
 * cannot hold it and its `jsonb` refuses JSON's `\u0000` escape (the `affected` view casts an
 * advisory's stored JSON), while SQLite takes both. A feed with a NUL would import on one
 * engine and fail the whole import on the other, so every record parseFeedRecord gives is
 * held to the rule here, one place for every format, before anything reaches a store.
 *
 * What becomes of a NUL depends on what the field is, the same for every feed:
 * - Free text for people to read (an advisory's summary, an affected entry's note, KEV's
 *   vendor, product and ransomware words): the NUL becomes U+FFFD, as the feed reader
 *   already decodes bytes that are not UTF-8 (Buffer#toString), and the record is kept with
 *   a warning. Refusing it would drop an advisory's affected packages and fixes, or a CVE's
 *   KEV deadline, over a damaged title.
 * - Anything else (ids, ecosystems, package names, versions, dates: fields with a grammar,
 *   which no parser should let a NUL through): the record is not what it claims to be, and
 *   is skipped with a warning, as parsers skip a bad entry (PW_ERR_FEED_FORMAT).
 */
import { FeedFormatError } from '../../../shared/errors.ts';
import type { Advisory, FeedReport, KevEntry } from './types.ts';

const NUL = '\u0000';

/** Counted in the report (`feed import` prints the counts). */
export const NUL_REPLACED = 'texts with U+0000 replaced';
export const NUL_SKIPPED = 'records with U+0000 skipped';

function clean(text: string): string {
  return text.replaceAll(NUL, '\uFFFD');
}

/** The path of the first string holding a NUL in `value`, or null. */
function nulAt(value: unknown, path: string): string | null {
  if (typeof value === 'string') return value.includes(NUL) ? path : null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const at = nulAt(value[i], `${path}[${i}]`);
      if (at !== null) return at;
    }
    return null;
  }
  if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      // A key is text too: it is stored in the advisory's JSON.
      const at = k.includes(NUL) ? `${path}.<key>` : nulAt(v, `${path}.${k}`);
      if (at !== null) return at;
    }
  }
  return null;
}

/** `kept` (its free text in `fields` already repaired) goes to `out` unless a NUL is left anywhere in it; either way the report says so. */
function keepOrSkip<T>(out: T[], kept: T, root: string, fields: readonly string[], report: FeedReport, where: string): void {
  const at = nulAt(kept, root);
  if (at !== null) {
    report.warn(where, new FeedFormatError(`${at} holds U+0000 (NUL), which the store cannot hold; record skipped`));
    report.count(NUL_SKIPPED);
    return;
  }
  if (fields.length > 0) {
    report.warn(where, new FeedFormatError(`${fields.join(', ')} held U+0000 (NUL), which the store cannot hold: replaced with U+FFFD; record kept`));
    report.count(NUL_REPLACED, fields.length);
  }
  out.push(kept);
}

/** The advisories with their free text's NULs replaced; one with a NUL anywhere else is left out. */
export function advisoriesWithoutNul(advisories: readonly Advisory[], report: FeedReport, name: string): Advisory[] {
  const out: Advisory[] = [];
  for (const a of advisories) {
    const where = `${name} ${clean(a.id).slice(0, 64)}`;
    const fields: string[] = [];
    let kept = a;
    if (a.summary?.includes(NUL) === true) {
      kept = { ...kept, summary: clean(a.summary) };
      fields.push('summary');
    }
    if (a.affected.some((p) => p.note?.includes(NUL) === true)) {
      kept = { ...kept, affected: a.affected.map((p) => (p.note?.includes(NUL) === true ? { ...p, note: clean(p.note) } : p)) };
      fields.push('affected note');
    }
    keepOrSkip(out, kept, 'advisory', fields, report, where);
  }
  return out;
}

/** The KEV entries with their text's NULs replaced; one whose CVE id or dates hold one is left out. */
export function kevWithoutNul(entries: readonly KevEntry[], report: FeedReport, name: string): KevEntry[] {
  const out: KevEntry[] = [];
  for (const e of entries) {
    const where = `${name} ${clean(e.cve).slice(0, 32)}`;
    const fields = (['vendorProject', 'product', 'knownRansomwareCampaignUse'] as const).filter((f) => e[f]?.includes(NUL) === true);
    const kept: KevEntry =
      fields.length === 0
        ? e
        : {
            ...e,
            vendorProject: clean(e.vendorProject),
            product: clean(e.product),
            knownRansomwareCampaignUse: e.knownRansomwareCampaignUse === null ? null : clean(e.knownRansomwareCampaignUse),
          };
    keepOrSkip(out, kept, 'kev', fields, report, where);
  }
  return out;
}
