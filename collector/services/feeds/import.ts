/**
 * A whole feed path (file, directory or all.zip) -> everything in it, parsed: the pure
 * half of `feed import` and of `scan --feed PATH`. Each record's format is detected from
 * its content, so a directory may mix formats. Per-record problems (a refused record, a
 * record of no known format) are warnings in `report`; corruption of the container
 * (truncated gzip or zip, bad CRC) throws, and the caller keeps nothing from the path.
 * So does a path that gives nothing usable (no record of a known format, or every record
 * refused): a garbage file or an empty directory must not pass as a feed that is empty
 * today, and the caller keeps the feed's last good data.
 */
import { FeedFormatError, InputTooLargeError, type PatchwardenError } from '../../../shared/errors.ts';
import { detectFormat, type FeedFormat } from '../../domain/feeds/detect.ts';
import type { EpssSet } from '../../domain/feeds/epss.ts';
import { parseFeedRecord } from '../../domain/feeds/parse.ts';
import { readFeedFile, type ReadOptions } from './reader.ts';
import { FeedReport, type Advisory, type KevEntry } from '../../domain/feeds/types.ts';

export interface ParsedFeed {
  formats: FeedFormat[];
  advisories: Advisory[];
  kev: KevEntry[];
  /** A FIRST EPSS score set, when the path is one; the store replaces its whole set with it. */
  epss: EpssSet | null;
  report: FeedReport;
  /** The newest date in the data (advisory modified/published, KEV dateAdded), ISO; null when none has one. */
  newest: string | null;
}

export async function parseFeedPath(path: string, options: Omit<ReadOptions, 'report'> = {}): Promise<ParsedFeed> {
  const report = new FeedReport();
  const formats = new Set<FeedFormat>();
  const advisories: Advisory[] = [];
  const kev: KevEntry[] = [];
  let epss: EpssSet | null = null;
  let newest: string | null = null;
  const seen = (date: string | null): void => {
    if (date !== null && (newest === null || date > newest)) newest = date;
  };
  for await (const { name, record } of readFeedFile(path, { ...options, report })) {
    try {
      const format = detectFormat(name, record);
      formats.add(format);
      const parsed = parseFeedRecord(format, record, report, name);
      for (const a of parsed.advisories) {
        advisories.push(a);
        seen(a.modified ?? a.published);
      }
      for (const k of parsed.kev) {
        kev.push(k);
        seen(`${k.dateAdded}T00:00:00.000Z`);
      }
      if (parsed.epss !== undefined) {
        // One set replaces the stored one whole: two in one path cannot both be it.
        if (epss !== null) throw new FeedFormatError(`${name}: a second EPSS score file in one feed path; import them one at a time`);
        epss = parsed.epss;
        seen(epss.scoreDate);
      }
    } catch (err) {
      if (!(err instanceof FeedFormatError)) throw err;
      report.warn(name, err);
      report.count('records refused');
    }
  }
  const scores = epss?.entries.length ?? 0;
  // The store replaces the whole score set per feed import: mixed with advisories, a partial refusal could not be told apart.
  if (scores > 0 && (advisories.length > 0 || kev.length > 0)) throw new FeedFormatError(`${path}: an EPSS score file is a feed of its own; import it apart from advisories and KEV`);
  if (advisories.length === 0 && kev.length === 0 && scores === 0 && (formats.size === 0 || report.warningCount() > 0)) throw nothingUsable(path, report);
  return { formats: [...formats], advisories, kev, epss, report, newest };
}

/** The refusal carries the first problem's code when it was a size limit, so `feed list` and scripts can tell it. */
function nothingUsable(path: string, report: FeedReport): PatchwardenError {
  const first = report.warnings[0];
  const counted = [...report.counts].map(([what, n]) => `${n} ${what}`).join(', ');
  const why =
    first === undefined
      ? `no record of a known format${counted === '' ? '' : ` (${counted})`}`
      : `${report.warningCount()} problem(s), the first: ${first.source}: ${first.message} (${first.code})`;
  const message = `${path}: nothing usable, refused: ${why}`;
  return first?.code === 'PW_ERR_INPUT_TOO_LARGE' ? new InputTooLargeError(message) : new FeedFormatError(message);
}
