/**
 * The collector's store, opened in one place: every part on the shared executor
 * (ON_EXECUTOR), the same code on SQLite (`openStore`, the embedded default) and PostgreSQL
 * (`openPostgresStore`, several collectors on one database), with its transactions and
 * close() (issue 12, POSTGRES.md). The SQLite store also keeps a synchronous side (`Store`):
 * the connection, for the file's own upkeep (WAL checkpoints, quick_check, /healthz's
 * disk-space probe) and for tests that read the file directly.
 */
import { parsePlan } from '../domain/rollout/plan.ts';
import { ApiTokenStore } from './access.ts';
import { AdvisoryChanges } from './advisory-changes.ts';
import { AdvisoryStore } from './advisories.ts';
import { Agents, flushTouchesNow } from './agents.ts';
import { AuditLog } from './audit-log.ts';
import { type Db, openDatabase, prepareDatabaseFile } from './db.ts';
import { EnrollmentTokens } from './enrollment-tokens.ts';
import { EpssStore } from './epss.ts';
import { ExceptionStore } from './exceptions.ts';
import { FleetSummaryStore } from './fleet-summary.ts';
import { StoreHealth, type StoreHealthReport } from './health.ts';
import { PostgresHealth } from './postgres/health.ts';
import { FindingHistoryStore } from './history.ts';
import { Hosts } from './hosts.ts';
import { StoreInspection } from './inspection.ts';
import { ReportImports } from './report-imports.ts';
import { Replicas } from './replicas.ts';
import { Reports } from './reports.ts';
import { InstructionOutbox, RolloutStore } from './rollouts.ts';
import type { PartScope } from './part-scope.ts';
import { migratePostgres } from './postgres/migrate.ts';
import type { SqlDatabase, SqlExecutor, SqlTransaction } from './sql/executor.ts';
import { PostgresDatabase } from './sql/postgres.ts';
import { SqliteDatabase } from './sql/sqlite.ts';

export interface SqliteStoreOptions {
  kind: 'sqlite';
  /** The database file (`:memory:` for a store that lives and dies with the process). */
  path: string;
  readonly?: boolean;
  /** Make a new database in an existing empty file (`serve --init`); without it such a file is refused. */
  init?: boolean;
}

export type StoreOptions = SqliteStoreOptions;

/**
 * The store as both engines will have it (issue 12, POSTGRES.md): every part's methods
 * asynchronous, and transactions that take an async function. Callers move to it from the
 * synchronous Store below; its parts then move, one domain at a time, from better-sqlite3's
 * calls to statements on `sql/executor.ts` that PostgreSQL runs too, behind this same interface.
 */
export interface AsyncStore {
  readonly kind: 'sqlite' | 'postgres';
  readonly audit: AuditLog;
  readonly tokens: EnrollmentTokens;
  readonly agents: Agents;
  readonly reports: Reports;
  readonly hosts: Hosts;
  readonly apiTokens: ApiTokenStore;
  readonly advisories: AdvisoryStore;
  readonly advisoryChanges: AdvisoryChanges;
  readonly epss: EpssStore;
  readonly history: FindingHistoryStore;
  readonly rollouts: RolloutStore;
  readonly outbox: InstructionOutbox;
  readonly reportImports: ReportImports;
  /** The collector processes sharing the store, their liveness and their agents' connection marks. */
  readonly replicas: Replicas;
  readonly exceptions: ExceptionStore;
  readonly summary: FleetSummaryStore;
  /** Whether the store answers and commits (/healthz when serve gives no probe of its own). */
  readonly health: HealthProbe;
  readonly inspection: StoreInspection;
  /**
   * Runs `fn` in one transaction: all it does through `tx` commits, or none of it (a savepoint
   * when called on a `tx`: it rolls back alone, the outer transaction goes on). On SQLite,
   * other callers' statements wait for it to end. `fn` runs statements only: PostgreSQL may
   * run it again when it loses to a concurrent transaction, and on SQLite anything else it
   * awaited (a file, a socket) would hold every other caller for that long.
   */
  transaction<T>(fn: (tx: AsyncStore) => Promise<T>): Promise<T>;
  /** Writes the batched last-seen times, then closes the connection. */
  close(): Promise<void>;
}

type PartName = Exclude<keyof AsyncStore, 'kind' | 'transaction' | 'close'>;

export interface HealthProbe {
  check(): Promise<StoreHealthReport>;
}

