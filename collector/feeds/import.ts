/**
 * A whole feed path (file, directory or all.zip) -> everything in it, parsed: the pure
 * half of `feed import` and of `scan --feed PATH`. Each record's format is detected from
 * its content, so a directory may mix formats. Per-record problems (a refused record, a
 * record of no known format) are warnings in `report`; corruption of the container
 * (truncated gzip or zip, bad CRC) throws, and the caller keeps nothing from the path.
 */
import { FeedFormatError } from '../../shared/errors.ts';
import { detectFormat, type FeedFormat } from './detect.ts';
import { parseFeedRecord } from './parse.ts';
import { readFeedFile, type ReadOptions } from './reader.ts';
import { FeedReport, type Advisory, type KevEntry } from './types.ts';

export interface ParsedFeed {
  formats: FeedFormat[];
  advisories: Advisory[];
  kev: KevEntry[];
  report: FeedReport;
  /** The newest date in the data (advisory modified/published, KEV dateAdded), ISO; null when none has one. */
  newest: string | null;
}

export async function parseFeedPath(path: string, options: Omit<ReadOptions, 'report'> = {}): Promise<ParsedFeed> {
  const report = new FeedReport();
  const formats = new Set<FeedFormat>();
  const advisories: Advisory[] = [];
  const kev: KevEntry[] = [];
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
    } catch (err) {
      if (!(err instanceof FeedFormatError)) throw err;
      report.warn(name, err);
      report.count('records refused');
    }
  }
  return { formats: [...formats], advisories, kev, report, newest };
}
