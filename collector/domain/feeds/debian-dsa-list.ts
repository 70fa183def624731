/**
 * The Debian security tracker's advisory lists (`data/DSA/list`, `data/DLA/list`,
 * `data/DTSA/list`) -> one advisory per DSA/DLA/DTSA, id as written (`DSA-5380-1`,
 * `DSA-141`), ranges per release from its fix lines:
 *
 *   [29 Mar 2023] DSA-5380-1 xorg-server - security update
 *   	{CVE-2023-1393}
 *   	[bullseye] - xorg-server 2:1.20.11-1+deb11u6
 *   	[woody] - tcpdump <not-affected> (not affected according to DSA)
 *   	NOTE: ...
 *
 * Fix lines: a version -> affected below it; `<not-affected>` -> notAffected;
 * `<unfixed>`, `<end-of-life>`, `<no-dsa>`, `<ignored>`, `<postponed>` -> affected with no
 * fix. Old entries carry the urgency in the note (`(medium)`, `(bug #332424; high)`): it
 * is the severity. Entries without any fix line (key-change and end-of-life notices,
 * `DSA-2819-1 iceape - several`) describe no package state and give no advisory; they
 * are counted as `entries without fixes`. Headers use `29 Mar 2023` (DSA, DLA) or
 * `August 26th, 2005` (DTSA); an entry whose date is neither is refused with a warning.
 */
import { FeedFormatError, FeedUnsupportedError, InvalidVersionError } from '../../../shared/errors.ts';
import { PACKAGE_NAME } from '../../../shared/protocol.ts';
import { debianEcosystem } from './debian-releases.ts';
import { debianVersionProblem } from './debian-tracker.ts';
import { maxSeverity, severityFromWord } from './severity.ts';
import { ADVISORY_LIMITS, CVE_ID, type Advisory, type AffectedPackage, type FeedReport, type Severity } from './types.ts';

export const DEBIAN_DSA_LIST_SOURCE = 'debian-dsa-list';

const HEADER = /^\[([^\]]+)\]\s+((?:DSA|DLA|DTSA)-\d+(?:-\d+)?)\s*(.*)$/;
const FIX = /^\[([a-z][a-z0-9-]*)\]\s+-\s+(\S+)(?:\s+(\S+))?\s*(.*)$/;
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const UNFIXED_TAGS = new Set(['<unfixed>', '<end-of-life>', '<no-dsa>', '<ignored>', '<postponed>']);

/** `29 Mar 2023` or `August 26th, 2005` -> `2023-03-29T00:00:00.000Z`; null when it is neither or no such day. */
export function parseListDate(text: string): string | null {
  let day: number;
  let month: number;
  let year: number;
  let m = /^(\d{1,2}) ([A-Za-z]{3}) (\d{4})$/.exec(text.trim());
  if (m !== null) {
    day = Number(m[1]);
    month = MONTHS.indexOf((m[2] ?? '').toLowerCase());
    year = Number(m[3]);
  } else {
    m = /^([A-Za-z]+) (\d{1,2})(?:st|nd|rd|th)?, (\d{4})$/.exec(text.trim());
    if (m === null) return null;
    month = MONTHS.indexOf((m[1] ?? '').slice(0, 3).toLowerCase());
    day = Number(m[2]);
    year = Number(m[3]);
  }
  if (month < 0 || year < 1990) return null;
  const d = new Date(Date.UTC(year, month, day));
  if (d.getUTCDate() !== day || d.getUTCMonth() !== month) return null;
  return d.toISOString();
}

interface Draft {
  id: string;
  where: string;
  published: string | null;
  title: string;
  cves: Set<string>;
  affected: AffectedPackage[];
  severity: Severity;
}

function finish(d: Draft | null, out: Advisory[], report: FeedReport): void {
  if (d === null) return;
  if (d.published === null) return;
  if (d.affected.length === 0) {
    report.count('entries without fixes');
    return;
  }
  out.push({
    source: DEBIAN_DSA_LIST_SOURCE,
    id: d.id,
    aliases: [...d.cves].sort().slice(0, ADVISORY_LIMITS.aliases),
    summary: d.title === '' ? null : d.title.slice(0, ADVISORY_LIMITS.summary),
    severity: d.severity,
    published: d.published,
    modified: null,
    affected: d.affected,
    withdrawn: null,
  });
}

