/**
 * `patchwarden-agent run`: stay connected to the collector and keep it told of this
 * host's inventory.
 *
 *   connect -> challenge -> hello (signed) -> welcome {inventoryHash}
 *   check: collect the inventory, hash it; if the hash differs from what the collector
 *          will have once the spool is delivered, queue a full report, else (when
 *          connected) a hash-only one that says "unchanged, still here"
 *   deliver: the spool, oldest first, one report at a time; each is deleted on its ack
 *
 * Every report goes through the spool (spool.ts), so one code path covers a live
 * connection, a collector outage and an agent restart. While disconnected, checks still
 * run and spool full reports of changes; unchanged checks spool nothing, since a
 * hash-only report carries no time and is worthless once late.
 *
 * Reconnects wait a full-jitter backoff (backoff.ts). A revoked agent (close 4003) stops
 * instead of retrying: only re-enrollment can fix that, and retrying forever would hide it.
 */
import { EventEmitter } from 'node:events';
import type { KeyObject } from 'node:crypto';
import { CLOSE, ProtocolError, UsageError, errorMessage } from '../../shared/errors.ts';
import { inventoryHash } from '../../shared/inventory-hash.ts';
import { type CollectorMessage, type Inventory, PROTOCOL_VERSION } from '../../shared/protocol.ts';
import { fullReport, helloMessage, packageSetReport, unchangedReport } from '../../shared/messages.ts';
import { collectInventory } from '../inventory/inventory.ts';
import { Backoff, type BackoffOptions } from './backoff.ts';
import { CollectorRotation } from './collectors.ts';
import { CheckScheduler, type WatchTarget } from './checks.ts';
import { type AgentConfig, collectorsOf } from './config.ts';
import { acceptsProtocol, PACKAGES_BY_REFERENCE_SINCE, protocolAtLeast } from '../../shared/protocol-version.ts';
import { CollectorConnection } from './connection.ts';
import type { Logger } from './log.ts';
import { Spool, type SpoolEntry, type SpooledReport } from './spool.ts';
import { Executor, readInstalledPackages, readRebootRequired, stateDirFor } from '../executor/executor.ts';
import type { HandlerResolver } from '../executor/handler.ts';
import { resolveHandler } from '../executor/handlers/index.ts';
import type { InstructionResult } from '../../shared/instructions.ts';
import { join } from 'node:path';
import { type PendingResult, ResultOutbox } from './results.ts';

export interface AgentOptions {
  config: AgentConfig;
  key: KeyObject;
  log: Logger;
  /** The inventory source; this machine's by default. */
  collect?: () => Promise<Inventory>;
  backoff?: BackoffOptions;
  /** Package databases to watch; the real ones by default. */
  watch?: readonly WatchTarget[];
  debounceMs?: number;
  /** Time from connect to welcome, and from a report to its ack. */
  handshakeTimeoutMs?: number;
  ackTimeoutMs?: number;
  /** PEM of a private CA for wss://, read from config.caFile by the caller. */
  ca?: string;
  /** How often a collector may refuse the same report (4000, 1009) before it is set aside. */
  maxRefusals?: number;
  /** Picks the handler for an instruction; the package managers' and live-patch tools' by default. */
  resolveHandler?: HandlerResolver;
  /** Run every instruction as a dry run (a lab, a first week in production). */
  dryRun?: boolean;
}

export type AgentExit = { reason: 'stopped' } | { reason: 'revoked'; error: ProtocolError };

export interface AgentEvents {
  connected: [welcome: { inventoryHash: string | null; heartbeatSeconds: number; collector: string }];
  disconnected: [error: ProtocolError];
  /** A reconnect is scheduled in delayMs (attempt counts failures since the last stable connection). */
  retry: [info: { delayMs: number; attempt: number; windowMs: number }];
  queued: [info: { id: string; hash: string; full: boolean; reason: string }];
  acked: [info: { id: string; hash: string; full: boolean; status: string }];
  /** An instruction's result was stored by the collector. */
  result: [result: InstructionResult];
}

/** What the collector calls a report it cannot take; after maxRefusals the report is set aside. */
const REFUSAL_CODES = new Set(['PW_ERR_PROTOCOL', 'PW_ERR_MALFORMED_INPUT', 'PW_ERR_INPUT_TOO_LARGE']);

