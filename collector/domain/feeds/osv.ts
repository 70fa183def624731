/**
 * One OSV record (https://ossf.github.io/osv-schema/) -> one normalized Advisory. The
 * record is validated with a schema of the fields used here; other fields are allowed,
 * since OSV adds fields in minor versions and promises old readers may ignore them.
 *
 * Refused records (the caller counts them and goes on): not an object, wrong types, an
 * id that is not printable, a missing or impossible `modified`/`published`/`withdrawn`
 * date, an event that is not exactly one of introduced/fixed/last_affected/limit.
 * Refused affected entries (warned, the rest of the record is kept): ranges we cannot
 * evaluate (`SEMVER`, `GIT`, unknown types, `limit` events), a range without
 * `introduced`, package names or versions outside the dpkg/rpm/apk grammar.
 */
import * as z from 'zod';
import { FeedFormatError, FeedUnsupportedError, InputTooLargeError, InvalidVersionError } from '../../../shared/errors.ts';
import { PACKAGE_NAME, VERSION } from '../../../shared/protocol.ts';
import { cvss3BaseScore } from './cvss.ts';
import { normalizeDateTime } from './dates.ts';
import { maxSeverity, severityFromScore, severityFromWord } from './severity.ts';
import {
  ADVISORY_ID,
  ADVISORY_LIMITS,
  CVE_ID,
  FEED_ECOSYSTEM,
  type Advisory,
  type AdvisoryRange,
  type AffectedPackage,
  type FeedReport,
  type Severity,
} from './types.ts';

export const OSV_SOURCE = 'osv';

// Absent and null arrays mean the same in the OSV records seen in the wild.
const stringList = z.array(z.string()).max(ADVISORY_LIMITS.aliases).nullish();

const OsvSeveritySchema = z.looseObject({ type: z.string().max(64), score: z.string().max(1024) });

const OsvEventSchema = z.looseObject({
  introduced: z.string().optional(),
  fixed: z.string().optional(),
  last_affected: z.string().optional(),
  limit: z.string().optional(),
});

const OsvRangeSchema = z.looseObject({
  type: z.string().max(64),
  repo: z.string().optional(),
  events: z.array(OsvEventSchema).max(10_000),
});

const OsvAffectedSchema = z.looseObject({
  package: z.looseObject({ ecosystem: z.string(), name: z.string(), purl: z.string().optional() }).nullish(),
  severity: z.array(OsvSeveritySchema).max(64).nullish(),
  ranges: z.array(OsvRangeSchema).max(ADVISORY_LIMITS.ranges).nullish(),
  versions: z.array(z.string()).max(ADVISORY_LIMITS.versions).nullish(),
});

export const OsvRecordSchema = z.looseObject({
  schema_version: z.string().optional(),
  id: z.string(),
  modified: z.string(),
  published: z.string().nullish(),
  withdrawn: z.string().nullish(),
  aliases: stringList,
  upstream: stringList,
  related: stringList,
  summary: z.string().nullish(),
  details: z.string().nullish(),
  severity: z.array(OsvSeveritySchema).max(64).nullish(),
  affected: z.array(OsvAffectedSchema).max(ADVISORY_LIMITS.affected).nullish(),
  database_specific: z.looseObject({ severity: z.unknown().optional() }).nullish(),
});
export type OsvRecord = z.infer<typeof OsvRecordSchema>;
type OsvAffected = z.infer<typeof OsvAffectedSchema>;

/** Red Hat style summaries start with the rating: `Important: kernel security update`. */
const SUMMARY_RATING = /^(Critical|Important|Moderate|Low):\s/;

type EventKind = 'introduced' | 'fixed' | 'last_affected' | 'limit';
const EVENT_KINDS: readonly EventKind[] = ['introduced', 'fixed', 'last_affected', 'limit'];

function describe(path: (string | number | symbol)[]): string {
  return path.map(String).join('.') || '(record)';
}

function refuse(where: string, message: string): never {
  throw new FeedFormatError(`${where}: ${message}`);
}

function date(where: string, field: string, value: string | null | undefined): string | null {
  if (value === undefined || value === null) return null;
  const iso = normalizeDateTime(value);
  if (iso === null) refuse(where, `${field} ${JSON.stringify(value.slice(0, 64))} is not an RFC 3339 date`);
  return iso;
}

