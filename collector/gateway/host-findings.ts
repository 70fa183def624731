/**
 * Findings per enrolled host: the shared Correlator (advisories loaded from the store at
 * start, then kept in step with it by followStore), each host's finding history keyed by its agent id, and the open/overdue counts
 * the host list shows. A new inventory is correlated after its report was acknowledged,
 * one host per event-loop turn, so a burst of reports never delays acks or heartbeats;
 * a host that reports twice before its turn is correlated once, with the newest inventory.
 *
 * A feed change is fanned out by content, not by host: the hosts of the changed ecosystems
 * are grouped by the content of their latest inventory, each group's changed keys are
 * matched once (Correlator.matchesOfKeys, no inventory parsed), and each host of the group
 * gets only the findings of those packages re-judged and written (its history, first-seen
 * and exceptions apply as in a full correlation), with its counts moved by the difference.
 * A full correlation per host (parse its inventory, judge and compare its hundreds of
 * findings) cost about 1.6 ms, minutes for a fleet of 100,000 (npm run bench: fan-out).
 */
import { packagesHash } from '../../shared/inventory-hash.ts';
import { type Findings, type Inventory, LIMITS } from '../../shared/protocol.ts';
import { Correlator, type FeedState } from '../correlate/correlator.ts';
import type { RawMatch } from '../correlate/match.ts';
import { buildFindings, type KevInfo } from '../correlate/findings.ts';
import type { EpssScore } from '../feeds/epss.ts';
import type { Advisory } from '../feeds/types.ts';
import type { DuePolicy } from '../correlate/policy.ts';
import type { Logger } from '../logger.ts';
import { AdvisoryChanges } from '../store/advisory-changes.ts';
import { AdvisoryStore } from '../store/advisories.ts';
import { currentEpss } from '../store/epss.ts';
import type { Db } from '../store/db.ts';
import type { FleetStore } from '../store/fleet.ts';
import { FindingHistoryStore, type StoredHistoryEntry } from '../store/history.ts';

/** Statuses that still need someone to act before their due date. */
const OPEN = new Set(['open', 'unfixed', 'fixed-pending-reboot']);
/** One content's hosts waiting for a feed change's findings (see the file comment). */
interface FanOut {
  hash: string;
  keys: ReadonlySet<string>;
  /** Ids of the advisories that changed: only their findings can change (each advisory entry is matched on its own). */
  advisories: ReadonlySet<string>;
  hosts: string[];
  next: number;
}

/** What a fan-out group's hosts re-judge: the changed advisories' matches on the changed packages the content holds. */
interface ChangedFindings {
  matches: readonly RawMatch[];
  advisories: readonly string[];
  packages: readonly string[];
}

/** How long one event-loop turn may spend correlating queued hosts. */
const SLICE_MS = 10;

export interface HostFindingsOptions {
  db: Db;
  fleet: FleetStore;
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
  readonly #fleet: FleetStore;
  readonly #policy: DuePolicy;
  readonly #log: Logger;
  readonly #now: () => Date;
  /** One write transaction per slice, a savepoint per host in it (see #next). */
  readonly #sliceTx: (work: () => boolean) => boolean;
  readonly #refreshOne: (agentId: string, inventory: Inventory, hash: string) => Findings;
  #kev = new Map<string, KevInfo>();
  #epss: ReadonlyMap<string, EpssScore> = new Map();
  readonly #epssOf: () => ReturnType<typeof currentEpss>;
  #feeds: FeedState[] = [];
  #feedErrors: string[] = [];
  /** null: load the host's latest stored inventory when its turn comes. */
  readonly #queue = new Map<string, { inventory: Inventory; hash: string } | null>();
  readonly #fanOuts: FanOut[] = [];
  /**
   * Hosts correlated whole since the oldest pending fan-out was queued: their findings are
   * current already and their content may no longer be the group's, so the fan-out skips them.
   */
  readonly #fresh = new Set<string>();
  readonly #fanOutOne: (agentId: string, changed: ChangedFindings) => void;
  #running = false;
  #stopped = false;
  #waiters: (() => void)[] = [];
  /** fannedOut: hosts whose findings a feed change's fan-out re-judged (not counted in correlated). */
  stats = { correlated: 0, failed: 0, fannedOut: 0 };

