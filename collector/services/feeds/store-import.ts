/**
 * `feed import` and `feed sync` share this: parse a whole path first, then store it in
 * one transaction. A path that fails to parse (corrupt gzip or zip, unreadable) stores
 * nothing and records the error on the feed, so the last good data stays and
 * `feed list` says what went wrong.
 */
import { basename } from 'node:path';
import { errorMessage } from '../../../shared/errors.ts';
import type { Correlator } from '../../domain/correlate/correlator.ts';
import type { AsyncStore } from '../../store/store.ts';
import type { EpssImport } from '../../store/epss.ts';
import { checkFeedName } from '../../domain/feeds/feed-name.ts';
import { parseFeedPath, type ParsedFeed } from './import.ts';

export interface FeedImportResult {
  source: string;
  formats: string[];
  advisories: { added: number; updated: number; unchanged: number };
  kev: { added: number; updated: number; unchanged: number };
  /** An EPSS score file's import: the set it stored, or null for any other feed. */
  epss: (EpssImport & { scoreDate: string; modelVersion: string }) | null;
  warnings: number;
  parsed: ParsedFeed;
}

/** A feed's name: what the operator called it, else the file name; either way it must pass the one rule (PW_ERR_FEED_NAME). */
export function feedName(path: string, name?: string): string {
  if (name !== undefined) return checkFeedName(name, 'from --name');
  return checkFeedName(basename(path.replace(/\/+$/, '')), 'the file name: give the feed one with --name');
}

export async function importFeedPath(
  store: AsyncStore['advisories'],
  path: string,
  options: { name?: string; location?: string; correlator?: Correlator; now?: Date } = {},
): Promise<FeedImportResult> {
  const source = feedName(path, options.name);
  const location = options.location ?? path;
  let parsed: ParsedFeed;
  try {
    parsed = await parseFeedPath(path);
  } catch (err) {
    await store.recordFeedError({ source, kind: 'unknown', location }, errorMessage(err), options.now);
    throw err;
  }
  const feed = { source, kind: parsed.formats.join('+') || 'empty', location };
  if (parsed.epss !== null) {
    const set = parsed.epss;
    const epss = await store.importEpss(feed, set, options.now);
    return {
      source,
      formats: parsed.formats,
      advisories: { added: 0, updated: 0, unchanged: 0 },
      kev: { added: 0, updated: 0, unchanged: 0 },
      epss: { ...epss, scoreDate: set.scoreDate, modelVersion: set.modelVersion },
      warnings: parsed.report.warningCount(),
      parsed,
    };
  }
  const { advisories, kev } = await store.importFeed(feed, parsed.advisories, parsed.kev, options.now);
  options.correlator?.apply(advisories.changed);
  return {
    source,
    formats: parsed.formats,
    advisories: { added: advisories.added, updated: advisories.updated, unchanged: advisories.unchanged },
    kev,
    epss: null,
    warnings: parsed.report.warningCount(),
    parsed,
  };
}
