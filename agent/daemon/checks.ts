/**
 * When to re-check the inventory: on a timer, when the package database changes, and when
 * asked (a new connection). Checks never overlap: a trigger during a check runs exactly
 * one more check after it, however many triggers came.
 *
 * Package databases are watched through their DIRECTORY: dpkg and apk replace their
 * database by writing a new file and renaming it over the old one, so a watch on the file
 * itself would follow the old, unlinked inode and go silent after the first update.
 * An `apt-get upgrade` rewrites /var/lib/dpkg/status hundreds of times over minutes, so
 * changes are debounced: the check runs once the database has been quiet for
 * `debounceMs`, and at the latest `maxWaitMs` after the first change.
 */
import { type FSWatcher, watch } from 'node:fs';

export interface WatchTarget {
  /** A directory holding a package database. */
  dir: string;
  /** File names in it whose change means the installed packages changed; null: any file. */
  files: readonly string[] | null;
}

/**
 * dpkg's status file; rpm's database (BDB `Packages`, NDB `Packages.db`, sqlite
 * `rpmdb.sqlite`, in /var/lib/rpm or, on newer Fedora and SUSE, /usr/lib/sysimage/rpm);
 * apk's `installed`.
 */
export const PACKAGE_DATABASES: readonly WatchTarget[] = Object.freeze([
  { dir: '/var/lib/dpkg', files: ['status'] },
  { dir: '/var/lib/rpm', files: ['Packages', 'Packages.db', 'rpmdb.sqlite', 'rpmdb.sqlite-wal'] },
  { dir: '/usr/lib/sysimage/rpm', files: ['Packages', 'Packages.db', 'rpmdb.sqlite', 'rpmdb.sqlite-wal'] },
  { dir: '/lib/apk/db', files: ['installed'] },
]);

export interface CheckSchedulerOptions {
  intervalMs: number;
  debounceMs?: number;
  maxWaitMs?: number;
  watch?: readonly WatchTarget[];
  /** The check; its errors go to onError, never out of the scheduler. */
  run: (reason: string) => Promise<void>;
  onError: (err: unknown, reason: string) => void;
  /** A watch that could not be set up (inotify limit, permissions): the timer still runs. */
  onWatchError?: (dir: string, err: unknown) => void;
}

export class CheckScheduler {
  private readonly opts: Required<Omit<CheckSchedulerOptions, 'onWatchError'>> & Pick<CheckSchedulerOptions, 'onWatchError'>;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private firstChangeAt: number | null = null;
  private watchers: FSWatcher[] = [];
  private running: Promise<void> | null = null;
  private pending: string | null = null;
  private stopped = false;
  /** Checks run so far, by reason. */
  readonly counts = new Map<string, number>();

  constructor(options: CheckSchedulerOptions) {
    this.opts = { debounceMs: 5000, maxWaitMs: 60_000, watch: PACKAGE_DATABASES, ...options };
  }

  /** Starts the timer and the watches; the first check is the caller's to trigger. */
  start(): void {
    this.timer = setInterval(() => {
      this.trigger('timer');
    }, this.opts.intervalMs);
    for (const target of this.opts.watch) this.watchDir(target);
  }

  /** Names of the directories being watched. */
  get watching(): number {
    return this.watchers.length;
  }

  private watchDir(target: WatchTarget): void {
    let w: FSWatcher;
    try {
      w = watch(target.dir, { persistent: false }, (_event, file) => {
        if (target.files !== null && (file === null || !target.files.includes(file))) return;
        this.changed(`${target.dir} changed`);
      });
    } catch (err) {
      // Absent directories are the norm (no rpm on Debian): only other failures are news.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.opts.onWatchError?.(target.dir, err);
      return;
    }
    w.on('error', (err) => {
      this.opts.onWatchError?.(target.dir, err);
      w.close();
      this.watchers = this.watchers.filter((x) => x !== w);
    });
    this.watchers.push(w);
  }

  private changed(reason: string): void {
    if (this.stopped) return;
    const now = Date.now();
    this.firstChangeAt ??= now;
    clearTimeout(this.debounce);
    const wait = Math.max(0, Math.min(this.opts.debounceMs, this.firstChangeAt + this.opts.maxWaitMs - now));
    this.debounce = setTimeout(() => {
      this.firstChangeAt = null;
      this.trigger(reason);
    }, wait);
  }

  /** Runs a check now, or once more after the one running. */
  trigger(reason: string): void {
    if (this.stopped) return;
    if (this.running !== null) {
      this.pending = reason;
      return;
    }
    this.running = (async () => {
      let next: string | null = reason;
      while (next !== null && !this.stopped) {
        const why = next;
        this.pending = null;
        this.counts.set(why, (this.counts.get(why) ?? 0) + 1);
        try {
          await this.opts.run(why);
        } catch (err) {
          this.opts.onError(err, why);
        }
        next = this.pending;
      }
      this.running = null;
    })();
  }

  /** Resolves when no check is running. */
  async idle(): Promise<void> {
    while (this.running !== null) await this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.debounce);
    for (const w of this.watchers) w.close();
    this.watchers = [];
    await this.idle();
  }
}