export class Agent extends EventEmitter<AgentEvents> {
  readonly config: AgentConfig;
  readonly spool: Spool;
  private readonly key: KeyObject;
  private readonly log: Logger;
  private readonly collect: () => Promise<Inventory>;
  private readonly backoff: Backoff;
  private readonly collectors: CollectorRotation;
  private readonly scheduler: CheckScheduler;
  private readonly handshakeTimeoutMs: number;
  private readonly ackTimeoutMs: number;
  private readonly ca: string | undefined;
  private readonly maxRefusals: number;
  /** The inventory hash the collector holds as this agent's latest (welcome, then acks). */
  private collectorHash: string | null = null;
  private conn: CollectorConnection | null = null;
  private welcomed = false;
  /** The collector takes reports that name their package set (protocol 1.1). */
  private byReference = false;
  private inFlight: SpoolEntry | null = null;
  private readonly refusals = new Map<string, number>();
  private wake: (() => void) | null = null;
  private stopping = false;
  private stopSleep: (() => void) | null = null;
  private running: Promise<AgentExit> | null = null;

  private readonly results: ResultOutbox;
  private readonly executor: Executor;

  private constructor(options: AgentOptions, spool: Spool, results: ResultOutbox) {
    super();
    this.config = options.config;
    this.spool = spool;
    this.results = results;
    const root = options.config.root ?? '/';
    this.executor = new Executor({
      collectorPublicKey: options.config.collectorPublicKey,
      agentId: options.config.agentId,
      stateDir: stateDirFor(options.config),
      root,
      resolveHandler: options.resolveHandler ?? resolveHandler,
      readPackages: readInstalledPackages,
      readRebootRequired,
      onResult: (result) => this.queueResult(result),
      onRefresh: () => {
        this.scheduler.trigger('refresh instruction');
      },
      ...(options.dryRun === true ? { dryRun: true } : {}),
      onError: (err) => {
        this.log.error({ code: codeOf(err) }, `instruction handling failed: ${errorMessage(err)}`);
      },
      onHeld: (instruction, until) => {
        this.log.info({ instructionId: instruction.id, kind: instruction.kind, notBefore: until.toISOString() }, 'instruction held until its not-before time');
      },
    });
    this.key = options.key;
    this.log = options.log;
    this.collect = options.collect ?? (() => collectInventory({ root }));
    this.backoff = new Backoff(options.backoff);
    this.collectors = new CollectorRotation(collectorsOf(options.config), options.config.agentId);
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 30_000;
    this.ackTimeoutMs = options.ackTimeoutMs ?? 120_000;
    this.ca = options.ca;
    this.maxRefusals = options.maxRefusals ?? 3;
    this.scheduler = new CheckScheduler({
      intervalMs: options.config.intervalSeconds * 1000,
      ...(options.debounceMs === undefined ? {} : { debounceMs: options.debounceMs }),
      ...(options.watch === undefined ? {} : { watch: options.watch }),
      run: (reason) => this.check(reason),
      onError: (err, reason) => {
        this.log.error({ code: codeOf(err), reason }, `inventory check failed: ${errorMessage(err)}`);
      },
      onWatchError: (dir, err) => {
        this.log.warn({ code: codeOf(err), dir }, `cannot watch ${dir} for package changes (${errorMessage(err)}); the ${options.config.intervalSeconds} s timer still re-checks`);
      },
    });
  }

  static async create(options: AgentOptions): Promise<Agent> {
    const log = options.log;
    let spool: Spool;
    try {
      spool = await Spool.open(options.config.spoolDir, options.config.spoolMaxBytes, (w) => {
        log.warn({ code: w.code }, w.message);
      });
    } catch (err) {
      // Without a spool nothing can be reported safely: a start-up error, not a daemon that limps on.
      throw new UsageError(`cannot open the spool directory ${options.config.spoolDir}: ${(err as Error).message} (check spoolDir in the config, and run as root)`, { cause: err });
    }
    if (spool.size > 0) log.info({ reports: spool.size, bytes: spool.bytes }, `${spool.size} undelivered reports in the spool ${spool.dir}`);
    const resultsDir = join(stateDirFor(options.config), 'results');
    let results: ResultOutbox;
    try {
      results = await ResultOutbox.open(resultsDir, (w) => {
        log.warn({ code: w.code }, w.message);
      });
    } catch (err) {
      throw new UsageError(`cannot open the results directory ${resultsDir}: ${(err as Error).message}`, { cause: err });
    }
    if (results.size > 0) log.info({ results: results.size }, `${results.size} instruction results not yet acknowledged`);
    return new Agent(options, spool, results);
  }

