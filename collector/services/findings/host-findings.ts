/**
 * Findings per enrolled host: the shared Correlator (advisories loaded from the store at
 * start, then kept in step with it by followStore), each host's finding history keyed by its agent id, and the open/overdue counts
 * the host list shows. A new inventory is correlated after its report was acknowledged,
 * one host per event-loop turn, so a burst of reports never delays acks or heartbeats;
 * a host that reports twice before its turn is correlated once, with the newest inventory.
 *
 * Findings history has two layers (collector/store/history.ts): each inventory content's
 * timeline, shared by its hosts, and each host's own rows, written when its inventory
 * moves to another content. A correlation judges the content once (per index generation,
 * feed state and day) and the host against its history over that timeline.
 *
 * A feed change is fanned out by content, not by host: the hosts of the changed ecosystems
 * are grouped by the content of their latest inventory; each group's content is matched
 * again without any inventory (Correlator.matchesOf: only the changed units, an interned
 * unit once for all contents) and its timeline judged and written once; after the last
 * group every host gets its content's counts, written in agent id order (#writeCounts).
 * Start-up (scheduleAll) and KEV/EPSS changes go the same way. A host with exceptions of its own, one
 * whose history is laid over another content (a newer report), or a policy whose due dates
 * depend on a host's first-seen is correlated whole instead. Correlating every host whole
 * (parse its inventory, judge and write its hundreds of findings) cost about 2.5 ms a host,
 * minutes for a fleet of 100,000 (npm run bench: fanout).
 */
import { packagesHash } from '../../../shared/inventory-hash.ts';
import { type Findings, type Inventory, LIMITS } from '../../../shared/protocol.ts';
import { Correlator, type FeedState } from '../../domain/correlate/correlator.ts';
import type { RawMatch } from '../../domain/correlate/match.ts';
import { buildFindings, historyKey, type KevInfo } from '../../domain/correlate/findings.ts';
import type { EpssScore } from '../../domain/feeds/epss.ts';
import type { Advisory } from '../../domain/feeds/types.ts';
import type { DuePolicy } from '../../domain/correlate/policy.ts';
import { isActionable } from '../../domain/correlate/status.ts';
import type { Logger } from '../../logger.ts';
import type { FeedRow } from '../../store/advisories.ts';
import type { StoredHistoryEntry } from '../../store/history.ts';
import type { AsyncStore } from '../../store/store.ts';

/** One content's hosts waiting for a feed change's findings (see the file comment). */
interface FanOut {
  hash: string;
  hosts: string[];
  /** The advisory packages whose index keys changed (the content's findings that may have), or null: judge it whole. */
  packages: ReadonlySet<string> | null;
}

/** A queued host: the inventory its report brought, or null: its latest stored one, read when its turn comes. A new object each time it is queued (see #apply). */
type Job = { inventory: Inventory; hash: string } | { inventory: null };

/** KEV, EPSS and the feeds' rows as read from the store, before they are taken in. */
interface KevAndFeeds {
  kev: ReadonlyMap<string, { dueDate: string }>;
  epss: ReadonlyMap<string, EpssScore>;
  feeds: FeedRow[];
}

interface Counts {
  agentId: string;
  content: string;
  open: number;
  overdue: number;
}

/**
 * What one slice did, taken into the queues, caches and stats only once its transaction
 * has ended: PostgreSQL may run the slice's function again after losing to a concurrent
 * transaction, and a slice rolled back must not leave contents marked as judged. The
 * slice's function reads the queues and caches and writes only here (a new one per run).
 */
class SliceWork {
  /** Queue entries the slice took, with the job it took (a newer one queued meanwhile stays). */
  readonly taken = new Map<string, Job>();
  /** Hosts to correlate one by one, queued after the slice. */
  readonly requeue = new Set<string>();
  /** Fan-out groups taken from the front of the list. */
  fanOuts = 0;
  /** Counts taken from the end of the write order. */
  countsTaken = 0;
  /** Contents judged (their state) or forgotten (null) in the slice. */
  readonly judged = new Map<string, string | null>();
  readonly fresh = new Set<string>();
  /** Counts the slice's groups give their hosts. */
  readonly counts = new Map<string, Counts>();
  readonly stats = { correlated: 0, failed: 0, fannedOut: 0 };
  /** Log lines, written after the slice. */
  readonly logs: (() => void)[] = [];
  /** Every queue was empty: the fan-outs' bookkeeping starts over. */
  done = false;
}