/** Each part made from its scope: the same statements on both engines (sql/query.ts). */
const ON_EXECUTOR: { readonly [K in Exclude<PartName, 'health'>]: (scope: PartScope) => AsyncStore[K] } = {
  audit: (scope) => new AuditLog(scope.ex),
  summary: (scope) => new FleetSummaryStore(scope.ex),
  tokens: (scope) => new EnrollmentTokens(scope),
  agents: (scope) => new Agents(scope),
  reports: (scope) => new Reports(scope),
  hosts: (scope) => new Hosts(scope),
  reportImports: (scope) => new ReportImports(scope),
  replicas: (scope) => new Replicas(scope),
  // Plans are validated on their way out of the store too (parsePlan), as the engine validates them on the way in.
  rollouts: (scope) => new RolloutStore(scope.ex, parsePlan),
  outbox: (scope) => new InstructionOutbox(scope.ex),
  history: (scope) => new FindingHistoryStore(scope),
  inspection: (scope) => new StoreInspection(scope.ex),
  advisories: (scope) => new AdvisoryStore(scope),
  advisoryChanges: (scope) => new AdvisoryChanges(scope.ex),
  epss: (scope) => new EpssStore(scope),
  apiTokens: (scope) => new ApiTokenStore(scope),
  exceptions: (scope) => new ExceptionStore(scope),
};

/** What every scope of one store shares. */
interface StoreRoot {
  readonly kind: 'sqlite' | 'postgres';
  readonly db: SqlDatabase;
  /** SQLite's synchronous side (its health probe reads the file's disk); null on PostgreSQL. */
  readonly sync: SqliteStore | null;
  readonly shared: Map<string, unknown>;
  close(): Promise<void>;
}

/**
 * AsyncStore over the shared executor, outside a transaction (`tx` null) or inside one. Parts
 * on the executor are made over this scope's executor; on SQLite the others wrap the
 * synchronous parts, waiting their turn outside a transaction (SqliteDatabase.turn()).
 */
class ExecutorStore implements AsyncStore, PartScope {
  readonly #root: StoreRoot;
  readonly #tx: SqlTransaction | null;
  readonly #parts = new Map<PartName, unknown>();

  constructor(root: StoreRoot, tx: SqlTransaction | null) {
    this.#root = root;
    this.#tx = tx;
  }

  get kind(): AsyncStore['kind'] {
    return this.#root.kind;
  }

  /** The PostgreSQL database under this store, or null on SQLite (postgresOf). */
  get postgres(): PostgresDatabase | null {
    const db = this.#root.db;
    return db instanceof PostgresDatabase ? db : null;
  }

  get ex(): SqlExecutor {
    return this.#tx ?? this.#root.db;
  }

  get store(): AsyncStore {
    return this;
  }

  atomic<T>(fn: (scope: PartScope) => Promise<T>): Promise<T> {
    return this.#atomic(fn);
  }

  /** A transaction, or a savepoint inside one, with this class's scope (both an AsyncStore and a PartScope). */
  #atomic<T>(fn: (scope: ExecutorStore) => Promise<T>): Promise<T> {
    const tx = this.#tx;
    if (tx !== null) return tx.savepoint(() => fn(this));
    return this.#root.db.transaction((open) => fn(new ExecutorStore(this.#root, open)));
  }

  shared<T>(key: string, make: () => T): T {
    const shared = this.#root.shared;
    if (!shared.has(key)) shared.set(key, make());
    return shared.get(key) as T;
  }

  /**
   * SQLite's probe commits a heartbeat and reads the disk's free space (health.ts): it waits
   * for an open transaction to end, as a statement would. PostgreSQL's commits a heartbeat and
   * tells a standby (postgres/health.ts).
   */
  #health(): HealthProbe {
    const { db, sync } = this.#root;
    if (sync !== null && db instanceof SqliteDatabase) {
      return {
        check: async () => {
          for (let wait = db.turn(); wait !== null; wait = db.turn()) await wait;
          return sync.health.check();
        },
      };
    }
    const probe = this.shared('postgres-health', () => new PostgresHealth(db));
    return {
      check: async () => {
        await probe.probe();
        return probe.check();
      },
    };
  }

  #part<K extends PartName>(name: K): AsyncStore[K] {
    let part = this.#parts.get(name) as AsyncStore[K] | undefined;
    if (part === undefined) {
      part = name === 'health' ? (this.#health() as AsyncStore[K]) : ON_EXECUTOR[name as Exclude<K, 'health'>](this);
      this.#parts.set(name, part);
    }
    return part;
  }

  get audit(): AsyncStore['audit'] {
    return this.#part('audit');
  }
  get tokens(): AsyncStore['tokens'] {
    return this.#part('tokens');
  }
  get agents(): AsyncStore['agents'] {
    return this.#part('agents');
  }
  get reports(): AsyncStore['reports'] {
    return this.#part('reports');
  }
  get hosts(): AsyncStore['hosts'] {
    return this.#part('hosts');
  }
  get apiTokens(): AsyncStore['apiTokens'] {
    return this.#part('apiTokens');
  }
  get advisories(): AsyncStore['advisories'] {
    return this.#part('advisories');
  }
  get advisoryChanges(): AsyncStore['advisoryChanges'] {
    return this.#part('advisoryChanges');
  }
  get epss(): AsyncStore['epss'] {
    return this.#part('epss');
  }
  get history(): AsyncStore['history'] {
    return this.#part('history');
  }
  get rollouts(): AsyncStore['rollouts'] {
    return this.#part('rollouts');
  }
  get outbox(): AsyncStore['outbox'] {
    return this.#part('outbox');
  }
  get reportImports(): AsyncStore['reportImports'] {
    return this.#part('reportImports');
  }

  get replicas(): AsyncStore['replicas'] {
    return this.#part('replicas');
  }
  get exceptions(): AsyncStore['exceptions'] {
    return this.#part('exceptions');
  }
  get summary(): AsyncStore['summary'] {
    return this.#part('summary');
  }
  get health(): AsyncStore['health'] {
    return this.#part('health');
  }
  get inspection(): AsyncStore['inspection'] {
    return this.#part('inspection');
  }

  transaction<T>(fn: (tx: AsyncStore) => Promise<T>): Promise<T> {
    return this.#atomic(fn);
  }

  /** The batched last-seen times are this process's own writes: written before the connection closes, on both engines. */
  async close(): Promise<void> {
    await new ExecutorStore(this.#root, null).agents.flushTouches();
    await this.#root.close();
  }
}