  /** stop() may set this while the loop awaits; a getter keeps TypeScript from narrowing it to its loop-guard value. */
  private get halted(): boolean {
    return this.stopping;
  }

  /** Runs until stop() or a revocation. */
  run(): Promise<AgentExit> {
    this.running ??= this.loop();
    return this.running;
  }

  /** Stops cleanly: closes the connection (1001), waits for a running check; what is spooled stays spooled. */
  async stop(): Promise<AgentExit> {
    this.stopping = true;
    this.stopSleep?.();
    this.conn?.close(1001, 'agent stopping');
    this.wake?.();
    const exit = await this.run();
    await this.executor.close();
    return exit;
  }

  /** Queues a check now (tests, a signal). */
  checkNow(reason = 'requested'): void {
    this.scheduler.trigger(reason);
  }

  /** Resolves when no check is running. */
  checksIdle(): Promise<void> {
    return this.scheduler.idle();
  }

  private async loop(): Promise<AgentExit> {
    this.scheduler.start();
    const { agentId } = this.config;
    this.log.info({ agentId, collectors: this.collectors.urls, spool: this.config.spoolDir, intervalSeconds: this.config.intervalSeconds }, 'agent starting');
    let exit: AgentExit = { reason: 'stopped' };
    while (!this.stopping) {
      let error: ProtocolError;
      try {
        const conn = await CollectorConnection.open({
          url: this.collectors.current,
          ...(this.ca === undefined ? {} : { ca: this.ca }),
          openTimeoutMs: this.handshakeTimeoutMs,
        });
        this.conn = conn;
        if (this.halted) conn.close(1001, 'agent stopping');
        error = await this.session(conn);
      } catch (err) {
        error = err instanceof ProtocolError ? err : new ProtocolError(errorMessage(err), codeOf(err), 1006, { cause: err });
      } finally {
        this.conn = null;
        this.welcomed = false;
      }
      if (this.halted) break;
      this.emit('disconnected', error);
      if (error.closeCode === CLOSE.revoked || error.code === 'PW_ERR_AGENT_REVOKED') {
        this.log.error(
          { code: error.code, closeCode: error.closeCode, agentId },
          `the collector revoked this agent (${error.message}); stopping. Re-enroll with \`patchwarden-agent enroll --collector URL --token T --force\` to report again`,
        );
        exit = { reason: 'revoked', error };
        break;
      }
      const from = this.collectors.current;
      // Another collector of the fleet is tried at once (within a jittered second); the
      // backoff grows only once every one of them has failed since the last connection.
      const everyOneFailed = this.collectors.failed();
      const delayMs = everyOneFailed ? this.backoff.next() : this.backoff.rotation();
      const { windowMs, attempt } = everyOneFailed ? this.backoff.last : { windowMs: this.backoff.baseMs, attempt: this.backoff.attempts };
      const to = this.collectors.current;
      const level = error.code === 'PW_ERR_UNAUTHENTICATED' || error.code === 'PW_ERR_PROTOCOL_VERSION' ? 'error' : 'warn';
      this.log[level](
        { code: error.code, closeCode: error.closeCode, retryInMs: delayMs, attempt, collector: from, next: to },
        `${describe(error)}; reconnecting${to === from ? '' : ` to ${to}`} in ${(delayMs / 1000).toFixed(1)} s`,
      );
      this.emit('retry', { delayMs, attempt, windowMs });
      await this.sleep(delayMs);
    }
    await this.scheduler.stop();
    this.log.info({ spooled: this.spool.size }, exit.reason === 'stopped' ? 'agent stopped' : 'agent stopped: revoked');
    return exit;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.stopSleep = done;
    });
  }

  /** One connection, from challenge to its end; returns the error that ended it. */
  private async session(conn: CollectorConnection): Promise<ProtocolError> {
    let liveness: NodeJS.Timeout | undefined;
    try {
      const challenge = expect(await conn.next(this.handshakeTimeoutMs), 'challenge', conn);
      // A 1.0 collector would refuse the packageSet field.
      this.byReference = protocolAtLeast(challenge.protocol, PACKAGES_BY_REFERENCE_SINCE);
      if (!acceptsProtocol(challenge.protocol)) {
        const err = new ProtocolError(`the collector speaks protocol ${challenge.protocol}, this agent ${PROTOCOL_VERSION}: upgrade one of them`, 'PW_ERR_PROTOCOL_VERSION', CLOSE.version);
        conn.close(CLOSE.version, err.code);
        return err;
      }
      await conn.send(helloMessage(challenge.nonce, this.config.agentId, this.key));
      const welcome = expect(await conn.next(this.handshakeTimeoutMs), 'welcome', conn);
      if (welcome.agentId !== this.config.agentId) {
        const err = new ProtocolError(`the collector welcomed agent ${welcome.agentId}, not this agent ${this.config.agentId}`, 'PW_ERR_PROTOCOL', CLOSE.protocol);
        conn.close(CLOSE.protocol, err.code);
        return err;
      }
      this.backoff.connected();
      this.collectors.connected();
      this.collectorHash = welcome.inventoryHash;
      this.welcomed = true;
      this.log.info({ collector: this.collectors.current, heartbeatSeconds: welcome.heartbeatSeconds, inventoryHash: welcome.inventoryHash, spooled: this.spool.size }, 'connected to the collector');
      this.emit('connected', { inventoryHash: welcome.inventoryHash, heartbeatSeconds: welcome.heartbeatSeconds, collector: this.collectors.current });
      // The collector pings every heartbeatSeconds; silence for two and a half of them
      // means a dead route (a NAT that forgot us, a collector host that vanished) that TCP
      // would take many minutes to notice.
      const silentMs = welcome.heartbeatSeconds * 2500;
      liveness = setInterval(() => {
        if (Date.now() - conn.lastHeard > silentMs) {
          this.log.warn({ code: 'PW_ERR_TIMEOUT', silentMs }, `nothing from the collector for ${silentMs / 1000} s: dropping the connection`);
          conn.terminate();
        }
      }, welcome.heartbeatSeconds * 1000);
      conn.onInstruction = (msg) => {
        this.executor.submit({ payload: msg.payload, signature: msg.signature });
      };
      this.scheduler.trigger('connected');
      await this.deliver(conn);
      return await conn.closed;
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      await this.onFailure(conn, err);
      return err;
    } finally {
      clearInterval(liveness);
    }
  }

  /** Sends the spool, oldest first, until the connection ends (which rejects). */
  private async deliver(conn: CollectorConnection): Promise<void> {
    for (;;) {
      if (this.stopping) return;
      // Results first: small, and what an operator waits on.
      const pending = this.results.first();
      if (pending !== undefined) {
        await this.deliverResult(conn, pending);
        continue;
      }
      const entry = this.spool.entries()[0];
      if (entry === undefined) {
        await this.nextWork(conn);
        continue;
      }
      const item = await this.spool.readRaw(entry);
      if (item === null) continue;
      const { report } = item;
      if (report.inventory === null && report.hash !== this.collectorHash) {
        // The full inventory it refers to never reached the collector (dropped by the
        // spool bound) or the collector lost it; sending it would only be refused.
        this.log.info({ reportId: report.id, hash: report.hash }, 'skipping a spooled unchanged-inventory report whose inventory the collector does not have');
        await this.spool.remove(entry);
        continue;
      }
      this.inFlight = entry;
      const answer = await this.send(conn, item);
      // Before the spool forgets the report, so a check running meanwhile never sees
      // neither (it would compare against a stale hash and send a needless full report).
      this.collectorHash = report.hash;
      await this.spool.remove(entry);
      this.inFlight = null;
      this.refusals.delete(entry.name);
      this.log.info({ reportId: report.id, status: answer.status, full: report.inventory !== null, spooled: this.spool.size }, 'report acknowledged');
      this.emit('acked', { id: report.id, hash: report.hash, full: report.inventory !== null, status: answer.status });
    }
  }

  /**
   * Sends one report and returns its ack. A full report names its package set first
   * (a collector that holds it, from this host before or from any host built from the
   * same image, needs nothing more); only when the collector answers packages-unknown
   * do the packages follow, in the same report sent again.
   */
  private async send(conn: CollectorConnection, item: SpooledReport): Promise<Extract<CollectorMessage, { type: 'ack' }>> {
    const { report, text, raw, packageSet } = item;
    if (raw !== null && packageSet !== null && raw.packages.length > 0 && this.byReference) {
      const compact = JSON.stringify(packageSetReport(report, raw, packageSet));
      await conn.send(compact);
      const answer = await this.ack(conn, report.id);
      if (answer.status !== 'packages-unknown') return answer;
      this.log.debug({ reportId: report.id, packageSet }, 'the collector does not hold this package set: sending it');
    }
    await conn.send(text);
    return this.ack(conn, report.id);
  }

  private async ack(conn: CollectorConnection, id: string): Promise<Extract<CollectorMessage, { type: 'ack' }>> {
    const answer = await conn.next(this.ackTimeoutMs);
    if (answer.type !== 'ack' || answer.id !== id) {
      const err = new ProtocolError(`expected the ack of report ${id}, got ${answer.type === 'ack' ? `the ack of ${answer.id}` : answer.type}`, 'PW_ERR_PROTOCOL', CLOSE.protocol);
      conn.close(CLOSE.protocol, err.code);
      throw err;
    }
    return answer;
  }

  private async deliverResult(conn: CollectorConnection, pending: PendingResult): Promise<void> {
    const { message } = pending;
    await conn.send(message);
    const answer = await this.ack(conn, message.id);
    await this.results.remove(pending);
    this.log.info({ instructionId: message.result.instructionId, status: message.result.status, ack: answer.status }, 'instruction result acknowledged');
    this.emit('result', message.result);
  }

  /** Kept on disk before anything else, then sent; a run (not a refusal) is followed by a fresh inventory. */
  private async queueResult(result: InstructionResult): Promise<void> {
    await this.results.add(result);
    const level = result.status === 'succeeded' ? 'info' : 'warn';
    this.log[level]({ instructionId: result.instructionId, status: result.status, code: result.code, dryRun: result.dryRun, changes: result.changes.length }, `instruction ${result.status}: ${result.message.slice(0, 500)}`);
    this.wake?.();
    // The findings resolve from the host's facts, not from the instruction's word.
    if (result.status !== 'refused' && !result.dryRun) this.scheduler.trigger('after instruction');
  }

  /** Waits for a new spool entry; rejects when the connection ends. */
  private async nextWork(conn: CollectorConnection): Promise<void> {
    const work = new Promise<void>((resolve) => {
      this.wake = resolve;
    });
    const ended = await Promise.race([work.then(() => null), conn.closed]);
    this.wake = null;
    if (ended !== null) throw ended;
  }

  /** What a refused or interrupted delivery means for the report in flight. */
  private async onFailure(conn: CollectorConnection, err: ProtocolError): Promise<void> {
    const entry = this.inFlight;
    this.inFlight = null;
    if (entry === null || !conn.endedByCollector) return;
    if (err.code === 'PW_ERR_INVENTORY_UNKNOWN') {
      this.collectorHash = null;
      this.log.warn({ code: err.code, reportId: entry.id }, 'the collector does not have the inventory an unchanged report refers to; the next check sends it in full');
      await this.spool.remove(entry);
      this.scheduler.trigger('collector lost the inventory');
      return;
    }
    if (!REFUSAL_CODES.has(err.code) && err.closeCode !== CLOSE.tooBig) return;
    const n = (this.refusals.get(entry.name) ?? 0) + 1;
    this.refusals.set(entry.name, n);
    if (n >= this.maxRefusals) {
      this.refusals.delete(entry.name);
      await this.spool.setAside(entry, `the collector refused it ${n} times (${err.code}: ${err.message})`);
    }
  }

  private async check(reason: string): Promise<void> {
    const inv = await this.collect();
    const hash = inventoryHash(inv);
    const baseline = this.spool.newestFullHash() ?? this.collectorHash;
    const full = hash !== baseline;
    if (!full && !(this.welcomed && this.conn?.isOpen === true)) return;
    const report = full ? fullReport(inv, hash) : unchangedReport(hash);
    await this.spool.add(report);
    this.log.info({ reportId: report.id, reason, hash, full, packages: inv.packages.length }, full ? 'inventory changed: full report queued' : 'inventory unchanged: hash-only report queued');
    this.emit('queued', { id: report.id, hash, full, reason });
    this.wake?.();
  }
}

function expect<T extends CollectorMessage['type']>(msg: CollectorMessage, type: T, conn: CollectorConnection): Extract<CollectorMessage, { type: T }> {
  if (msg.type !== type) {
    const err = new ProtocolError(`expected ${type} from the collector, got ${msg.type}`, 'PW_ERR_PROTOCOL', CLOSE.protocol);
    conn.close(CLOSE.protocol, err.code);
    throw err;
  }
  return msg as Extract<CollectorMessage, { type: T }>;
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'PW_ERR';
}

function describe(err: ProtocolError): string {
  return err.closeCode === undefined || err.closeCode === 1006 ? err.message : `${err.message} [close ${err.closeCode}]`;
}
