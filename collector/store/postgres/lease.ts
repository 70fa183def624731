/**
 * Work that must run on exactly one collector replica at a time (rollout ticks, scheduled
 * feed sync, re-correlation after a feed change, housekeeping: issue 12 §3), held by a row
 * with an expiry in PostgreSQL rather than an advisory lock: an advisory lock lives as long
 * as its connection, which a half-dead replica (a hung process, a partitioned network) can
 * keep open for the length of TCP's keepalive, while a row expires on the server's clock
 * after `ttlMs` whatever happens to its holder.
 *
 * The holder renews every ttl/3. It believes it holds the lease only until its last
 * successful renewal plus ttl less a margin, measured on its own monotonic clock, so it
 * stops before the row expires and another replica can take it. Each change of holder
 * increments `epoch`: a fencing number work can carry so a stale holder's late write is
 * recognisable.
 */
import type { SqlExecutor } from '../sql/executor.ts';
import { sql } from '../sql/query.ts';

const ACQUIRE = sql({
  postgres: `INSERT INTO leases (name, holder, epoch, expires_at) VALUES (?, ?, 1, now() + ? * interval '1 millisecond')
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
      epoch = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > now() THEN leases.epoch ELSE leases.epoch + 1 END
    WHERE leases.holder = excluded.holder OR leases.expires_at <= now()
    RETURNING epoch`,
});
// Expired, not deleted: the row keeps its epoch, so the next holder's is still one more.
const RELEASE = sql({ postgres: 'UPDATE leases SET expires_at = now() WHERE name = ? AND holder = ?' });
const HOLDER = sql({ postgres: 'SELECT holder, epoch, expires_at > now() AS live FROM leases WHERE name = ?' });

export interface LeaseOptions {
  /** What the lease guards: `rollout-tick`, `feed-sync`, ... */
  name: string;
  /** This replica, unique among those sharing the database (host:pid:random is enough). */
  holder: string;
  /** How long a lease lasts without renewal: also how long a dead holder's work waits. Default 15 s. */
  ttlMs?: number;
  /** Told when this replica gains or loses the lease (epoch while held, null once lost). */
  onChange?: (epoch: number | null) => void;
  /** Renewal errors (the database unreachable): the lease is then lost at its deadline. */
  onError?: (err: unknown) => void;
}

export class PostgresLease {
  readonly #db: SqlExecutor;
  readonly #name: string;
  readonly #holder: string;
  readonly #ttlMs: number;
  readonly #onChange: (epoch: number | null) => void;
  readonly #onError: (err: unknown) => void;
  #epoch: number | null = null;
  /** performance.now() past which this replica no longer trusts that it holds the lease. */
  #deadline = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #tick: Promise<void> = Promise.resolve();

  constructor(db: SqlExecutor, options: LeaseOptions) {
    if (db.dialect !== 'postgres') throw new Error('a lease is for PostgreSQL: a SQLite store has one collector process');
    this.#db = db;
    this.#name = options.name;
    this.#holder = options.holder;
    this.#ttlMs = options.ttlMs ?? 15_000;
    this.#onChange = options.onChange ?? (() => undefined);
    this.#onError = options.onError ?? (() => undefined);
  }

  /** The fencing epoch while this replica holds the lease, else null. */
  get epoch(): number | null {
    if (this.#epoch !== null && performance.now() >= this.#deadline) this.#set(null);
    return this.#epoch;
  }

  get held(): boolean {
    return this.epoch !== null;
  }

  #set(epoch: number | null): void {
    if (epoch === this.#epoch) return;
    this.#epoch = epoch;
    this.#onChange(epoch);
  }

  /** One attempt to take or renew the lease; resolves with whether it is held. */
  async tryAcquire(): Promise<boolean> {
    const started = performance.now();
    try {
      const row = await this.#db.get<{ epoch: number }>(ACQUIRE, [this.#name, this.#holder, this.#ttlMs]);
      if (row === undefined) {
        this.#set(null);
        return false;
      }
      // From when the request left: the server's expiry is at least that late. A tenth of the
      // ttl is left as margin for the clocks' rates and this process's own pauses.
      this.#deadline = started + this.#ttlMs * 0.9;
      this.#set(row.epoch);
      return true;
    } catch (err) {
      this.#onError(err);
      return this.held;
    }
  }

  /** Keeps trying to take the lease, and renews it while held, every ttl/3, until stop(). */
  start(): void {
    const loop = (): void => {
      if (this.#stopped) return;
      this.#tick = this.tryAcquire().then(() => {
        if (!this.#stopped) this.#timer = setTimeout(loop, this.#ttlMs / 3).unref();
      });
    };
    loop();
  }

  /** Stops renewing and gives the lease up, so another replica takes it at once, not a ttl later. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#tick;
    const was = this.#epoch;
    this.#set(null);
    if (was !== null) await this.#db.run(RELEASE, [this.#name, this.#holder]).catch((err: unknown) => { this.#onError(err); });
  }

  /** Who holds the lease now, by the server's clock (for /healthz and tests). */
  async holderNow(): Promise<{ holder: string; epoch: number } | null> {
    const row = await this.#db.get<{ holder: string; epoch: number; live: boolean }>(HOLDER, [this.#name]);
    return row?.live === true ? { holder: row.holder, epoch: row.epoch } : null;
  }
}
