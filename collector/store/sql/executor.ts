/**
 * What a store module needs of a database, the same for SQLite and PostgreSQL (issue 12,
 * collector/store/POSTGRES.md): run a shared query definition (query.ts) and get rows,
 * one row or a change count, inside or outside a transaction. Asynchronous because
 * PostgreSQL is; the SQLite side answers from better-sqlite3's synchronous calls.
 */
import type { Dialect, Query } from './query.ts';

/** Arrays are for PostgreSQL only (`unnest(?::text[])`: many rows in one statement; a null element is SQL NULL); SQLite refuses them. */
export type SqlValue = string | number | bigint | Buffer | null | readonly (string | null)[];
export type SqlParams = readonly SqlValue[];

export interface SqlExecutor {
  readonly dialect: Dialect;
  get<R>(query: Query, params?: SqlParams): Promise<R | undefined>;
  all<R>(query: Query, params?: SqlParams): Promise<R[]>;
  /** Rows changed by an INSERT, UPDATE or DELETE. */
  run(query: Query, params?: SqlParams): Promise<number>;
}

/** The executor of an open transaction. */
export interface SqlTransaction extends SqlExecutor {
  /**
   * Runs `fn` in a savepoint: when its promise rejects, what it did is rolled back alone and
   * the error passed on, and the transaction goes on (a refused report in a batch of them).
   */
  savepoint<T>(fn: () => Promise<T>): Promise<T>;
}

export interface SqlDatabase extends SqlExecutor {
  /**
   * Runs `fn` in one transaction: committed when its promise resolves, rolled back when it
   * rejects (and the error passed on). Statements inside go through `tx` only; on SQLite,
   * whose one connection would otherwise take other callers' statements into the open
   * transaction, every other statement waits for it to end.
   */
  transaction<T>(fn: (tx: SqlTransaction) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