function event(where: string, e: z.infer<typeof OsvEventSchema>): { kind: EventKind; version: string } {
  let found: { kind: EventKind; version: string } | null = null;
  for (const kind of EVENT_KINDS) {
    const version = e[kind];
    if (version === undefined) continue;
    if (found !== null) refuse(where, `an event has both ${found.kind} and ${kind}`);
    found = { kind, version };
  }
  if (found === null) refuse(where, 'an event has none of introduced, fixed, last_affected, limit');
  return found;
}

/**
 * An ECOSYSTEM event list as ranges, read as the timeline OSV describes: each
 * `introduced` opens a range, the next `fixed` / `last_affected` closes it, one still open
 * at the end has no fix. Events are taken in the given order (OSV recommends sorted
 * lists and every distribution feed writes them so; sorting would need each
 * distribution's comparator, which the correlation applies later). An `introduced` while
 * a range is open changes nothing, as in OSV's evaluation.
 */
export function eventsToRanges(events: readonly { kind: EventKind; version: string }[]): AdvisoryRange[] | string {
  const ranges: AdvisoryRange[] = [];
  let open: string | null = null;
  let sawIntroduced = false;
  for (const e of events) {
    switch (e.kind) {
      case 'introduced':
        sawIntroduced = true;
        open ??= e.version;
        break;
      case 'fixed':
      case 'last_affected':
        if (open === null) return `${e.kind} ${e.version} has no introduced before it`;
        ranges.push({ introduced: open, fixed: e.kind === 'fixed' ? e.version : null, lastAffected: e.kind === 'last_affected' ? e.version : null });
        open = null;
        break;
      case 'limit':
        return 'limit events cannot be evaluated on ECOSYSTEM versions';
    }
  }
  if (!sawIntroduced) return 'the range has no introduced event';
  if (open !== null) ranges.push({ introduced: open, fixed: null, lastAffected: null });
  return ranges;
}

function severityOf(list: readonly z.infer<typeof OsvSeveritySchema>[] | null | undefined, where: string, report: FeedReport): { cvss: Severity; word: Severity } {
  let cvss: Severity = 'unknown';
  let word: Severity = 'unknown';
  for (const s of list ?? []) {
    if (s.type === 'CVSS_V3') {
      try {
        cvss = maxSeverity(cvss, severityFromScore(cvss3BaseScore(s.score)));
      } catch (err) {
        if (!(err instanceof FeedFormatError)) throw err;
        report.warn(where, err);
      }
    } else if (s.type === 'Ubuntu') {
      word = maxSeverity(word, severityFromWord(s.score) ?? 'unknown');
    }
    // CVSS_V2 and CVSS_V4 are left out: v2 ratings are not comparable and v4 needs
    // FIRST's lookup tables; records carrying them almost always carry a v3 vector too.
  }
  return { cvss, word };
}

function affectedEntry(a: OsvAffected, where: string, report: FeedReport): AffectedPackage | null {
  if (a.package === undefined || a.package === null) {
    report.warn(where, new FeedUnsupportedError('affected entry without a package (repository-only ranges) skipped'));
    return null;
  }
  const { ecosystem, name } = a.package;
  const label = `${where} ${ecosystem}/${name}`;
  if (ecosystem.length > ADVISORY_LIMITS.ecosystem || !FEED_ECOSYSTEM.test(ecosystem)) {
    report.warn(label, new FeedFormatError(`ecosystem ${JSON.stringify(ecosystem.slice(0, 64))} is not valid; entry skipped`));
    return null;
  }
  if (name.length > ADVISORY_LIMITS.name || !PACKAGE_NAME.test(name)) {
    report.warn(label, new FeedFormatError(`package name ${JSON.stringify(name.slice(0, 64))} is not a dpkg/rpm/apk name; entry skipped`));
    return null;
  }
  const ranges: AdvisoryRange[] = [];
  const unsupported: string[] = [];
  for (const r of a.ranges ?? []) {
    if (r.type !== 'ECOSYSTEM') {
      unsupported.push(r.type);
      continue;
    }
    const converted = eventsToRanges(r.events.map((e) => event(label, e)));
    if (typeof converted === 'string') {
      report.warn(label, new FeedUnsupportedError(`${converted}; entry skipped`));
      return null;
    }
    ranges.push(...converted);
  }
  if (ranges.length > ADVISORY_LIMITS.ranges) {
    report.warn(label, new InputTooLargeError(`${ranges.length} ranges, limit ${ADVISORY_LIMITS.ranges}; entry skipped`));
    return null;
  }
  const versions = a.versions ?? [];
  for (const v of [...versions, ...ranges.flatMap((r) => [r.introduced, r.fixed, r.lastAffected])]) {
    if (v !== null && (v.length > ADVISORY_LIMITS.version || !VERSION.test(v))) {
      report.warn(label, new InvalidVersionError(`version ${JSON.stringify(v.slice(0, 64))} is not a dpkg/rpm/apk version; entry skipped`));
      return null;
    }
  }
  if (unsupported.length > 0) {
    // A SEMVER or GIT range read as "no range" would make every version affected, and
    // read as "nothing" would hide the entry: skip what cannot be evaluated, say so.
    const kept = ranges.length > 0 || versions.length > 0;
    report.warn(
      label,
      new FeedUnsupportedError(
        `range type ${[...new Set(unsupported)].join(', ')} cannot be evaluated; ${kept ? 'only the ECOSYSTEM ranges and listed versions are used' : 'entry skipped'}`,
      ),
    );
    if (!kept) return null;
  }
  if (ranges.length === 0 && versions.length === 0) {
    report.warn(label, new FeedFormatError('affected entry lists no ranges and no versions; entry skipped'));
    return null;
  }
  return { ecosystem, package: name, ranges, versions: [...versions], notAffected: false };
}

