/**
 * The SQLite side of executor.ts over better-sqlite3: each query prepared once on first use,
 * answered synchronously inside a promise. One connection, so a transaction holds it: other
 * callers' statements and transactions wait their turn (a queue, not a busy retry).
 */
import type { Statement } from 'better-sqlite3';
import type { Db } from '../db.ts';
import type { SqlDatabase, SqlParams, SqlTransaction } from './executor.ts';
import { type Query, sqliteText } from './query.ts';

export class SqliteDatabase implements SqlDatabase {
  readonly dialect = 'sqlite' as const;
  readonly #db: Db;
  readonly #statements = new Map<string, Statement>();
  /** Settles when the open transaction ends; null when none is open. */
  #busy: Promise<void> | null = null;

  constructor(db: Db) {
    this.#db = db;
  }

  /** Cached by text: the name is PostgreSQL's, and two queries may share a PostgreSQL text but not a SQLite one. */
  #statement(query: Query): Statement {
    const text = sqliteText(query);
    let s = this.#statements.get(text);
    if (s === undefined) {
      s = this.#db.prepare(text);
      this.#statements.set(text, s);
    }
    return s;
  }

  #get(query: Query, params: SqlParams): unknown {
    return this.#statement(query).get(...params);
  }

  #all<R>(query: Query, params: SqlParams): R[] {
    return this.#statement(query).all(...params) as R[];
  }

  #run(query: Query, params: SqlParams): number {
    const s = this.#statement(query);
    return s.reader ? s.all(...params).length : s.run(...params).changes;
  }

  /**
   * Settles when the open transaction ends; null when none is open. For statements that do
   * not come through here (the SQLite store's health probe, store.ts)
   * to wait their turn as these do.
   */
  turn(): Promise<void> | null {
    return this.#busy;
  }

  async get<R>(query: Query, params: SqlParams = []): Promise<R | undefined> {
    // Checked again after every wait, with no await between the check and the statement.
    while (this.#busy !== null) await this.#busy;
    return this.#get(query, params) as R | undefined;
  }

  async all<R>(query: Query, params: SqlParams = []): Promise<R[]> {
    while (this.#busy !== null) await this.#busy;
    return this.#all<R>(query, params);
  }

  async run(query: Query, params: SqlParams = []): Promise<number> {
    while (this.#busy !== null) await this.#busy;
    return this.#run(query, params);
  }

  async transaction<T>(fn: (tx: SqlTransaction) => Promise<T>): Promise<T> {
    // No await between the last check and taking the turn: another waiter woken by the same
    // end would otherwise take it too, and BEGIN inside an open transaction fails.
    while (this.#busy !== null) await this.#busy;
    let end!: () => void;
    this.#busy = new Promise((resolve) => (end = resolve));
    let open = true;
    // A statement after the end would run outside the transaction, or inside someone else's.
    const settle = <V>(f: () => V): Promise<V> => {
      try {
        if (!open) throw new Error('statement on a transaction that has ended');
        return Promise.resolve(f());
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    };
    let savepoints = 0;
    const tx: SqlTransaction = {
      dialect: 'sqlite',
      get: <R>(q: Query, p: SqlParams = []) => settle(() => this.#get(q, p) as R | undefined),
      all: <R>(q: Query, p: SqlParams = []) => settle(() => this.#all<R>(q, p)),
      run: (q: Query, p: SqlParams = []) => settle(() => this.#run(q, p)),
      savepoint: async <V>(f: () => Promise<V>): Promise<V> => {
        const name = `pw_${++savepoints}`;
        await settle(() => this.#db.exec(`SAVEPOINT ${name}`));
        try {
          const value = await f();
          this.#db.exec(`RELEASE ${name}`);
          return value;
        } catch (err) {
          if (open) this.#db.exec(`ROLLBACK TO ${name}; RELEASE ${name}`);
          throw err;
        }
      },
    };
    try {
      // IMMEDIATE: the write lock at the start, so another process's writer makes this wait
      // (busy_timeout) at BEGIN rather than fail at its first write.
      this.#db.exec('BEGIN IMMEDIATE');
      try {
        const value = await fn(tx);
        this.#db.exec('COMMIT');
        return value;
      } catch (err) {
        if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
        throw err;
      }
    } finally {
      open = false;
      this.#busy = null;
      end();
    }
  }

  close(): Promise<void> {
    this.#db.close();
    return Promise.resolve();
  }
}