export interface Store {
  readonly kind: 'sqlite';
  /** The same store with the asynchronous interface both engines share (callers are moving to it). */
  readonly async: AsyncStore;
  /** The connection, for code that still holds SQL of its own (being moved into store modules). */
  readonly db: Db;
  /** /healthz with no periodic integrity check; serve makes its own with one (createApp's storeHealth). */
  readonly health: StoreHealth;
  /** Writes the batched last-seen times, then closes the connection. */
  close(): void;
}

/**
 * The parts beyond the fleet are made when first used: a CLI command that reads one table
 * prepares no other part's statements.
 */
class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  readonly db: Db;
  #health: StoreHealth | undefined;
  #async: ExecutorStore | undefined;

  constructor(db: Db) {
    this.db = db;
  }

  get async(): AsyncStore {
    if (this.#async === undefined) {
      const close = (): Promise<void> => {
        this.close();
        return Promise.resolve();
      };
      this.#async = new ExecutorStore({ kind: 'sqlite', db: new SqliteDatabase(this.db), sync: this, shared: new Map(), close }, null);
    }
    return this.#async;
  }

  get health(): StoreHealth {
    return (this.#health ??= new StoreHealth(this.db));
  }

  close(): void {
    if (!this.db.open) return;
    if (this.#async !== undefined) flushTouchesNow(this.db, this.#async);
    this.db.close();
  }
}

/** A store over a connection the caller opened already; close() closes it. */
export function storeOn(db: Db): Store {
  return new SqliteStore(db);
}

export function openStore(options: StoreOptions): Store {
  const db = openDatabase(options.path, { readonly: options.readonly ?? false, init: options.init ?? false });
  try {
    return storeOn(db);
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * Makes the store's file when there is none (0600), and refuses an existing empty one unless
 * `init` says to make a database in it (PW_ERR_STORE_EMPTY_FILE), before anything else is
 * written beside it: serve checks this before it makes the collector key. The options
 * returned open the file just made.
 */
export function prepareStore(options: StoreOptions): StoreOptions {
  if (options.readonly === true) return options;
  const made = prepareDatabaseFile(options.path, options.init ?? false);
  return made ? { ...options, init: true } : options;
}

export interface PostgresStoreOptions {
  kind: 'postgres';
  /** `postgres://user@host:port/db`, or with `?host=/socket/dir`. */
  url: string;
  /** Connections in the pool. Default 10. */
  maxConnections?: number;
}

/**
 * A store on PostgreSQL, its schema brought up to date first (under an advisory lock: replicas
 * starting together migrate once). It has the parts already on the shared executor; the
 * others refuse with PW_ERR_STORE until they move (issue 12, POSTGRES.md step 2).
 */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<AsyncStore> {
  const db = new PostgresDatabase({ url: options.url, ...(options.maxConnections === undefined ? {} : { max: options.maxConnections }) });
  try {
    await migratePostgres(db);
  } catch (err) {
    await db.close();
    throw err;
  }
  // Closing twice is closing once, as on SQLite (pg's pool refuses a second end()).
  let closed: Promise<void> | undefined;
  return new ExecutorStore({ kind: 'postgres', db, sync: null, shared: new Map(), close: () => (closed ??= db.close()) }, null);
}

/**
 * The PostgreSQL database under a store, or null for SQLite: for what only PostgreSQL has and
 * the collector runs beside the store (the committed heartbeat of /healthz, leases, the
 * outbox's notifications).
 */
export function postgresOf(store: AsyncStore): PostgresDatabase | null {
  return store instanceof ExecutorStore ? store.postgres : null;
}