/** Hosts whose counts one slice writes at most (#writeCounts). */
const COUNTS_BATCH = 5000;
/** Contents whose judged state is remembered (#judgeContent); past it the memory starts over. */
const MAX_JUDGED = 50_000;
/** How long one event-loop turn may spend correlating queued hosts. */
const SLICE_MS = 10;
/**
 * A turn of a feed change's fan-out (content groups, then counts), when no report waits:
 * each turn is a commit, and at 10 ms the commits were a third of a fan-out over 100,000
 * hosts (npm run bench: fanout, 100,000 hosts: 10.8 to 15 s at 10 ms, 8.2 to 11.8 s at 50 ms
 * on this shared machine).
 * Acks and heartbeats wait at most this long for the event loop: far under the seconds of
 * the stalls issue 10 removed.
 */
const FANOUT_SLICE_MS = 50;

/** What HostFindings reads and writes: the advisories and their change log, EPSS, finding history, the fleet's reports and hosts, and transactions for its slices, refreshes and fan-outs. */
export type FindingsStore = Pick<AsyncStore, 'advisories' | 'advisoryChanges' | 'epss' | 'history' | 'exceptions' | 'reports' | 'hosts' | 'transaction'>;

/** The parts a correlation reads and writes: the root's outside a transaction, a transaction's inside one. */
type Parts = Pick<AsyncStore, 'history' | 'exceptions' | 'reports' | 'hosts'>;

export interface HostFindingsOptions {
  /** The store the caller opened (`store.async`), or the parts of it HostFindings reads and writes. */
  store: FindingsStore;
  policy: DuePolicy;
  logger: Logger;
  correlator?: Correlator;
  now?: () => Date;
  /** The first wait before a slice whose commit failed runs again; doubled each time, to 30 s. Default 1 s. */
  retryMs?: number;
}

/** The longest wait between the runs of a slice whose commit keeps failing (the database is away). */
const MAX_RETRY_MS = 30_000;

/**
 * How a collector follows the advisory change log. With one collector (SQLite) it does all
 * of it. With several on one PostgreSQL database every replica takes the changes into its
 * own correlator (it judges its own agents' reports), but one replica re-judges the fleet
 * (the `recorrelate` duty), and none clears the log behind the others: the housekeeping
 * duty clears what every replica has had time to read (collector/services/replicas/).
 */
export interface FollowOptions {
  /** Queue the hosts the changes touch for re-judging. Default true. */
  rejudge?: boolean;
  /** Delete the log rows taken in. Default true: only right when this is the one collector. */
  clear?: boolean;
}

export class HostFindings {
  readonly correlator: Correlator;
  readonly #store: FindingsStore;
  /** The last advisory change log row load() or followStore() took in. */
  #changeSeq = 0;
  #clearedSeq = -1;
  /** followStore's run in progress: a second call waits for it, so no change log row is taken in twice. */
  #following: Promise<unknown> = Promise.resolve();
  readonly #policy: DuePolicy;
  readonly #log: Logger;
  readonly #now: () => Date;
  #kev = new Map<string, KevInfo>();
  #epss: ReadonlyMap<string, EpssScore> = new Map();
  #feeds: FeedState[] = [];
  #feedErrors: string[] = [];
  readonly #queue = new Map<string, Job>();
  readonly #fanOuts: FanOut[] = [];
  /** Counts the judged groups give their hosts, written after the last group in agent id order (Hosts.setContentFindingCounts). */
  readonly #counts = new Map<string, Counts>();
  /** The order #counts is written in, reversed (taken from the end); every id in it is in #counts. */
  #countsOrder: string[] = [];
  /**
   * Hosts correlated whole since the oldest pending fan-out was queued: their findings are
   * current already and their content may no longer be the group's, so the fan-out skips them.
   */
  readonly #fresh = new Set<string>();
  /** Contents whose timeline is current, with the state they were judged in (see #judgeContent). */
  readonly #judged = new Map<string, string>();
  /** Bumped when KEV, EPSS or the feeds' states are reloaded: every content is judged again. */
  #version = 0;
  #running = false;
  #stopped = false;
  #waiters: (() => void)[] = [];
  /** Settles when the slice in progress has ended (stop() waits for it before the store closes). */
  #slice: Promise<void> = Promise.resolve();
  readonly #retryMs: number;
  /** The wait before the next run of a slice whose commit failed; 0 after a commit. */
  #backoffMs = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  /** fannedOut: hosts a feed change's fan-out gave their content's counts (not counted in correlated). */
  stats = { correlated: 0, failed: 0, fannedOut: 0 };

