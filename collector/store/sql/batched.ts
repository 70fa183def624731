/**
 * Many rows in few statements on PostgreSQL, the shape every set-based import shares: a
 * round trip per row is what makes a large write slow there (POSTGRES.md), and one statement
 * carrying a whole import of a few hundred MB would be slow to build and to parse, so rows go
 * down a batch at a time, each column of a batch as one array parameter (`unnest(?::text[], …)`).
 */
import type { SqlExecutor, SqlValue } from './executor.ts';
import type { Query } from './query.ts';

/** One array parameter of a set-based statement: what a row gives for one column. */
export type Column<T> = (row: T) => string | null;

/**
 * Runs `statement` once per `size` rows. Its parameters are `leading` (the same for every
 * batch: a feed's name, say), then one array per column, in the order of `columns`.
 */
export async function putBatched<T>(ex: SqlExecutor, statement: Query, rows: readonly T[], size: number, columns: readonly Column<T>[], leading: readonly SqlValue[] = []): Promise<void> {
  for (let i = 0; i < rows.length; i += size) {
    const batch = rows.slice(i, i + size);
    await ex.run(statement, [...leading, ...columns.map((c) => batch.map(c))]);
  }
}

/** What upsertBatched needs to know of one table. */
export interface BatchedUpsert<T, S> {
  /** Rows (and keys read) a statement carries. */
  size: number;
  key(item: T): string;
  /** Reads the stored rows under a batch of items' keys (`readParams` gives its parameters); `storedKey` keys them as `key` keys items. */
  read: Query;
  readParams(batch: readonly T[]): SqlValue[];
  storedKey(row: S): string;
  /**
   * Counts an item against what is stored under its key at that point of the import (an
   * earlier copy of the key in the same import included): what is stored under the key
   * after it when it is to be written, undefined when it changes nothing.
   */
  judge(old: S | undefined, item: T): S | undefined;
  /** The set-based write: `leading`, then one array per column (putBatched). */
  write: Query;
  leading?: readonly SqlValue[];
  columns: readonly Column<T>[];
}

/**
 * Upserts `items` set-based, deciding added, updated and unchanged as SQLite's loop of one
 * statement per row does over the same items: in their order, each judged against what
 * its key holds by then. A key given twice is compared with its first copy's write and its
 * last written copy is stored, once (one statement may not change a row twice).
 */
export async function upsertBatched<T, S>(ex: SqlExecutor, items: readonly T[], spec: BatchedUpsert<T, S>): Promise<void> {
  const stored = new Map<string, S>();
  for (let i = 0; i < items.length; i += spec.size) {
    for (const r of await ex.all<S>(spec.read, spec.readParams(items.slice(i, i + spec.size)))) stored.set(spec.storedKey(r), r);
  }
  const writes = new Map<string, T>();
  for (const item of items) {
    const key = spec.key(item);
    const after = spec.judge(stored.get(key), item);
    if (after === undefined) continue;
    stored.set(key, after);
    writes.set(key, item);
  }
  await putBatched(ex, spec.write, [...writes.values()], spec.size, spec.columns, spec.leading);
}
