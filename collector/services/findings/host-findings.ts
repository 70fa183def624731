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
import type { AdvisoryChanges } from '../../store/advisory-changes.ts';
import type { AdvisoryStore } from '../../store/advisories.ts';
import type { EpssStore } from '../../store/epss.ts';
import type { Fleet } from '../../store/fleet.ts';
import type { FindingHistoryStore, StoredHistoryEntry } from '../../store/history.ts';
import type { Store } from '../../store/store.ts';

/** Statuses that still need someone to act before their due date. */
/** One content's hosts waiting for a feed change's findings (see the file comment). */
interface FanOut {
  hash: string;
  hosts: string[];
  /** The advisory packages whose index keys changed (the content's findings that may have), or null: judge it whole. */
  packages: ReadonlySet<string> | null;
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
export type FindingsStore = Pick<Store, 'advisories' | 'advisoryChanges' | 'epss' | 'history' | 'reports' | 'hosts' | 'transactional'>;

export interface HostFindingsOptions {
  /** The store the caller opened (or the parts of it HostFindings reads and writes). */
  store: FindingsStore;
  policy: DuePolicy;
  logger: Logger;
  correlator?: Correlator;
  now?: () => Date;
}

export class HostFindings {
  readonly correlator: Correlator;
  readonly #advisories: AdvisoryStore;
  readonly #changes: AdvisoryChanges;
  /** The last advisory change log row load() or followStore() took in. */
  #changeSeq = 0;
  #clearedSeq = -1;
  readonly #history: FindingHistoryStore;
  readonly #fleet: Pick<Fleet, 'reports' | 'hosts'>;
  readonly #policy: DuePolicy;
  readonly #log: Logger;
  readonly #now: () => Date;
  /** One write transaction per slice, a savepoint per host in it (see #next). */
  readonly #sliceTx: (work: () => boolean) => boolean;
  readonly #refreshOne: (agentId: string, inventory: Inventory, hash: string) => Findings;
  /** One content group of a fan-out, in a savepoint: a failing one rolls back alone. */
  readonly #fanOutOne: (f: FanOut) => void;
  #kev = new Map<string, KevInfo>();
  #epss: ReadonlyMap<string, EpssScore> = new Map();
  readonly #epssOf: () => ReturnType<EpssStore['current']>;
  #feeds: FeedState[] = [];
  #feedErrors: string[] = [];
  /** null: load the host's latest stored inventory when its turn comes. */
  readonly #queue = new Map<string, { inventory: Inventory; hash: string } | null>();
  readonly #fanOuts: FanOut[] = [];
  /** Counts the judged groups give their hosts, written after the last group in agent id order (Hosts.setContentFindingCounts). */
  readonly #counts = new Map<string, { agentId: string; content: string; open: number; overdue: number }>();
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
  /** fannedOut: hosts a feed change's fan-out gave their content's counts (not counted in correlated). */
  stats = { correlated: 0, failed: 0, fannedOut: 0 };

