/**
 * Transactions for services whose one step writes through several stores (a rollout step
 * and its audit row, a host's findings and its counts), so they hold no connection.
 * A call inside another becomes a savepoint: it rolls back alone and the outer one goes on.
 */
import type { Db } from './db.ts';

export class Transactions {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  /** `fn`'s writes commit together or not at all. */
  run<T>(fn: () => T): T {
    return this.#db.transaction(fn)();
  }

  /**
   * As run, but takes the write lock at the start (BEGIN IMMEDIATE): a step that reads and
   * then writes waits for another process's writer (busy_timeout) instead of failing with
   * SQLITE_BUSY after its reads.
   */
  runImmediate<T>(fn: () => T): T {
    return this.#db.transaction(fn).immediate();
  }

  /** `fn` made once into a function that runs each call in a transaction, for hot paths. */
  wrap<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
    return this.#db.transaction(fn);
  }
}
