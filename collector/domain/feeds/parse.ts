/**
 * One record of any supported format -> what the store keeps: advisories or KEV entries.
 * The import loop is readFeedFile -> detectFormat (on the first record) -> parseFeedRecord
 * for each record, one transaction per file. Throws FeedFormatError when the record is
 * refused; per-entry problems are warnings in `report`.
 */
import { parseAlpineSecdb } from './alpine-secdb.ts';
import { parseCsafRecord } from './csaf.ts';
import { parseDebianDsaList } from './debian-dsa-list.ts';
import { parseDebianTracker } from './debian-tracker.ts';
import { parseEpssCsv, type EpssSet } from './epss.ts';
import type { FeedFormat } from './detect.ts';
import { parseKevCsv, parseKevJson } from './kev.ts';
import { advisoriesWithoutNul, kevWithoutNul } from './nul.ts';
import { parseOsv } from './osv.ts';
import { parseUbuntuOval } from './ubuntu-oval.ts';
import { FeedFormatError } from '../../../shared/errors.ts';
import type { Advisory, FeedReport, KevEntry } from './types.ts';

export interface ParsedRecord {
  advisories: Advisory[];
  kev: KevEntry[];
  /** A FIRST EPSS score set: only an EPSS file has one. */
  epss?: EpssSet;
}

function text(record: unknown, name: string): string {
  if (typeof record !== 'string') throw new FeedFormatError(`${name}: expected a text feed`);
  return record;
}

/** Every record of every format passes here on its way to a store: held to the U+0000 rule (nul.ts) once, for all formats. */
export function parseFeedRecord(format: FeedFormat, record: unknown, report: FeedReport, name: string): ParsedRecord {
  const parsed = parseAny(format, record, report, name);
  return { ...parsed, advisories: advisoriesWithoutNul(parsed.advisories, report, name), kev: kevWithoutNul(parsed.kev, report, name) };
}

function parseAny(format: FeedFormat, record: unknown, report: FeedReport, name: string): ParsedRecord {
  switch (format) {
    case 'osv':
      return { advisories: [parseOsv(record, report, name)], kev: [] };
    case 'alpine-secdb':
      return { advisories: parseAlpineSecdb(record, report, name), kev: [] };
    case 'debian-tracker':
      return { advisories: parseDebianTracker(record, report, name), kev: [] };
    case 'debian-dsa-list':
      return { advisories: parseDebianDsaList(text(record, name), report, name), kev: [] };
    case 'kev-json':
      return { advisories: [], kev: parseKevJson(record, report, name) };
    case 'kev-csv':
      return { advisories: [], kev: parseKevCsv(text(record, name), report, name) };
    case 'epss-csv':
      return { advisories: [], kev: [], epss: parseEpssCsv(text(record, name), report, name) };
    case 'csaf':
      return { advisories: parseCsafRecord(record, report, name), kev: [] };
    case 'ubuntu-oval':
      return { advisories: parseUbuntuOval(text(record, name), report, name), kev: [] };
  }
}
