/**
 * Work that must happen on one collector at a time (issue 12 §3): advancing rollouts,
 * the scheduled feed sync, re-judging the fleet after an advisory change, and housekeeping
 * of the shared change log. On SQLite there is one collector process, so every duty is
 * always held. On PostgreSQL each duty is a lease (store/postgres/lease.ts): one replica
 * holds it and renews it; when that replica dies or stops, another takes it within a lease
 * period, and a replica that cannot renew stops acting before its lease can pass on.
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../../logger.ts';
import { PostgresLease } from '../../store/postgres/lease.ts';
import { type AsyncStore, postgresOf } from '../../store/store.ts';

export const DUTIES = ['rollout-tick', 'feed-sync', 'recorrelate', 'housekeeping'] as const;
export type DutyName = (typeof DUTIES)[number];

export interface Duty {
  readonly name: DutyName;
  /** Whether this collector may do the work now. */
  readonly held: boolean;
  /** Called with true when this collector takes the duty, false when it loses it. */
  onChange(listener: (held: boolean) => void): void;
}

export interface Duties {
  /** This collector among those sharing the store: `host:pid:random`. */
  readonly replica: string;
  get(name: DutyName): Duty;
  /** Starts taking and renewing the leases (PostgreSQL); nothing to do on SQLite. */
  start(): void;
  /** Gives every lease up, so another replica takes over at once rather than a lease period later. */
  stop(): Promise<void>;
}

export interface DutiesOptions {
  /** A lease's life without renewal: how long a dead replica's duty waits. Default 15 s. */
  ttlMs?: number;
  logger: Logger;
}

class Always implements Duty {
  readonly held = true;
  constructor(readonly name: DutyName) {}
  onChange(): void {
    // Held from the start and never lost: there is no other collector to hand it to.
  }
}

class Leased implements Duty {
  readonly #lease: PostgresLease;
  readonly #listeners: ((held: boolean) => void)[] = [];

  constructor(
    readonly name: DutyName,
    make: (onChange: (epoch: number | null) => void) => PostgresLease,
  ) {
    this.#lease = make((epoch) => {
      for (const l of this.#listeners) l(epoch !== null);
    });
  }

  get lease(): PostgresLease {
    return this.#lease;
  }

  get held(): boolean {
    return this.#lease.held;
  }

  onChange(listener: (held: boolean) => void): void {
    this.#listeners.push(listener);
  }
}

export function dutiesFor(store: AsyncStore, options: DutiesOptions): Duties {
  const replica = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const pg = postgresOf(store);
  if (pg === null) {
    const always = new Map(DUTIES.map((d) => [d, new Always(d)]));
    return {
      replica,
      get: (name) => always.get(name) as Duty,
      start: () => undefined,
      stop: () => Promise.resolve(),
    };
  }
  const { logger } = options;
  const leased = new Map(
    DUTIES.map((name) => [
      name,
      new Leased(
        name,
        (onChange) =>
          new PostgresLease(pg, {
            name,
            holder: replica,
            ...(options.ttlMs === undefined ? {} : { ttlMs: options.ttlMs }),
            onChange: (epoch) => {
              logger.info({ duty: name, replica, epoch }, epoch === null ? `no longer holding ${name}` : `holding ${name}`);
              onChange(epoch);
            },
            onError: (err) => {
              logger.warn({ err, duty: name }, `renewing the ${name} lease failed; it is given up at its deadline if this goes on`);
            },
          }),
      ),
    ]),
  );
  return {
    replica,
    get: (name) => leased.get(name) as Duty,
    start: () => {
      for (const d of leased.values()) d.lease.start();
    },
    stop: async () => {
      await Promise.all([...leased.values()].map((d) => d.lease.stop()));
    },
  };
}