  constructor(opts: HostFindingsOptions) {
    this.correlator = opts.correlator ?? new Correlator();
    this.#store = opts.store;
    this.#policy = opts.policy;
    this.#log = opts.logger;
    this.#now = opts.now ?? (() => new Date());
    this.#retryMs = opts.retryMs ?? 1000;
  }

  /** (Re)loads advisories, KEV and feed states from the store; call at start and after a feed import. */
  async load(): Promise<{ advisories: number; kev: number; feeds: number }> {
    // Read first: a change written while the advisories load is applied again by followStore, which is harmless.
    const seq = await this.#store.advisoryChanges.lastSeq();
    // Paged (never a cursor held across the awaits), outside a transaction: other callers' statements go on between pages.
    const all: Advisory[] = [];
    for await (const a of this.#store.advisories.allAdvisories()) all.push(a);
    const loaded = await this.#readKevAndFeeds();
    this.#changeSeq = seq;
    this.correlator.apply(all);
    return { advisories: all.length, ...this.#takeKevAndFeeds(loaded) };
  }

  /** KEV, EPSS and the feeds' rows as the store has them now; nothing in memory changes. */
  async #readKevAndFeeds(): Promise<KevAndFeeds> {
    const kev = await this.#store.advisories.kev();
    // EPSS scores are read again only when the stored set changed (an import or removal writes its feed row).
    const epss = await this.#store.epss.current();
    const feeds = await this.#store.advisories.feeds();
    return { kev, epss: epss.scores, feeds };
  }

  #takeKevAndFeeds(read: KevAndFeeds): { kev: number; feeds: number; epss: number; epssChanged: boolean } {
    this.#version++;
    this.#kev = new Map([...read.kev].map(([cve, k]) => [cve, { dueDate: k.dueDate }]));
    const epssChanged = read.epss !== this.#epss;
    this.#epss = read.epss;
    const rows = read.feeds;
    this.#feeds = rows.map((f) => ({ source: f.source, newest: f.newest, importedAt: f.checkedAt }));
    this.#feedErrors = rows.filter((f) => f.lastError !== null).map((f) => `feed ${f.source}: last attempt failed: ${(f.lastError ?? '').slice(0, 1000)}`);
    return { kev: this.#kev.size, feeds: rows.length, epss: this.#epss.size, epssChanged };
  }

  /**
   * Takes in what changed in the store's advisories, KEV entries and feeds since load() or
   * the last call, whoever wrote it (another process's `feed import` or `feed remove`, a
   * bundle import, a sync), and queues the hosts of the changed pairs' ecosystems (every
   * reported host when KEV entries changed: due dates move); a feed row alone changes no
   * stored finding, so it only reloads the feed states. The correlator re-matches only the changed (ecosystem, package)
   * pairs of each host's cached matches. Only the
   * serving collector calls this, since it deletes the log rows it has taken in. A call made
   * while one runs waits for it: each log row is taken in once.
   */
  followStore(options: FollowOptions = {}): Promise<{ advisories: number; keys: number; hosts: number }> {
    const run = this.#following.then(() => this.#followStore(options.rejudge ?? true, options.clear ?? true));
    this.#following = run.catch(() => undefined);
    return run;
  }

  /** The newest change-log row taken in (load() or followStore()): what housekeeping may clear up to, once every replica has read it. */
  get changeSeq(): number {
    return this.#changeSeq;
  }

  async #followStore(rejudge: boolean, clear: boolean): Promise<{ advisories: number; keys: number; hosts: number }> {
    let advisories = 0;
    const ecosystems = new Set<string>();
    let keys = 0;
    const packages = new Set<string>();
    let kev = false;
    let feeds = false;
    const from = this.#changeSeq;
    for (;;) {
      const batch = await this.#store.advisoryChanges.since(this.#changeSeq);
      const stored: Advisory[] = [];
      const removed: { source: string; id: string }[] = [];
      for (const a of batch.advisories) {
        if ('stored' in a) stored.push(a.stored);
        else removed.push(a.removed);
      }
      advisories += batch.advisories.length;
      const changed = this.correlator.update(stored, removed);
      keys += changed.size;
      for (const k of changed) {
        const cut = k.indexOf('\u0000');
        ecosystems.add(k.slice(0, cut));
        packages.add(k.slice(cut + 1));
      }
      kev ||= batch.kev;
      feeds ||= batch.feeds;
      this.#changeSeq = batch.seq;
      if (!batch.more) break;
    }
    // Rows up to load()'s seq are in the index already; clearing them here (not in load) keeps a CLI's load() from taking rows a serving collector has not read.
    if (clear && this.#changeSeq > this.#clearedSeq) {
      await this.#store.advisoryChanges.clear(this.#changeSeq);
      this.#clearedSeq = this.#changeSeq;
    }
    if (this.#changeSeq === from) return { advisories: 0, keys: 0, hosts: 0 };
    // A new EPSS set changes every host's scores and order (and due dates under epssDueDays): every host, as for KEV.
    if ((kev || feeds) && this.#takeKevAndFeeds(await this.#readKevAndFeeds()).epssChanged) kev = true;
    if ((keys === 0 && !kev) || !rejudge) return { advisories, keys, hosts: 0 };
    if (kev) {
      // Due dates of any finding may move: every content is judged whole.
      const hosts = await this.#store.hosts.ids();
      this.#queueGroups(await this.#store.advisoryChanges.hostsByContentOf(hosts), null);
      return { advisories, keys, hosts: hosts.length };
    }
    const hosts = this.#queueGroups(await this.#store.advisoryChanges.hostsByContentIn(ecosystems), packages);
    return { advisories, keys, hosts };
  }

  #queueGroups(groups: ReadonlyMap<string, string[]>, packages: ReadonlySet<string> | null): number {
    let hosts = 0;
    for (const [hash, group] of groups) {
      this.#fanOuts.push({ hash, hosts: group, packages });
      hosts += group.length;
    }
    this.#start();
    return hosts;
  }

  /** The host's findings now (its latest stored inventory unless one is given), with its history and exceptions; nothing is recorded. */
  findings(agentId: string, inventory?: Inventory, hash?: string, known?: ReadonlyMap<string, StoredHistoryEntry>): Promise<Findings | undefined> {
    return this.#findingsOn(this.#store, agentId, inventory, hash, known);
  }

  async #findingsOn(parts: Parts, agentId: string, given?: Inventory, hash?: string, known?: ReadonlyMap<string, StoredHistoryEntry>): Promise<Findings | undefined> {
    const inventory = given ?? (await parts.reports.latestInventory(agentId));
    if (inventory === undefined) return undefined;
    const history = known ?? (await parts.history.history(agentId));
    const now = this.#now();
    const exceptions = await parts.exceptions.forHost(agentId, now);
    const doc = this.correlator.findings(inventory, {
      policy: this.#policy,
      now,
      kev: this.#kev,
      epss: this.#epss,
      feeds: this.#feeds,
      history,
      exceptions,
      ...(hash === undefined ? {} : { hash }),
    });
    doc.warnings.push(...this.#feedErrors);
    return doc;
  }

  /**
   * Correlates one host now, in a transaction of its own (queued hosts share their slice's):
   * judges the content's timeline (once per state, #judgeContent), lays the host's history
   * over it when its inventory moved to this content, and updates its counts.
   */
  async refresh(agentId: string, inventory: Inventory, hash: string): Promise<Findings> {
    let work = new SliceWork();
    const doc = await this.#store.transaction(async (tx) => {
      work = new SliceWork();
      return this.#refreshOn(tx, work, agentId, inventory, hash);
    });
    this.#correlated(work, agentId);
    this.#apply(work, true);
    return doc;
  }

  async #refreshOn(tx: Parts, w: SliceWork, agentId: string, inventory: Inventory, hash: string): Promise<Findings> {
    const now = this.#now();
    const { matches } = this.correlator.matches(inventory, hash);
    // Forgotten again if this host fails: its savepoint takes the content's rows with it.
    const judged = await this.#judgeContent(tx, w, hash, matches, now);
    try {
      if ((await tx.history.hostContent(agentId)).content !== hash) {
        await tx.history.switchContent(agentId, hash, new Set(matches.map((m) => historyKey(m.advisory.id, m.package))), now);
      }
      const doc = (await this.#findingsOn(tx, agentId, inventory, hash)) as Findings;
      const open = doc.findings.filter((f) => isActionable(f.status)).length;
      const overdue = doc.findings.filter((f) => f.overdue).length;
      await tx.hosts.setFindingCounts(agentId, open, overdue);
      return doc;
    } catch (err) {
      if (judged) w.judged.set(hash, null);
      throw err;
    }
  }

  /** A host correlated whole in `w` (its savepoint released). */
  #correlated(w: SliceWork, agentId: string): void {
    w.stats.correlated++;
    if (this.#fanOuts.length > w.fanOuts || this.#counts.size > w.countsTaken || w.counts.size > 0) w.fresh.add(agentId);
  }

  /**
   * Judges a content's findings (no host's history or exceptions) against its timeline and
   * writes what changed; skipped when it was judged already at this index generation, feed
   * state and day (due dates turn overdue by the day). True when it was judged now.
   */
  async #judgeContent(tx: Parts, w: SliceWork, hash: string, matches: readonly RawMatch[], now: Date): Promise<boolean> {
    const state = `${this.#version} ${this.correlator.generation} ${now.toISOString().slice(0, 10)}`;
    const kev = this.#kev;
    const epss = this.#epss;
    if ((w.judged.has(hash) ? w.judged.get(hash) : this.#judged.get(hash)) === state) return false;
    const previous = await tx.history.contentHistory(hash);
    const findings = buildFindings(matches, { policy: this.#policy, now, kev, epss, history: previous });
    await tx.history.recordContent(hash, findings, now, previous);
    w.judged.set(hash, state);
    return true;
  }

  /** Hosts waiting for their turn (the findings_queue gauge), a feed change's fan-out included. */
  get queued(): number {
    let n = this.#queue.size;
    for (const f of this.#fanOuts) n += f.hosts.length;
    n += this.#counts.size;
    return n;
  }

  /** Queues a host for correlation; the newest inventory wins when it is queued twice. */
  schedule(agentId: string, inventory: Inventory, hash: string): void {
    this.#queue.delete(agentId);
    this.#queue.set(agentId, { inventory, hash });
    this.#start();
  }

  /**
   * Queues every host that has reported, with its stored inventory: at start, since the
   * advisories may have changed since the last run (a feed import while it was down) and a
   * killed collector may not have correlated its last reports.
   */
  async scheduleAll(agentIds: Iterable<string>): Promise<void> {
    // By content, as a feed change: a restart of a collector with 100,000 hosts judges its 2,000 contents, not each host.
    this.#queueGroups(await this.#store.advisoryChanges.hostsByContentOf(agentIds), null);
  }

  /** Queues hosts whose stored inventory changed under this process (a `reports import`): it replaces anything queued for them. */
  scheduleStored(agentIds: Iterable<string>): void {
    for (const id of agentIds) {
      this.#queue.delete(id);
      this.#queue.set(id, { inventory: null });
    }
    this.#start();
  }

  /**
   * Drops the queue (the collector is closing; the findings are derived state, rebuilt at
   * the next start). Resolves when the slice in progress has ended: close the store after.
   */
  stop(): Promise<void> {
    this.#stopped = true;
    this.#queue.clear();
    this.#fanOuts.length = 0;
    this.#counts.clear();
    this.#countsOrder = [];
    this.#fresh.clear();
    clearTimeout(this.#retryTimer);
    if (this.#retryTimer !== undefined) {
      this.#retryTimer = undefined;
      this.#finish();
    }
    return this.#slice;
  }

  #start(): void {
    if (!this.#running && !this.#stopped && (this.#queue.size > 0 || this.#fanOuts.length > 0 || this.#counts.size > 0)) {
      this.#running = true;
      setImmediate(() => {
        this.#turn();
      });
    }
  }

  #turn(): void {
    this.#slice = this.#next().catch((err: unknown) => {
      // #next handles the store's failures itself; this is a bug's, and drained() must not wait for ever on it.
      this.#log.error({ err }, 'correlating queued hosts failed');
      this.#finish();
    });
  }

  #finish(): void {
    this.#running = false;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves when every queued host has been correlated. */
  drained(): Promise<void> {
    if (!this.#running) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  get pending(): number {
    return this.queued;
  }

  /**
   * Correlates queued hosts for up to SLICE_MS, then yields to the event loop so
   * handshakes, acks and heartbeats are not held up. One host per turn was too slow: a
   * turn ingests many reports, so the queue grew to one parsed inventory (~400 KB) per
   * host and the fleet bench peaked at 4 GB. The transaction awaits only store calls:
   * it never stays open across a turn of the event loop.
   */
  async #next(): Promise<void> {
    // Memory only, so outside the transaction (which may run twice): the order the counts are written in.
    if (this.#countsOrder.length === 0 && this.#fanOuts.length === 0 && this.#counts.size > 0) this.#countsOrder = [...this.#counts.keys()].sort().reverse();
    let work = new SliceWork();
    let failure: { err: unknown } | undefined;
    try {
      // The hosts of one slice share a commit: a burst of reports otherwise cost a commit
      // per host for its finding counts alone. Each host is a savepoint, so one that fails
      // rolls back alone and keeps its previous findings.
      await this.#store.transaction(async (tx) => {
        work = new SliceWork();
        await this.#sliceOn(tx, work);
      });
    } catch (err) {
      // The commit itself failed (the database went away, disk full): nothing of the slice
      // was written, so its work stays queued (#apply) and runs again after a wait that
      // grows while the failures go on. Dropped, its hosts kept their previous findings
      // until their next changed report, and a fan-out's hosts until the next feed change.
      failure = { err };
    }
    this.#apply(work, failure === undefined);
    if (failure !== undefined) {
      this.stats.failed++;
      this.#backoffMs = Math.min(MAX_RETRY_MS, this.#backoffMs === 0 ? this.#retryMs : this.#backoffMs * 2);
      this.#log.error({ err: failure.err, retryMs: this.#backoffMs }, `storing the findings of correlated hosts failed; trying again in ${this.#backoffMs} ms`);
    } else this.#backoffMs = 0;
    if (this.#stopped || (this.#queue.size === 0 && this.#fanOuts.length === 0 && this.#counts.size === 0)) {
      this.#finish();
      return;
    }
    if (failure !== undefined) {
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined;
        this.#turn();
      }, this.#backoffMs);
      return;
    }
    setImmediate(() => {
      this.#turn();
    });
  }

  /**
   * Takes a slice's work in when it committed: its queue entries, groups and counts are
   * taken out, what it judged and counted taken in. When it did not, they stay queued for
   * the slice that runs it again.
   */
  #apply(w: SliceWork, committed: boolean): void {
    if (!this.#stopped) {
      if (committed) {
        for (const [id, job] of w.taken) if (this.#queue.get(id) === job) this.#queue.delete(id);
        this.#fanOuts.splice(0, w.fanOuts);
        for (const id of this.#countsOrder.splice(this.#countsOrder.length - w.countsTaken)) this.#counts.delete(id);
        for (const [hash, state] of w.judged) {
          if (state === null) this.#judged.delete(hash);
          else {
            // Bounded as the correlator's cache: a content judged again costs a read and a comparison.
            if (this.#judged.size >= MAX_JUDGED) this.#judged.clear();
            this.#judged.set(hash, state);
          }
        }
        for (const [id, c] of w.counts) this.#counts.set(id, c);
        if (w.done) this.#fresh.clear();
        else for (const id of w.fresh) this.#fresh.add(id);
        this.stats.correlated += w.stats.correlated;
        this.stats.fannedOut += w.stats.fannedOut;
        // A host that failed in a slice that did not commit is counted when its run again ends.
        this.stats.failed += w.stats.failed;
      }
      // As scheduleStored, after the slice (whose commit left them to be correlated one by one).
      for (const id of w.requeue) {
        this.#queue.delete(id);
        this.#queue.set(id, { inventory: null });
      }
    }
    for (const log of w.logs) log();
  }

  /** Queued in this process and not taken by the slice `w`, or left by it to be correlated one by one. */
  #isQueued(w: SliceWork, agentId: string): boolean {
    if (w.requeue.has(agentId)) return true;
    const job = this.#queue.get(agentId);
    return job !== undefined && w.taken.get(agentId) !== job;
  }

  #isFresh(w: SliceWork, agentId: string): boolean {
    return this.#fresh.has(agentId) || w.fresh.has(agentId);
  }

  /**
   * A stored inventory over the package limit (from before it was lowered) is not loaded
   * (Reports.latestInventory): parsing and matching it stalled every start. Said once
   * per host and start, so the operator knows why the host has no fresh findings.
   */
  async #overLimit(tx: Parts, w: SliceWork, agentId: string): Promise<void> {
    const count = (await tx.hosts.get(agentId))?.packageCount ?? 0;
    if (count <= LIMITS.packages) return;
    w.logs.push(() => {
      this.#log.warn(
        { agentId, packages: count, limit: LIMITS.packages, code: 'PW_ERR_TOO_MANY_PACKAGES' },
        `the stored inventory of agent ${agentId} lists ${count} packages, over the limit of ${LIMITS.packages}: not correlated; its next report replaces it`,
      );
    });
  }

  /**
   * Correlates queued hosts, then fans out feed changes, for up to SLICE_MS, in the slice's
   * transaction; `w.done` when every queue was empty. Reads the queues, writes only `w`.
   */
  async #sliceOn(tx: AsyncStore, w: SliceWork): Promise<void> {
    const until = performance.now() + (this.#queue.size > 0 ? SLICE_MS : FANOUT_SLICE_MS);
    const queue = this.#queue.entries();
    for (;;) {
      if (this.#stopped) return;
      const next = this.#nextQueued(queue, w);
      if (next !== undefined) await this.#correlateQueued(tx, w, next[0], next[1]);
      else if (this.#fanOuts.length > w.fanOuts) await this.#fanOutNext(tx, w);
      else if (this.#countsOrder.length > w.countsTaken) await this.#writeCounts(tx, w);
      else {
        // Counts not in the write order yet, or hosts to correlate one by one: the next slice's, once this one's work is taken in.
        if (this.#counts.size > w.countsTaken || w.counts.size > 0 || w.requeue.size > 0) return;
        w.done = true;
        return;
      }
      if (performance.now() >= until) return;
    }
  }

  /** The next queue entry `w` has not taken (a host queued again since it was taken comes again, with its newer job). */
  #nextQueued(queue: Iterator<[string, Job]>, w: SliceWork): [string, Job] | undefined {
    for (;;) {
      const step = queue.next();
      if (step.done === true) return undefined;
      if (w.taken.get(step.value[0]) !== step.value[1]) return step.value;
    }
  }

  async #correlateQueued(tx: AsyncStore, w: SliceWork, agentId: string, job: Job): Promise<void> {
    w.taken.set(agentId, job);
    try {
      const inventory = job.inventory ?? (await tx.reports.latestInventory(agentId));
      if (inventory === undefined) {
        await this.#overLimit(tx, w, agentId);
        return;
      }
      const hash = job.inventory === null ? packagesHash(inventory) : job.hash;
      await tx.transaction(async (sp) => this.#refreshOn(sp, w, agentId, inventory, hash));
      this.#correlated(w, agentId);
    } catch (err) {
      w.stats.failed++;
      w.logs.push(() => {
        this.#log.error({ err, agentId }, 'correlating a host failed; its findings are from its previous report');
      });
    }
  }

  async #fanOutNext(tx: AsyncStore, w: SliceWork): Promise<void> {
    const f = this.#fanOuts[w.fanOuts++] as FanOut;
    try {
      // One content group in a savepoint: a failing one rolls back alone.
      const r = await tx.transaction(async (sp) => this.#fanOutGroup(sp, w, f));
      for (const id of r.requeue) w.requeue.add(id);
      if (r.counts !== null) for (const agentId of r.waiting) w.counts.set(agentId, { agentId, content: f.hash, ...r.counts });
    } catch (err) {
      w.stats.failed++;
      w.logs.push(() => {
        this.#log.error({ err, content: f.hash, hosts: f.hosts.length }, 'judging a content after a feed change failed; its hosts are correlated one by one');
      });
      w.judged.set(f.hash, null);
      for (const id of f.hosts) w.requeue.add(id);
    }
  }

  /** Writes the next batch of the judged groups' counts, in agent id order; hosts whose counts are not their content's are correlated one by one. */
  async #writeCounts(tx: AsyncStore, w: SliceWork): Promise<void> {
    const order = this.#countsOrder;
    const batch: Counts[] = [];
    while (batch.length < COUNTS_BATCH && order.length > w.countsTaken) {
      const id = order[order.length - 1 - w.countsTaken] as string;
      w.countsTaken++;
      const c = w.counts.get(id) ?? this.#counts.get(id);
      w.counts.delete(id);
      // Queued since (a newer report) or correlated whole since: its own turn decides.
      if (c !== undefined && !this.#isQueued(w, id) && !this.#isFresh(w, id)) batch.push(c);
    }
    const { set, others } = await tx.hosts.setContentFindingCounts(batch, this.#now());
    w.stats.fannedOut += set;
    for (const id of others) w.requeue.add(id);
  }

  /**
   * One content group: its content judged once, then its counts given to every host of the
   * group whose counts are the content's (no exceptions of its own, history laid over this
   * content, due dates from publication); the others are correlated whole.
   */
  async #fanOutGroup(tx: Parts, w: SliceWork, f: FanOut): Promise<{ waiting: string[]; counts: { open: number; overdue: number } | null; requeue: string[] }> {
    const waiting = f.hosts.filter((id) => !this.#isQueued(w, id) && !this.#isFresh(w, id));
    if (waiting.length === 0) return { waiting, counts: null, requeue: [] };
    let matches = this.correlator.matchesOf(f.hash);
    if (matches === undefined) {
      // Not cached (pushed out, or not reported since start): match one host's stored inventory once.
      for (const id of waiting) {
        const inventory = await tx.reports.latestInventory(id);
        if (inventory !== undefined && packagesHash(inventory) === f.hash) {
          matches = this.correlator.matches(inventory, f.hash).matches;
          break;
        }
      }
    }
    const now = this.#now();
    // Nothing readable of this content (over the package limit, say): each host on its own.
    if (matches === undefined) return { waiting, counts: null, requeue: waiting };
    const kev = this.#kev;
    const epss = this.#epss;
    if (f.packages === null) await this.#judgeContent(tx, w, f.hash, matches, now);
    else {
      // The content's timeline: only the changed packages' findings can have changed.
      const only = f.packages;
      const previous = await tx.history.contentHistory(f.hash, [...only]);
      await tx.history.recordContent(f.hash, buildFindings(matches.filter((m) => only.has(m.package)), { policy: this.#policy, now, kev, epss, history: previous }), now, previous);
    }
    // Its counts, as a host with no exceptions of its own has them (first-seen plays no part when due dates run from publication).
    const fleetWide = buildFindings(matches, { policy: this.#policy, now, kev, epss, exceptions: await tx.exceptions.fleetWide(now) });
    // With clockStart first-seen (or an advisory with no publication date) a due date is the host's own.
    if (this.#policy.clockStart !== 'published' || fleetWide.some((x) => isActionable(x.status) && x.published === null)) return { waiting, counts: null, requeue: waiting };
    const open = fleetWide.filter((x) => isActionable(x.status)).length;
    const overdue = fleetWide.filter((x) => x.overdue).length;
    return { waiting, counts: { open, overdue }, requeue: [] };
  }
}