  constructor(opts: HostFindingsOptions) {
    this.correlator = opts.correlator ?? new Correlator();
    const store = opts.store;
    const { advisories, advisoryChanges, epss, history } = store;
    this.#advisories = advisories;
    this.#changes = advisoryChanges;
    this.#epssOf = () => epss.current();
    this.#history = history;
    this.#fleet = store;
    this.#policy = opts.policy;
    this.#log = opts.logger;
    this.#now = opts.now ?? (() => new Date());
    this.#sliceTx = store.transactional((work: () => boolean) => work());
    this.#refreshOne = store.transactional((agentId: string, inventory: Inventory, hash: string) => this.refresh(agentId, inventory, hash));
    this.#fanOutOne = store.transactional((f: FanOut) => {
      this.#fanOutGroup(f);
    });
  }

  /** (Re)loads advisories, KEV and feed states from the store; call at start and after a feed import. */
  load(): { advisories: number; kev: number; feeds: number } {
    // Read first: a change written while the advisories load is applied again by followStore, which is harmless.
    this.#changeSeq = this.#changes.lastSeq();
    const all = [...this.#advisories.allAdvisories()];
    this.correlator.apply(all);
    return { advisories: all.length, ...this.#loadKevAndFeeds() };
  }

  #loadKevAndFeeds(): { kev: number; feeds: number; epss: number; epssChanged: boolean } {
    this.#version++;
    this.#kev = new Map([...this.#advisories.kev()].map(([cve, k]) => [cve, { dueDate: k.dueDate }]));
    // EPSS scores are read again only when the stored set changed (an import or removal writes its feed row).
    const epss = this.#epssOf();
    const epssChanged = epss.scores !== this.#epss;
    this.#epss = epss.scores;
    const rows = this.#advisories.feeds();
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
   * serving collector calls this, since it deletes the log rows it has taken in.
   */
  followStore(): { advisories: number; keys: number; hosts: number } {
    let advisories = 0;
    const ecosystems = new Set<string>();
    let keys = 0;
    const packages = new Set<string>();
    let kev = false;
    let feeds = false;
    const from = this.#changeSeq;
    for (;;) {
      const batch = this.#changes.since(this.#changeSeq);
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
    if (this.#changeSeq > this.#clearedSeq) {
      this.#changes.clear(this.#changeSeq);
      this.#clearedSeq = this.#changeSeq;
    }
    if (this.#changeSeq === from) return { advisories: 0, keys: 0, hosts: 0 };
    // A new EPSS set changes every host's scores and order (and due dates under epssDueDays): every host, as for KEV.
    if ((kev || feeds) && this.#loadKevAndFeeds().epssChanged) kev = true;
    if (keys === 0 && !kev) return { advisories, keys, hosts: 0 };
    if (kev) {
      // Due dates of any finding may move: every content is judged whole.
      const hosts = this.#fleet.hosts.ids();
      this.#queueGroups(this.#changes.hostsByContentOf(hosts), null);
      return { advisories, keys, hosts: hosts.length };
    }
    const hosts = this.#queueGroups(this.#changes.hostsByContentIn(ecosystems), packages);
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

  /** The host's findings now, with its history and exceptions; nothing is recorded. */
  findings(agentId: string, inventory = this.#fleet.reports.latestInventory(agentId), hash?: string, known?: ReadonlyMap<string, StoredHistoryEntry>): Findings | undefined {
    if (inventory === undefined) return undefined;
    const history = known ?? this.#history.history(agentId);
    const now = this.#now();
    const doc = this.correlator.findings(inventory, {
      policy: this.#policy,
      now,
      kev: this.#kev,
      epss: this.#epss,
      feeds: this.#feeds,
      history,
      exceptions: this.#history.exceptions(agentId, now),
      ...(hash === undefined ? {} : { hash }),
    });
    doc.warnings.push(...this.#feedErrors);
    return doc;
  }

  /**
   * Correlates: judges the content's timeline (once per state, #judgeContent), lays the
   * host's history over it when its inventory moved to this content, and updates its counts.
   */
  refresh(agentId: string, inventory: Inventory, hash: string): Findings {
    const now = this.#now();
    const { matches } = this.correlator.matches(inventory, hash);
    // Forgotten again if this host fails: its savepoint takes the content's rows with it.
    const judged = this.#judgeContent(hash, matches, now);
    try {
      return this.#refreshHost(agentId, inventory, hash, matches, now);
    } catch (err) {
      if (judged) this.#judged.delete(hash);
      throw err;
    }
  }

  #refreshHost(agentId: string, inventory: Inventory, hash: string, matches: readonly RawMatch[], now: Date): Findings {
    if (this.#history.hostContent(agentId).content !== hash) {
      this.#history.switchContent(agentId, hash, new Set(matches.map((m) => historyKey(m.advisory.id, m.package))), now);
    }
    const doc = this.findings(agentId, inventory, hash) as Findings;
    const open = doc.findings.filter((f) => isActionable(f.status)).length;
    const overdue = doc.findings.filter((f) => f.overdue).length;
    this.#fleet.hosts.setFindingCounts(agentId, open, overdue);
    this.stats.correlated++;
    if (this.#fanOuts.length > 0 || this.#counts.size > 0) this.#fresh.add(agentId);
    return doc;
  }

  /**
   * Judges a content's findings (no host's history or exceptions) against its timeline and
   * writes what changed; skipped when it was judged already at this index generation, feed
   * state and day (due dates turn overdue by the day). True when it was judged now.
   */
  #judgeContent(hash: string, matches: readonly RawMatch[], now: Date): boolean {
    const state = `${this.#version} ${this.correlator.generation} ${now.toISOString().slice(0, 10)}`;
    if (this.#judged.get(hash) === state) return false;
    const previous = this.#history.contentHistory(hash);
    const findings = buildFindings(matches, { policy: this.#policy, now, kev: this.#kev, epss: this.#epss, history: previous });
    this.#history.recordContent(hash, findings, now, previous);
    // Bounded as the correlator's cache: a content judged again costs a read and a comparison.
    if (this.#judged.size >= MAX_JUDGED) this.#judged.clear();
    this.#judged.set(hash, state);
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
  scheduleAll(agentIds: Iterable<string>): void {
    // By content, as a feed change: a restart of a collector with 100,000 hosts judges its 2,000 contents, not each host.
    this.#queueGroups(this.#changes.hostsByContentOf(agentIds), null);
  }

  /** Queues hosts whose stored inventory changed under this process (a `reports import`): it replaces anything queued for them. */
  scheduleStored(agentIds: Iterable<string>): void {
    for (const id of agentIds) {
      this.#queue.delete(id);
      this.#queue.set(id, null);
    }
    this.#start();
  }

  /** Drops the queue (the collector is closing; the findings are derived state, rebuilt at the next start). */
  stop(): void {
    this.#stopped = true;
    this.#queue.clear();
    this.#fanOuts.length = 0;
    this.#counts.clear();
    this.#countsOrder = [];
    this.#fresh.clear();
  }

  #start(): void {
    if (!this.#running && !this.#stopped && (this.#queue.size > 0 || this.#fanOuts.length > 0 || this.#counts.size > 0)) {
      this.#running = true;
      setImmediate(() => {
        this.#next();
      });
    }
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
   * host and the fleet bench peaked at 4 GB.
   */
  #next(): void {
    let done: boolean;
    try {
      // The hosts of one slice share a commit: a burst of reports otherwise cost a commit
      // per host for its finding counts alone. Each host is a savepoint, so one that fails
      // rolls back alone and keeps its previous findings.
      done = this.#sliceTx(() => this.#slice());
    } catch (err) {
      done = false;
      // The commit itself failed (disk full, I/O error): the slice's hosts keep their
      // previous findings until their next report or the next start.
      this.stats.failed++;
      this.#log.error({ err }, 'storing the findings of correlated hosts failed');
      // The contents judged in it were not stored either.
      this.#judged.clear();
    }
    if (done || this.#stopped || (this.#queue.size === 0 && this.#fanOuts.length === 0 && this.#counts.size === 0)) {
      this.#running = false;
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const w of waiters) w();
      return;
    }
    setImmediate(() => {
      this.#next();
    });
  }

  /**
   * A stored inventory over the package limit (from before it was lowered) is not loaded
   * (Reports.latestInventory): parsing and matching it stalled every start. Said once
   * per host and start, so the operator knows why the host has no fresh findings.
   */
  #overLimit(agentId: string): void {
    const count = this.#fleet.hosts.get(agentId)?.packageCount ?? 0;
    if (count <= LIMITS.packages) return;
    this.#log.warn(
      { agentId, packages: count, limit: LIMITS.packages, code: 'PW_ERR_TOO_MANY_PACKAGES' },
      `the stored inventory of agent ${agentId} lists ${count} packages, over the limit of ${LIMITS.packages}: not correlated; its next report replaces it`,
    );
  }

  /** Correlates queued hosts, then fans out feed changes, for up to SLICE_MS; true when both queues are empty. */
  #slice(): boolean {
    const until = performance.now() + (this.#queue.size > 0 ? SLICE_MS : FANOUT_SLICE_MS);
    for (;;) {
      if (this.#stopped) return true;
      const first = this.#queue.entries().next();
      if (first.done !== true) {
        const [agentId, job] = first.value;
        this.#queue.delete(agentId);
        try {
          if (job !== null) this.#refreshOne(agentId, job.inventory, job.hash);
          else {
            const inventory = this.#fleet.reports.latestInventory(agentId);
            if (inventory !== undefined) this.#refreshOne(agentId, inventory, packagesHash(inventory));
            else this.#overLimit(agentId);
          }
        } catch (err) {
          this.stats.failed++;
          this.#log.error({ err, agentId }, 'correlating a host failed; its findings are from its previous report');
        }
      } else if (this.#fanOuts.length === 0 && this.#counts.size > 0) {
        this.#writeCounts();
      } else {
        const f = this.#fanOuts.shift();
        if (f === undefined) {
          this.#fresh.clear();
          return true;
        }
        try {
          this.#fanOutOne(f);
        } catch (err) {
          this.stats.failed++;
          this.#log.error({ err, content: f.hash, hosts: f.hosts.length }, 'judging a content after a feed change failed; its hosts are correlated one by one');
          this.#judged.delete(f.hash);
          this.scheduleStored(f.hosts);
        }
      }
      if (performance.now() >= until) return false;
    }
  }

  /** Writes the next batch of the judged groups' counts, in agent id order; hosts whose counts are not their content's are correlated one by one. */
  #writeCounts(): void {
    if (this.#countsOrder.length === 0) this.#countsOrder = [...this.#counts.keys()].sort().reverse();
    const batch: { agentId: string; content: string; open: number; overdue: number }[] = [];
    while (batch.length < COUNTS_BATCH && this.#countsOrder.length > 0) {
      const id = this.#countsOrder.pop() as string;
      const c = this.#counts.get(id);
      this.#counts.delete(id);
      // Queued since (a newer report) or correlated whole since: its own turn decides.
      if (c !== undefined && !this.#queue.has(id) && !this.#fresh.has(id)) batch.push(c);
    }
    const { set, others } = this.#fleet.hosts.setContentFindingCounts(batch, this.#now());
    this.stats.fannedOut += set;
    if (others.length > 0) this.scheduleStored(others);
  }

  /**
   * One content group: its content judged once, then its counts given to every host of the
   * group whose counts are the content's (no exceptions of its own, history laid over this
   * content, due dates from publication); the others are correlated whole.
   */
  #fanOutGroup(f: FanOut): void {
    const waiting = f.hosts.filter((id) => !this.#queue.has(id) && !this.#fresh.has(id));
    if (waiting.length === 0) return;
    let matches = this.correlator.matchesOf(f.hash);
    if (matches === undefined) {
      // Not cached (pushed out, or not reported since start): match one host's stored inventory once.
      for (const id of waiting) {
        const inventory = this.#fleet.reports.latestInventory(id);
        if (inventory !== undefined && packagesHash(inventory) === f.hash) {
          matches = this.correlator.matches(inventory, f.hash).matches;
          break;
        }
      }
    }
    const now = this.#now();
    if (matches === undefined) {
      // Nothing readable of this content (over the package limit, say): each host on its own.
      this.scheduleStored(waiting);
      return;
    }
    if (f.packages === null) this.#judgeContent(f.hash, matches, now);
    else {
      // The content's timeline: only the changed packages' findings can have changed.
      const only = f.packages;
      const previous = this.#history.contentHistory(f.hash, [...only]);
      this.#history.recordContent(f.hash, buildFindings(matches.filter((m) => only.has(m.package)), { policy: this.#policy, now, kev: this.#kev, epss: this.#epss, history: previous }), now, previous);
    }
    // Its counts, as a host with no exceptions of its own has them (first-seen plays no part when due dates run from publication).
    const fleetWide = buildFindings(matches, { policy: this.#policy, now, kev: this.#kev, epss: this.#epss, exceptions: this.#history.fleetExceptions(now) });
    // With clockStart first-seen (or an advisory with no publication date) a due date is the host's own.
    if (this.#policy.clockStart !== 'published' || fleetWide.some((x) => isActionable(x.status) && x.published === null)) {
      this.scheduleStored(waiting);
      return;
    }
    const open = fleetWide.filter((x) => isActionable(x.status)).length;
    const overdue = fleetWide.filter((x) => x.overdue).length;
    for (const agentId of waiting) this.#counts.set(agentId, { agentId, content: f.hash, open, overdue });
  }
}
