/**
 * Test helpers for the store. Tests only.
 */
import { createHash } from 'node:crypto';
import type { Db } from './db.ts';

/** Row counts and a hash of every row of the data tables, in key order (feeds left out: checked_at moves). */
export function dumpStore(db: Db): { advisories: number; affected: number; kev: number; sha256: string } {
  const h = createHash('sha256');
  const counts = { advisories: 0, affected: 0, kev: 0 };
  const queries = {
    advisories: 'SELECT * FROM advisories ORDER BY source, id',
    affected: 'SELECT * FROM affected ORDER BY source, id, ecosystem, package',
    kev: 'SELECT * FROM kev ORDER BY feed, cve',
  } as const;
  for (const [table, sql] of Object.entries(queries) as [keyof typeof queries, string][]) {
    for (const row of db.prepare(sql).iterate()) {
      h.update(JSON.stringify(row) + '\n');
      counts[table]++;
    }
  }
  return { ...counts, sha256: h.digest('hex') };
}
