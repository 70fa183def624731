/**
 * `feed remove`: a feed, its advisories and its KEV entries go in one transaction with
 * the audit row that says who removed them, so the row is there exactly when the feed is
 * gone. A serving collector learns of it from the advisory change log
 * (collector/store/advisory-changes.ts) and re-judges the hosts the feed covered.
 */
import { PatchwardenError } from '../../shared/errors.ts';
import type { Db } from './db.ts';
import type { Fleet } from './fleet.ts';

export interface FeedRemoved {
  advisories: number;
  kev: number;
}

export function removeFeed(db: Db, fleet: Fleet, source: string, actor: string, now = new Date()): FeedRemoved {
  const known = db.prepare<[string], number>('SELECT 1 FROM feeds WHERE source = ?').pluck();
  const delAdvisories = db.prepare<[string]>('DELETE FROM advisories WHERE feed = ?');
  const delKev = db.prepare<[string]>('DELETE FROM kev WHERE feed = ?');
  const delFeed = db.prepare<[string]>('DELETE FROM feeds WHERE source = ?');
  return db
    .transaction((): FeedRemoved => {
      if (known.get(source) === undefined) throw new PatchwardenError(`no feed is named ${JSON.stringify(source)} (feed list shows the names)`, 'PW_ERR_FEED_UNKNOWN');
      const removed = { advisories: delAdvisories.run(source).changes, kev: delKev.run(source).changes };
      delFeed.run(source);
      fleet.audit.record(actor, 'feed.remove', `feed:${source}`, JSON.stringify(removed), now);
      return removed;
    })
    .immediate();
}
