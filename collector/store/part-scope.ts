/**
 * What a store part rewritten on the shared executor (issue 12, step 2; POSTGRES.md) is made
 * from: the executor of its scope (the database, or the transaction it was made in), the
 * other parts in that same scope, a way to make several statements atomic, and state shared
 * by every scope of one store (a cache of its own must outlive a transaction's parts).
 *
 * A part is made per scope and holds nothing but its scope: `store.transaction(async (tx) =>
 * tx.agents...)` makes the transaction's own parts over its executor.
 */
import type { SqlExecutor } from './sql/executor.ts';
import type { AsyncStore } from './store.ts';

export interface PartScope {
  /** The database outside a transaction; the open transaction inside one. */
  readonly ex: SqlExecutor;
  /** Every part of the store, in this same scope (inside a transaction, that transaction's). */
  readonly store: AsyncStore;
  /**
   * Runs `fn` atomically: in a transaction of its own outside one, in a savepoint inside one
   * (rolled back alone when it rejects). `fn` runs statements only: PostgreSQL may run it again.
   */
  atomic<T>(fn: (scope: PartScope) => Promise<T>): Promise<T>;
  /** One value per store for `key`, made on first use and shared by all its scopes (a part's cache). */
  shared<T>(key: string, make: () => T): T;
}