  constructor(opts: HostFindingsOptions) {
    this.correlator = opts.correlator ?? new Correlator();
    this.#advisories = new AdvisoryStore(opts.db);
    this.#changes = new AdvisoryChanges(opts.db);
    this.#epssOf = () => currentEpss(opts.db);
    this.#history = new FindingHistoryStore(opts.db);
    this.#fleet = opts.fleet;
    this.#policy = opts.policy;
    this.#log = opts.logger;
    this.#now = opts.now ?? (() => new Date());
    this.#sliceTx = opts.db.transaction((work: () => boolean) => work());
    this.#refreshOne = opts.db.transaction((agentId: string, inventory: Inventory, hash: string) => this.refresh(agentId, inventory, hash));
    this.#fanOutOne = opts.db.transaction((agentId: string, changed: ChangedFindings) => {
      this.#judgeChanged(agentId, changed);
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
    const changedKeys = new Set<string>();
    const changedIds = new Set<string>();
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
        changedIds.add('stored' in a ? a.stored.id : a.removed.id);
      }
      advisories += batch.advisories.length;
      const changed = this.correlator.update(stored, removed);
      keys += changed.size;
      for (const k of changed) {
        changedKeys.add(k);
        ecosystems.add(k.slice(0, k.indexOf('\u0000')));
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
      // Due dates of any finding may move: every host is correlated whole.
      const hosts = this.#fleet.reportedAgentIds();
      this.scheduleStored(hosts);
      return { advisories, keys, hosts: hosts.length };
    }
    let hosts = 0;
    for (const [hash, group] of this.#changes.hostsByContentIn(ecosystems)) {
      this.#fanOuts.push({ hash, keys: changedKeys, advisories: changedIds, hosts: group, next: 0 });
      hosts += group.length;
    }
    this.#start();
    return { advisories, keys, hosts };
  }

  /** The host's findings now, with its history and exceptions; nothing is recorded. */
  findings(agentId: string, inventory = this.#fleet.latestInventory(agentId), hash?: string, known?: ReadonlyMap<string, StoredHistoryEntry>): Findings | undefined {
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

  /** Correlates, records the history and updates the host's counts. */
  refresh(agentId: string, inventory: Inventory, hash: string): Findings {
    const history = this.#history.history(agentId);
    const doc = this.findings(agentId, inventory, hash, history) as Findings;
    const now = this.#now();
    this.#history.record(agentId, doc.findings, now, history);
    const open = doc.findings.filter((f) => OPEN.has(f.status)).length;
    const overdue = doc.findings.filter((f) => f.overdue).length;
    this.#fleet.setFindingCounts(agentId, open, overdue);
    this.stats.correlated++;
    if (this.#fanOuts.length > 0) this.#fresh.add(agentId);
    return doc;
  }

  /**
   * Re-judges the host's findings of the changed advisories on the changed packages from
   * the group's current matches, records what changed, and moves its counts by the
   * difference: what a full correlation would give those findings (history, first seen,
   * exceptions), without the rest of the host's findings.
   */
  #judgeChanged(agentId: string, changed: ChangedFindings): void {
    const now = this.#now();
    const history = this.#history.historyOf(agentId, changed.advisories, changed.packages);
    const findings = buildFindings(changed.matches, { policy: this.#policy, now, kev: this.#kev, epss: this.#epss, history, exceptions: this.#history.exceptions(agentId, now) });
    this.#history.record(agentId, findings, now, history);
    let open = 0;
    let overdue = 0;
    for (const f of findings) {
      if (OPEN.has(f.status)) open++;
      if (f.overdue) overdue++;
    }
    for (const h of history.values()) {
      if (h.resolvedAt !== null || !OPEN.has(h.status)) continue;
      open--;
      if (h.last?.overdue === true) overdue--;
    }
    this.#fleet.addFindingCounts(agentId, open, overdue);
    this.stats.fannedOut++;
  }

  /** Hosts waiting for their turn (the findings_queue gauge), a feed change's fan-out included. */
  get queued(): number {
    let n = this.#queue.size;
    for (const f of this.#fanOuts) n += f.hosts.length - f.next;
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
    for (const id of agentIds) if (!this.#queue.has(id)) this.#queue.set(id, null);
    this.#start();
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
    this.#fresh.clear();
  }

  #start(): void {
    if (!this.#running && !this.#stopped && (this.#queue.size > 0 || this.#fanOuts.length > 0)) {
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
    }
    if (done || this.#stopped || (this.#queue.size === 0 && this.#fanOuts.length === 0)) {
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
   * (FleetStore.latestInventory): parsing and matching it stalled every start. Said once
   * per host and start, so the operator knows why the host has no fresh findings.
   */
  #overLimit(agentId: string): void {
    const count = this.#fleet.host(agentId)?.packageCount ?? 0;
    if (count <= LIMITS.packages) return;
    this.#log.warn(
      { agentId, packages: count, limit: LIMITS.packages, code: 'PW_ERR_TOO_MANY_PACKAGES' },
      `the stored inventory of agent ${agentId} lists ${count} packages, over the limit of ${LIMITS.packages}: not correlated; its next report replaces it`,
    );
  }

  /** Correlates queued hosts, then fans out feed changes, for up to SLICE_MS; true when both queues are empty. */
  #slice(): boolean {
    const until = performance.now() + SLICE_MS;
    for (;;) {
      const first = this.#queue.entries().next();
      if (first.done === true) break;
      if (this.#stopped) return true;
      const [agentId, job] = first.value;
      this.#queue.delete(agentId);
      try {
        if (job !== null) this.#refreshOne(agentId, job.inventory, job.hash);
        else {
          const inventory = this.#fleet.latestInventory(agentId);
          if (inventory !== undefined) this.#refreshOne(agentId, inventory, packagesHash(inventory));
          else this.#overLimit(agentId);
        }
      } catch (err) {
        this.stats.failed++;
        this.#log.error({ err, agentId }, 'correlating a host failed; its findings are from its previous report');
      }
      if (performance.now() >= until) return false;
    }
    for (;;) {
      const f = this.#fanOuts[0];
      if (f === undefined || this.#stopped) {
        this.#fresh.clear();
        return true;
      }
      if (!this.#fanOutSome(f, until)) return false;
      this.#fanOuts.shift();
    }
  }

  /** Works through one content group until `until`; true when the group is done. */
  #fanOutSome(f: FanOut, until: number): boolean {
    let found = this.correlator.matchesOfKeys(f.hash, f.keys);
    if (found === undefined) {
      // Not cached (pushed out, or never reported since start): match one host's stored inventory once.
      const inventory = f.hosts.map((id) => this.#fleet.latestInventory(id)).find((inv) => inv !== undefined && packagesHash(inv) === f.hash);
      if (inventory !== undefined) {
        this.correlator.matches(inventory, f.hash);
        found = this.correlator.matchesOfKeys(f.hash, f.keys);
      }
      if (found === undefined) {
        // Nothing readable of this content (over the package limit, say): each host the slow way.
        this.scheduleStored(f.hosts.slice(f.next).filter((id) => !this.#fresh.has(id)));
        return true;
      }
    }
    // None of the changed keys is in this content: its hosts' findings stand.
    if (found.packages.length === 0) return true;
    const changed: ChangedFindings = { matches: found.matches.filter((m) => f.advisories.has(m.advisory.id)), advisories: [...f.advisories], packages: found.packages };
    while (f.next < f.hosts.length) {
      const agentId = f.hosts[f.next++] as string;
      // A host with a newer report waiting is correlated whole on its turn.
      if (this.#queue.has(agentId) || this.#fresh.has(agentId)) continue;
      try {
        this.#fanOutOne(agentId, changed);
      } catch (err) {
        this.stats.failed++;
        this.#log.error({ err, agentId }, 'judging a host after a feed change failed; it is correlated whole instead');
        this.scheduleStored([agentId]);
      }
      if (performance.now() >= until) return f.next >= f.hosts.length;
    }
    return true;
  }
}
