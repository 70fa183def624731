/**
 * The PostgreSQL side of executor.ts over `pg`: a pool of connections, each preparing a
 * query once by its name (query.ts), and a transaction on one connection taken from the pool.
 */
import pg from 'pg';
import type { SqlDatabase, SqlExecutor, SqlParams, SqlTransaction } from './executor.ts';
import type { Query } from './query.ts';

/**
 * Counts (`count(*)`) and bigint columns come back as numbers, as from SQLite, not as
 * strings; the store's integers (counts, row ids, sizes) stay far below 2^53.
 */
const TYPES = new pg.TypeOverrides();
TYPES.setTypeParser(pg.types.builtins.INT8, Number);

/** SQLSTATEs of a transaction that lost to a concurrent one: 40001 serialization failure, 40P01 deadlock, 23505 unique, 23503 foreign key. */
const RETRYABLE = new Set(['40001', '40P01', '23505', '23503']);
const RETRIES = 3;

/**
 * Whether `err` is PostgreSQL refusing a statement for a concurrent transaction's sake (the
 * codes `transaction` runs again for), and how many times to run it again: for a store part
 * that runs one data-modifying statement on its own, outside a transaction, where nothing
 * else would (reports.ts's ingest on PostgreSQL).
 */
export function lostToConcurrent(err: unknown): boolean {
  return RETRYABLE.has((err as { code?: unknown } | null)?.code as string);
}
export const CONCURRENT_RETRIES = RETRIES;

export interface PostgresOptions {
  url: string;
  /** Connections in the pool. Default 10. */
  max?: number;
  /** How long a request may wait for a connection before it fails. Default 10 s. */
  connectionTimeoutMs?: number;
}

async function query(client: pg.Pool | pg.PoolClient, q: Query, params: SqlParams): Promise<pg.QueryResult> {
  return client.query({ name: q.name, text: q.postgres, values: params as unknown[] });
}

function executor(client: pg.Pool | pg.PoolClient, live: () => boolean): SqlExecutor {
  const on = (): pg.Pool | pg.PoolClient => {
    if (!live()) throw new Error('statement on a transaction that has ended');
    return client;
  };
  return {
    dialect: 'postgres',
    get: async <R>(q: Query, p: SqlParams = []) => (await query(on(), q, p)).rows[0] as R | undefined,
    all: async <R>(q: Query, p: SqlParams = []) => (await query(on(), q, p)).rows as R[],
    run: async (q: Query, p: SqlParams = []) => (await query(on(), q, p)).rowCount ?? 0,
  };
}

export class PostgresDatabase implements SqlDatabase {
  readonly dialect = 'postgres' as const;
  readonly #pool: pg.Pool;
  readonly #direct: SqlExecutor;

  constructor(options: PostgresOptions) {
    this.#pool = new pg.Pool({
      connectionString: options.url,
      max: options.max ?? 10,
      connectionTimeoutMillis: options.connectionTimeoutMs ?? 10_000,
      types: TYPES,
    });
    // An idle connection the server drops (a restart) is an 'error' on the pool: without a
    // listener that is an uncaught exception; the pool replaces the connection by itself.
    this.#pool.on('error', () => undefined);
    // The same for a connection that is checked out when it drops: the query under way
    // rejects with the cause, which is what the caller sees.
    this.#pool.on('connect', (client) => client.on('error', () => undefined));
    this.#direct = executor(this.#pool, () => true);
  }

  get<R>(q: Query, params: SqlParams = []): Promise<R | undefined> {
    return this.#direct.get<R>(q, params);
  }

  all<R>(q: Query, params: SqlParams = []): Promise<R[]> {
    return this.#direct.all<R>(q, params);
  }

  run(q: Query, params: SqlParams = []): Promise<number> {
    return this.#direct.run(q, params);
  }

  /**
   * As SqlDatabase.transaction, and run again (up to RETRIES times) when PostgreSQL refuses it
   * for another transaction's sake, which SQLite's one writer never meets: a deadlock or a
   * serialization failure, or a unique or foreign-key conflict with a transaction that
   * committed meanwhile (two agents storing the same new inventory; a prune deleting the
   * inventory a report being stored names). So `fn` must be safe to run again: statements
   * only, no effects outside the database. A real conflict fails again and is passed on.
   */
  async transaction<T>(fn: (tx: SqlTransaction) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#once(fn);
      } catch (err) {
        if (attempt > RETRIES || !RETRYABLE.has((err as { code?: unknown }).code as string)) throw err;
      }
    }
  }

  async #once<T>(fn: (tx: SqlTransaction) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let open = true;
    let broken: Error | undefined;
    try {
      await client.query('BEGIN').catch((err: unknown) => {
        broken = err as Error;
        throw err;
      });
      try {
        let savepoints = 0;
        const tx: SqlTransaction = {
          ...executor(client, () => open),
          savepoint: async <V>(f: () => Promise<V>): Promise<V> => {
            const name = `pw_${++savepoints}`;
            await client.query(`SAVEPOINT ${name}`);
            try {
              const value = await f();
              await client.query(`RELEASE SAVEPOINT ${name}`);
              return value;
            } catch (err) {
              await client.query(`ROLLBACK TO SAVEPOINT ${name}`);
              await client.query(`RELEASE SAVEPOINT ${name}`);
              throw err;
            }
          },
        };
        const value = await fn(tx);
        await client.query('COMMIT');
        return value;
      } catch (err) {
        await client.query('ROLLBACK').catch((rollbackError: unknown) => {
          // The connection is gone or confused: not returned to the pool for the next caller.
          broken = rollbackError as Error;
        });
        throw err;
      }
    } finally {
      open = false;
      client.release(broken);
    }
  }

  /**
   * One connection of the pool for `fn` alone, for what only PostgreSQL has (schema
   * migration under an advisory lock, LISTEN): statements and transactions are `fn`'s to run.
   */
  async session<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      return await fn(client);
    } catch (err) {
      // Whatever state it was left in (an open transaction, a LISTEN) must not reach the next caller.
      broken = err instanceof Error ? err : new Error(String(err));
      throw err;
    } finally {
      client.release(broken);
    }
  }

  /** Schema statements and other text run once (several statements, no parameters). */
  async runScript(text: string): Promise<void> {
    await this.#pool.query(text);
  }

  close(): Promise<void> {
    return this.#pool.end();
  }
}
