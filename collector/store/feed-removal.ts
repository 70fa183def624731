/**
 * `feed remove`: a feed, its advisories and its KEV entries go in one transaction with
 * the audit row that says who removed them, so the row is there exactly when the feed is
 * gone. A serving collector learns of it from the advisory change log
 * (collector/store/advisory-changes.ts) and re-judges the hosts the feed covered.
 */
import { PatchwardenError } from '../../shared/errors.ts';
import type { PartScope } from './part-scope.ts';
import { sql } from './sql/query.ts';

export interface FeedRemoved {
  advisories: number;
  kev: number;
}

const known = sql('SELECT 1 AS known FROM feeds WHERE source = ?');
const deleteAdvisories = sql('DELETE FROM advisories WHERE feed = ?');
const deleteKev = sql('DELETE FROM kev WHERE feed = ?');
// feed_coverage and epss_meta go with the row (ON DELETE CASCADE), and epss with epss_meta (its trigger).
const deleteFeed = sql('DELETE FROM feeds WHERE source = ?');

export function removeFeed(scope: PartScope, source: string, actor: string, now = new Date()): Promise<FeedRemoved> {
  return scope.atomic(async ({ ex, store }): Promise<FeedRemoved> => {
    if ((await ex.get(known, [source])) === undefined) throw new PatchwardenError(`no feed is named ${JSON.stringify(source)} (feed list shows the names)`, 'PW_ERR_FEED_UNKNOWN');
    const removed = { advisories: await ex.run(deleteAdvisories, [source]), kev: await ex.run(deleteKev, [source]) };
    await ex.run(deleteFeed, [source]);
    await store.audit.record(actor, 'feed.remove', `feed:${source}`, JSON.stringify(removed), now);
    return removed;
  });
}