function aliasesOf(r: OsvRecord): string[] {
  const ids = new Set<string>();
  // AlmaLinux OSV puts its CVE ids in `related` (no `aliases`), Ubuntu in `upstream`.
  for (const list of [r.aliases, r.upstream, r.related]) {
    for (const id of list ?? []) if (CVE_ID.test(id)) ids.add(id);
  }
  // Other ids only from `aliases`: `related` and `upstream` name different vulnerabilities.
  for (const id of r.aliases ?? []) if (id.length <= ADVISORY_LIMITS.id && ADVISORY_ID.test(id)) ids.add(id);
  ids.delete(r.id);
  return [...ids].sort().slice(0, ADVISORY_LIMITS.aliases);
}

function summaryOf(r: OsvRecord): string | null {
  const text = r.summary ?? r.details ?? null;
  if (text === null || text.trim() === '') return null;
  return text.length > ADVISORY_LIMITS.summary ? text.slice(0, ADVISORY_LIMITS.summary) : text;
}

/**
 * Parses one OSV record. Throws FeedFormatError when the record is refused; per-entry
 * problems go to `report` as warnings with stable codes.
 */
export function parseOsv(record: unknown, report: FeedReport, where = 'osv record'): Advisory {
  const parsed = OsvRecordSchema.safeParse(record);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    refuse(where, issue === undefined ? 'not an OSV record' : `${describe(issue.path)}: ${issue.message}`);
  }
  const r = parsed.data;
  if (r.id.length > ADVISORY_LIMITS.id || !ADVISORY_ID.test(r.id)) refuse(where, `id ${JSON.stringify(r.id.slice(0, 64))} is not a valid advisory id`);
  const at = `${where} ${r.id}`;
  const modified = date(at, 'modified', r.modified);
  const published = date(at, 'published', r.published);
  const withdrawn = date(at, 'withdrawn', r.withdrawn);

  const affected: AffectedPackage[] = [];
  let cvss: Severity = 'unknown';
  let word: Severity = 'unknown';
  const top = severityOf(r.severity, at, report);
  cvss = maxSeverity(cvss, top.cvss);
  word = maxSeverity(word, top.word);
  for (const a of r.affected ?? []) {
    const entry = affectedEntry(a, at, report);
    if (entry !== null) affected.push(entry);
    const own = severityOf(a.severity, at, report);
    cvss = maxSeverity(cvss, own.cvss);
    word = maxSeverity(word, own.word);
  }
  const dbSeverity = r.database_specific?.severity;
  const rating = SUMMARY_RATING.exec(r.summary ?? '');
  let severity: Severity = cvss;
  if (severity === 'unknown') severity = word;
  if (severity === 'unknown' && typeof dbSeverity === 'string') severity = severityFromWord(dbSeverity) ?? 'unknown';
  if (severity === 'unknown' && rating?.[1] !== undefined) severity = severityFromWord(rating[1]) ?? 'unknown';

  const advisory: Advisory = {
    source: OSV_SOURCE,
    id: r.id,
    aliases: aliasesOf(r),
    summary: summaryOf(r),
    severity,
    published,
    modified,
    affected,
    withdrawn,
  };
  // Every field was checked on the way in, so the result fits AdvisorySchema by
  // construction (the tests parse every real record's output with it); a second zod pass
  // here doubled the import time.
  return advisory;
}
