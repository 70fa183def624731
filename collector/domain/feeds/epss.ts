/**
 * FIRST's Exploit Prediction Scoring System, the daily `epss_scores-YYYY-MM-DD.csv.gz`
 * (also published as `epss_scores-current.csv.gz`): a comment line
 * `#model_version:v2026.06.15,score_date:2026-09-29T12:00:22Z`, the header
 * `cve,epss,percentile`, then one line per CVE. The score is the probability of
 * exploitation activity in the next 30 days; the percentile ranks it among all scored CVEs.
 *
 * A score set is only meaningful whole (percentiles are relative to the day's set and a
 * CVE missing from today's file has no score today), so the store replaces the whole set
 * per import. Hence the file-level checks refuse the file (no comment line, a header in
 * another order: a line's numbers could be read as the wrong column), while a bad line
 * (not a CVE id, a score outside 0..1) is skipped with a warning and the rest is kept.
 */
import { FeedFormatError, InputTooLargeError } from '../../../shared/errors.ts';
import { normalizeDateTime } from './dates.ts';
import { CVE_ID, type FeedReport } from './types.ts';

export interface EpssEntry {
  cve: string;
  /** Probability of exploitation activity in the next 30 days, 0..1. */
  score: number;
  /** Rank among the day's scored CVEs, 0..1. */
  percentile: number;
}

/** A CVE's score and percentile, both 0..1, as findings carry them. */
export interface EpssScore {
  score: number;
  percentile: number;
}

export interface EpssSet {
  modelVersion: string;
  /** `Date#toISOString` form. */
  scoreDate: string;
  entries: EpssEntry[];
}

export const EPSS_LIMITS = Object.freeze({
  /** The 2026-09-29 file has about 320,000 CVEs; ten times that is not an EPSS file. */
  rows: 3_000_000,
});

export const EPSS_HEADER = 'cve,epss,percentile';
const COMMENT = /^#model_version:([A-Za-z0-9._-]{1,64}),score_date:([0-9T:.+Zz-]{10,40})$/;
/** Plain decimals as FIRST writes them (`0.00089`, `1.0`); exponents for any other writer's small scores. */
const NUMBER = /^(?:0|1)(?:\.\d{1,17})?(?:[eE]-\d{1,3})?$|^\d(?:\.\d{1,17})?[eE]-\d{1,3}$/;

/** The first line of an EPSS file: FIRST's comment, or the header of a file that lost it. */
export function looksLikeEpss(firstLine: string): boolean {
  return firstLine.startsWith('#model_version:') || firstLine.replace(/\s+/g, '').toLowerCase() === EPSS_HEADER;
}

function probability(text: string): number | null {
  if (!NUMBER.test(text)) return null;
  const n = Number(text);
  return Number.isFinite(n) && n >= 0 && n <= 1 ? n : null;
}

/**
 * The whole file's text -> the score set. Throws FeedFormatError when the comment line or
 * the header is missing or wrong, InputTooLargeError past EPSS_LIMITS.rows.
 */
export function parseEpssCsv(text: string, report: FeedReport, where = 'epss csv'): EpssSet {
  const lines = text.replace(/^\ufeff/, '').split('\n');
  let i = 0;
  const next = (): string | undefined => {
    while (i < lines.length) {
      const line = (lines[i++] as string).replace(/\r$/, '');
      if (line !== '') return line;
    }
    return undefined;
  };
  const comment = next();
  const m = comment === undefined ? null : COMMENT.exec(comment);
  if (m === null) {
    throw new FeedFormatError(`${where}: the first line is not FIRST's "#model_version:…,score_date:…" comment (${JSON.stringify((comment ?? '').slice(0, 80))}), so the scores' date and model are unknown`);
  }
  const modelVersion = m[1] as string;
  // Older files write the offset without a colon (`+0000`), which RFC 3339 does not allow.
  const scoreDate = normalizeDateTime((m[2] as string).replace(/([+-]\d{2})(\d{2})$/, '$1:$2'));
  if (scoreDate === null) throw new FeedFormatError(`${where}: score_date ${JSON.stringify((m[2] as string).slice(0, 40))} is not a date-time`);
  const header = next();
  if (header !== EPSS_HEADER) {
    throw new FeedFormatError(`${where}: the header is ${JSON.stringify((header ?? '').slice(0, 80))}, not ${JSON.stringify(EPSS_HEADER)}: columns in another order would be read as the wrong ones`);
  }
  const entries: EpssEntry[] = [];
  const seen = new Set<string>();
  // About 320,000 lines a day: nothing is allocated per good line beyond its fields and entry.
  const bad = (line: number, why: string): void => {
    report.warn(`${where}:${line}`, new FeedFormatError(`${why}; line skipped`));
    report.count('lines skipped');
  };
  for (; i < lines.length; i++) {
    let line = lines[i] as string;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line === '') continue;
    const fields = line.split(',');
    if (fields.length !== 3) {
      bad(i + 1, `${fields.length} fields, the header has 3`);
      continue;
    }
    const [cve, epss, pct] = fields as [string, string, string];
    if (cve.length > 32 || !CVE_ID.test(cve)) {
      bad(i + 1, `${JSON.stringify(cve.slice(0, 32))} is not a CVE id`);
      continue;
    }
    const score = probability(epss);
    if (score === null) {
      bad(i + 1, `${cve}: epss ${JSON.stringify(epss.slice(0, 32))} is not a number from 0 to 1`);
      continue;
    }
    const percentile = probability(pct);
    if (percentile === null) {
      bad(i + 1, `${cve}: percentile ${JSON.stringify(pct.slice(0, 32))} is not a number from 0 to 1`);
      continue;
    }
    if (seen.has(cve)) {
      bad(i + 1, `${cve} is listed twice; the first line is kept`);
      continue;
    }
    if (entries.length >= EPSS_LIMITS.rows) throw new InputTooLargeError(`${where}: more than ${EPSS_LIMITS.rows} scores`);
    seen.add(cve);
    entries.push({ cve, score, percentile });
  }
  report.count('EPSS scores', entries.length);
  return { modelVersion, scoreDate, entries };
}
