/**
 * The serving collector syncs its own feeds: catalogue entries and config feeds every
 * 6 hours, KEV daily, each run at a croner time plus a random jitter so a fleet of
 * collectors does not hit the upstreams in the same second. A feed that is missing or
 * older than `staleFeedHours` is synced at start. Runs never overlap: one feed is
 * downloaded at a time, through syncSources (the import path of `feed import` and
 * `feed sync`), audited as `system`.
 *
 * The decisions (when next, what is due) are pure functions of the clock, so they are
 * tested with any time; the timers only carry them out.
 */
import { Cron } from 'croner';
import type { Logger } from '../../logger.ts';
import type { FeedRow } from '../../store/advisories.ts';
import type { AsyncStore } from '../../store/store.ts';
import type { SelectedSource } from './catalogue.ts';
import { syncSources, type SyncAudit } from './sync-run.ts';
import type { SyncOptions, SyncOutcome } from './sync.ts';

export interface FeedSchedule {
  /** Every feed but KEV. */
  cron: string;
  kevCron: string;
  /** Each run starts up to this much after its cron time. */
  jitterMs: number;
}

export const DEFAULT_FEED_SCHEDULE: FeedSchedule = { cron: '0 */6 * * *', kevCron: '30 3 * * *', jitterMs: 30 * 60_000 };

export type FeedGroup = 'feeds' | 'kev';

/** Under setTimeout's 2^31-1 ms ceiling. */
const MAX_TIMER_MS = 24 * 3600_000;

/** KEV and EPSS are published once a day: the `kev` group runs them daily. */
export function groupOf(src: SelectedSource): FeedGroup {
  return src.entry?.upstream === 'kev' || src.entry?.upstream === 'epss' ? 'kev' : 'feeds';
}

/** The run after `from`: the pattern's next time (UTC) plus jitter drawn from `random` in [0, jitterMs). */
export function nextRunAt(pattern: string, from: Date, jitterMs: number, random: () => number): Date {
  const next = new Cron(pattern, { paused: true, timezone: 'UTC' }).nextRun(from);
  if (next === null) throw new Error(`cron pattern ${pattern} never runs again`);
  return new Date(next.getTime() + Math.floor(random() * jitterMs));
}

/** The sources to sync at start: never synced successfully, or last synced more than `staleHours` ago. */
export function dueAtStart<S extends { name: string }>(sources: readonly S[], feeds: readonly FeedRow[], now: Date, staleHours: number): S[] {
  const checked = new Map(feeds.map((f) => [f.source, f.checkedAt]));
  return sources.filter((s) => {
    const at = checked.get(s.name) ?? null;
    return at === null || now.getTime() - Date.parse(at) > staleHours * 3600_000;
  });
}

export interface FeedSchedulerOptions {
  store: AsyncStore['advisories'];
  /** Chosen afresh for every run: hosts enrol and leave. */
  sources: () => Promise<SelectedSource[]>;
  audit: SyncAudit;
  logger: Logger;
  staleFeedHours: number;
  schedule?: FeedSchedule;
  sync?: SyncOptions;
  now?: () => Date;
  random?: () => number;
  /** After each run, with its outcomes (tests wait on it). */
  onRun?: (why: string, outcomes: SyncOutcome[]) => void;
}

export const OFFLINE_HINT =
  'if this collector has no internet: import feeds with `patchwarden-collector feed import PATH` (upstream files, or a bundle from `feed export` on a connected collector) and set "feedSync": false in its config';

export class FeedScheduler {
  readonly #o: FeedSchedulerOptions & { schedule: FeedSchedule; now: () => Date; random: () => number };
  readonly #timers = new Map<FeedGroup, NodeJS.Timeout>();
  #chain: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(options: FeedSchedulerOptions) {
    this.#o = { schedule: DEFAULT_FEED_SCHEDULE, now: () => new Date(), random: Math.random, ...options };
  }

  /** Syncs what is missing or stale now, then arms both schedules. */
  start(): void {
    // Nothing missing or stale at start: no run, and nothing logged, as a scheduled run with no feed would be.
    this.#run('start: missing or stale', async () => dueAtStart(await this.#o.sources(), await this.#o.store.feeds(), this.#o.now(), this.#o.staleFeedHours), { skipWhenNone: true });
    this.#arm('feeds');
    this.#arm('kev');
  }

  /** Resolves when the run under way (if any) is over; no run starts after. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    await this.#chain;
  }

  #arm(group: FeedGroup): void {
    const { schedule, now, random } = this.#o;
    this.#wait(group, nextRunAt(group === 'kev' ? schedule.kevCron : schedule.cron, now(), schedule.jitterMs, random));
  }

  /** Waits in steps of at most MAX_TIMER_MS: a longer setTimeout fires at once (Node clamps it to 1 ms). */
  #wait(group: FeedGroup, at: Date): void {
    if (this.#stopped) return;
    const left = at.getTime() - this.#o.now().getTime();
    const timer = setTimeout(
      () => {
        if (left > MAX_TIMER_MS) {
          this.#wait(group, at);
          return;
        }
        this.#run(`schedule: ${group}`, async () => (await this.#o.sources()).filter((s) => groupOf(s) === group));
        this.#arm(group);
      },
      Math.min(Math.max(0, left), MAX_TIMER_MS),
    );
    timer.unref();
    this.#timers.set(group, timer);
  }

  #run(why: string, pick: () => Promise<SelectedSource[]>, opts: { skipWhenNone?: boolean } = {}): void {
    this.#chain = this.#chain.then(async () => {
      if (this.#stopped) return;
      const { logger } = this.#o;
      try {
        const sources = await pick();
        if (sources.length === 0 && opts.skipWhenNone === true) return;
        logger.info({ why, feeds: sources.map((s) => s.name) }, 'feed sync: starting');
        const outcomes = await syncSources(this.#o.store, sources, this.#o.audit, {
          ...this.#o.sync,
          now: this.#o.now,
          onOutcome: (src, o) => {
            if (o.status === 'failed') logger.warn({ feed: src.name, url: src.url, code: o.code, err: o.error }, `feed sync: ${src.name} failed, keeping its last good data; ${OFFLINE_HINT}`);
            else logger.info({ feed: src.name, status: o.status }, `feed sync: ${src.name} ${o.status}`);
          },
        });
        const failed = outcomes.filter((o) => o.status === 'failed').length;
        if (failed > 0 && failed === outcomes.length) logger.error({ why, failed }, `feed sync: every feed failed; nothing new was loaded; ${OFFLINE_HINT}`);
        this.#o.onRun?.(why, outcomes);
      } catch (err) {
        logger.error({ err, why }, 'feed sync failed; the next run tries again');
      }
    });
  }
}