function fixLine(d: Draft, line: string, where: string, report: FeedReport): void {
  const m = FIX.exec(line);
  if (m === null) {
    report.warn(where, new FeedFormatError(`${d.id}: fix line ${JSON.stringify(line.slice(0, 100))} is not "[release] - package version"`));
    return;
  }
  const [, codename = '', pkg = '', version, note = ''] = m;
  const ecosystem = debianEcosystem(codename);
  if (ecosystem === null) {
    report.warn(where, new FeedUnsupportedError(`${d.id}: release ${JSON.stringify(codename)} is not a known Debian codename; line skipped`));
    return;
  }
  if (pkg.length > ADVISORY_LIMITS.name || !PACKAGE_NAME.test(pkg)) {
    report.warn(where, new FeedFormatError(`${d.id}: ${JSON.stringify(pkg.slice(0, 64))} is not a source package name; line skipped`));
    return;
  }
  const base = { ecosystem, package: pkg, versions: [] };
  if (version === undefined) {
    report.warn(where, new FeedFormatError(`${d.id}: ${pkg} in ${codename} has no version; line skipped`));
    return;
  }
  if (version === '<not-affected>') {
    d.affected.push({ ...base, ranges: [], notAffected: true });
  } else if (UNFIXED_TAGS.has(version)) {
    d.affected.push({ ...base, ranges: [{ introduced: '0', fixed: null, lastAffected: null }], notAffected: false });
  } else if (version.startsWith('<')) {
    report.warn(where, new FeedUnsupportedError(`${d.id}: tag ${JSON.stringify(version.slice(0, 32))} is not known; line skipped`));
    return;
  } else {
    const problem = debianVersionProblem(version);
    if (problem !== null) {
      report.warn(where, new InvalidVersionError(`${d.id}: ${JSON.stringify(version.slice(0, 64))} is not a Debian version (${problem}); line skipped`));
      return;
    }
    d.affected.push({ ...base, ranges: [{ introduced: '0', fixed: version, lastAffected: null }], notAffected: false });
  }
  // Old entries note the urgency: "(medium)", "(bug #332424; medium)".
  for (const word of note.replace(/[()]/g, '').split(/[;,\s]+/)) {
    const s = severityFromWord(word);
    if (s !== null && /^(low|medium|high)$/i.test(word)) d.severity = maxSeverity(d.severity, s);
  }
}

/**
 * Parses one DSA/DLA/DTSA list. Never throws for content: a line it cannot read is a
 * warning and the entry goes on; an entry with a bad date is refused with a warning.
 * Counters: `entries`, `entries without fixes`.
 */
export function parseDebianDsaList(text: string, report: FeedReport, where = 'debian advisory list'): Advisory[] {
  const out: Advisory[] = [];
  let draft: Draft | null = null;
  const lines = text.split('\n');
  for (const [index, raw] of lines.entries()) {
    const at = `${where}:${index + 1}`;
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '') continue;
    if (!/^\s/.test(line)) {
      finish(draft, out, report);
      draft = null;
      const h = HEADER.exec(line);
      if (h === null) {
        report.warn(at, new FeedFormatError(`${JSON.stringify(line.slice(0, 100))} is not an advisory header "[date] DSA-N-M package - title"`));
        continue;
      }
      report.count('entries');
      const [, dateText = '', id = '', title = ''] = h;
      const published = parseListDate(dateText);
      if (published === null) report.warn(at, new FeedFormatError(`${id}: date ${JSON.stringify(dateText.slice(0, 40))} is not a date; entry refused`));
      draft = { id, where: at, published, title: title.trim(), cves: new Set(), affected: [], severity: 'unknown' };
      continue;
    }
    if (draft === null) {
      report.warn(at, new FeedFormatError('indented line before any advisory header; skipped'));
      continue;
    }
    const body = line.trim();
    if (body.startsWith('{')) {
      for (const token of body.replace(/[{}]/g, ' ').split(/\s+/)) {
        if (token === '') continue;
        if (CVE_ID.test(token)) draft.cves.add(token);
        else report.warn(at, new FeedFormatError(`${draft.id}: ${JSON.stringify(token.slice(0, 64))} is not a CVE id`));
      }
    } else if (body.startsWith('[')) {
      fixLine(draft, body, at, report);
    } else if (!body.startsWith('NOTE:')) {
      report.warn(at, new FeedFormatError(`${draft.id}: line ${JSON.stringify(body.slice(0, 100))} is not a CVE list, fix line or NOTE; skipped`));
    }
  }
  finish(draft, out, report);
  return out;
}
