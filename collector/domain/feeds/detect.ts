/**
 * Which parser a feed record needs, from its content (names lie: `list`, `data.json`,
 * `all.zip` entries). `name` is only for the message when nothing fits. The record is
 * what readFeedFile yields: a parsed JSON value, or the whole text of a text feed.
 */
import { FeedFormatError } from '../../../shared/errors.ts';
import { looksLikeXml } from './ubuntu-oval.ts';
import { looksLikeEpss } from './epss.ts';

export type FeedFormat = 'osv' | 'alpine-secdb' | 'debian-tracker' | 'debian-dsa-list' | 'kev-json' | 'kev-csv' | 'csaf' | 'epss-csv' | 'ubuntu-oval';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function firstLine(text: string): string {
  for (const line of text.replace(/^\ufeff/, '').split('\n', 50)) if (line.trim() !== '') return line.replace(/\r$/, '');
  return '';
}

export function detectFormat(name: string, firstRecord: unknown): FeedFormat {
  if (typeof firstRecord === 'string') {
    // OVAL is the only XML feed; ubuntu-oval.ts refuses OVAL that is not Canonical's.
    if (looksLikeXml(firstRecord)) return 'ubuntu-oval';
    const line = firstLine(firstRecord);
    if (/^\[[^\]]+\]\s+(DSA|DLA|DTSA)-\d+/.test(line)) return 'debian-dsa-list';
    if (looksLikeEpss(line)) return 'epss-csv';
    const columns = line.split(',');
    if (columns.includes('cveID') && columns.includes('dateAdded') && columns.includes('dueDate')) return 'kev-csv';
  } else if (isObject(firstRecord)) {
    const r = firstRecord;
    if (Array.isArray(r.vulnerabilities) && (typeof r.catalogVersion === 'string' || typeof r.dateReleased === 'string')) return 'kev-json';
    if (typeof r.distroversion === 'string' && 'packages' in r) return 'alpine-secdb';
    if (isObject(r.document) && typeof r.document.csaf_version === 'string') return 'csaf';
    if (typeof r.id === 'string' && typeof r.modified === 'string') return 'osv';
    // package -> {CVE -> {releases}}: look at the first issue of the first package.
    for (const issues of Object.values(r)) {
      if (!isObject(issues)) break;
      const issue = Object.values(issues)[0];
      if (isObject(issue) && 'releases' in issue) return 'debian-tracker';
      break;
    }
  }
  throw new FeedFormatError(`${name}: not a feed format this collector reads (OSV, CSAF, Ubuntu OVAL, Alpine secdb, Debian tracker JSON, DSA/DLA list, KEV JSON or CSV, FIRST EPSS CSV)`);
}
