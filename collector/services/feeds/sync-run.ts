/**
 * One run of feed syncs, shared by `feed sync` and the serving collector's schedule: each
 * source through syncFeed (the import path of `feed import`), one after the other so a
 * run's memory is one feed's, each outcome audited with the run's actor. One feed failing
 * (and keeping its last good data) never stops the others.
 */
import type { AsyncStore } from '../../store/store.ts';
import { syncFeed, type FeedSource, type SyncOptions, type SyncOutcome } from './sync.ts';

export interface SyncAudit {
  synced(url: string, outcome: SyncOutcome): Promise<void>;
}

export async function syncSources(
  store: AsyncStore['advisories'],
  sources: readonly FeedSource[],
  audit: SyncAudit,
  options: SyncOptions & { onOutcome?: (src: FeedSource, outcome: SyncOutcome) => void; optionsFor?: (src: FeedSource) => SyncOptions } = {},
): Promise<SyncOutcome[]> {
  const { onOutcome, optionsFor, ...common } = options;
  const outcomes: SyncOutcome[] = [];
  for (const src of sources) {
    const outcome = await syncFeed(store, src, { ...common, ...optionsFor?.(src) });
    await audit.synced(src.url, outcome);
    outcomes.push(outcome);
    onOutcome?.(src, outcome);
  }
  return outcomes;
}
