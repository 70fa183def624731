/**
 * The collector service: one HTTP(S) server carrying the HTTP app (API, dashboard,
 * /healthz, /metrics) and the agents' WebSocket gateway (`/v1/agent`), over one SQLite
 * store. `patchwarden-collector serve` is a thin shell around createCollector.
 *
 * Plain HTTP binds to loopback unless told otherwise, and says so in the log when told to
 * listen elsewhere: enrollment tokens and inventories would cross the network in clear.
 * With a certificate and key it is HTTPS, and agents connect with wss.
 */
import { statSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { CLOSE, ProtocolError, UsageError } from '../shared/errors.ts';
import { type CollectorConfig, parseConfig } from './config.ts';
import { AGENT_PATH, Gateway, type GatewayOptions } from './gateway/gateway.ts';
import { HostFindings } from './services/findings/host-findings.ts';
import { createApp } from './http/app.ts';
import { createMetrics, type CollectorMetrics } from './http/metrics.ts';
import { createLogger, type Logger } from './logger.ts';
import { type OpenedCollector, openCollector } from './open-collector.ts';
import { WalCheckpointer } from './store/checkpointer.ts';
import { StoreHealth, type StoreHealthReport } from './store/health.ts';
import { PostgresHealth } from './store/postgres/health.ts';
import { StoreError } from './store/db.ts';
import type { HealthCheck } from './http/services.ts';
import { IntegrityCheck } from './store/integrity.ts';
import type { RolloutEngine } from './services/rollouts/engine.ts';
import { type AsyncStore, postgresOf, type Store } from './store/store.ts';
import { FeedAudit } from './services/feeds/feed-audit.ts';
import { ChangeLogHousekeeping } from './services/replicas/change-log-housekeeping.ts';
import { type Duties, dutiesFor } from './services/replicas/duties.ts';
import { ReplicaLiveness } from './services/replicas/liveness.ts';
import { PostgresListener } from './store/postgres/notifications.ts';
import { OUTBOX_CHANNEL } from './store/rollouts.ts';
import { FeedScheduler, type FeedSchedulerOptions } from './services/feeds/schedule.ts';

export const DEFAULT_LISTEN = '127.0.0.1:8443';

/**
 * Time for a request's headers to arrive whole (an agent's upgrade request included), and
 * for a TLS handshake. A half-sent request holds a socket before the gateway's per-source
 * limits can see it: Node's defaults (60 s, 120 s for TLS, checked every 30 s) let a few
 * sources hold tens of thousands of sockets.
 */
export const HTTP_HEADERS_TIMEOUT_MS = 10_000;
const HTTP_DEADLINES = { headersTimeout: HTTP_HEADERS_TIMEOUT_MS, requestTimeout: 60_000, connectionsCheckingInterval: 1000 };

export interface CollectorOptions {
  /**
   * The SQLite file; the collector's key is kept beside it unless `keyFile` says otherwise.
   * Not read when the config names a PostgreSQL store (config `store`).
   */
  dbPath: string;
  /** `HOST:PORT` (`[::1]:8443` for IPv6); port 0 picks a free one. Default 127.0.0.1:8443. */
  listen?: string;
  /** PEM certificate (chain) and private key: HTTPS and wss. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  config?: CollectorConfig;
  keyFile?: string;
  logger?: Logger;
  gateway?: Pick<GatewayOptions, 'heartbeatSeconds' | 'handshakeTimeoutMs' | 'maxPayload' | 'preAuthMaxPayload' | 'closeGraceMs' | 'maxPendingHandshakes' | 'maxPendingPerAddress'>;
  /** How often running rollouts are advanced (windows, waits, gates, reboot grace). Default 15 s. */
  rolloutTickMs?: number;
  /** Make a new database in an existing empty `dbPath` (`serve --init`); without it such a file is refused (PW_ERR_STORE_EMPTY_FILE). */
  init?: boolean;
  /** /healthz: quick_check interval and first delay, heartbeat spacing, free-space floor (collector/store/health.ts). */
  health?: { integrityIntervalMs?: number; integrityFirstDelayMs?: number; writeIntervalMs?: number; minFreeBytes?: number };
  now?: () => Date;
  /**
   * The collector syncs its own feeds (collector/services/feeds/schedule.ts) when this is given and
   * the config's `feedSync` is not false; `serve` gives it. Off by default here, so an
   * embedded or test collector never reaches for the internet unasked.
   */
  feedSync?: Pick<FeedSchedulerOptions, 'schedule' | 'sync' | 'onRun' | 'random'>;
  /**
   * The replicas' lease period: how long a duty's lease (services/replicas/duties.ts) and a
   * replica's heartbeat (services/replicas/liveness.ts) last without renewal, so how long a
   * dead replica's duties wait and its agents stay shown as connected. Renewed every third.
   * Default: the config's `replicas.leaseSeconds` (15 s); from 300 ms (tests) to 10 minutes.
   */
  replicaLeaseMs?: number;
}

export const DEFAULT_REPLICA_LEASE_MS = 15_000;

function replicaLeaseMs(ms: number | undefined): number {
  if (ms === undefined) return DEFAULT_REPLICA_LEASE_MS;
  if (!Number.isInteger(ms) || ms < 300 || ms > 600_000) throw new UsageError(`replicaLeaseMs ${ms}: expected whole milliseconds from 300 to 600000`);
  return ms;
}

export interface Collector {
  httpServer: HttpServer | HttpsServer;
  /** `http(s)://host:port`, with the port actually bound. */
  url: string;
  /** `ws(s)://host:port/v1/agent`: what `patchwarden-agent enroll --collector` takes. */
  agentUrl: string;
  /** The collector's ed25519 public key (raw, base64url), pinned by agents at enrollment. */
  publicKey: string;
  /** The store, on either engine. */
  store: AsyncStore;
  /** A SQLite store's synchronous side (its connection, for tests and checks that read the file); null on PostgreSQL. */
  sqlite: Store | null;
  gateway: Gateway;
  findings: HostFindings;
  rollouts: RolloutEngine;
  outbox: AsyncStore['outbox'];
  /** The once-only work this collector holds now (on PostgreSQL, leases shared with the other replicas). */
  duties: Duties;
  metrics: CollectorMetrics;
  logger: Logger;
  /** Closes agent connections (1001), stops the HTTP server, closes the database. */
  close(): Promise<void>;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(listen);
  const port = Number(m?.[3]);
  if (m === null || port > 65535) throw new UsageError(`--listen ${listen}: expected HOST:PORT (for example 127.0.0.1:8443 or [::1]:8443)`);
  return { host: m[1] ?? m[2] ?? '', port };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** A database made by an older collector (or copied in) under umask 022 is 0644: said at every start, as for the key. */
function warnLooseDatabaseMode(path: string, log: Logger): void {
  if (path === ':memory:') return;
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) log.warn({ path, mode: mode.toString(8) }, `the database ${path} can be read by other users: chmod 600 it and its -wal and -shm files`);
}

interface StoreSupervision {
  health: HealthCheck;
  /** SQLite's WAL checkpoints (its gauges); null on PostgreSQL and for `:memory:`. */
  checkpointer: WalCheckpointer | null;
  stop(): Promise<void>;
}

/**
 * What watches the store beside the serving: on SQLite the WAL checkpoints, the periodic
 * quick_check and /healthz's committed heartbeat with the disk's free space
 * (store/health.ts); on PostgreSQL the committed heartbeat, which also tells a standby from
 * the primary (store/postgres/health.ts). Started before serving, stopped at close.
 */
function superviseStore(collector: OpenedCollector, path: string, options: CollectorOptions, logger: Logger): StoreSupervision {
  const onChange = (r: StoreHealthReport): void => {
    if (r.ok) logger.info('store healthy again');
    else logger.error({ problems: r.problems }, 'store unhealthy: /healthz answers 503');
  };
  const writeIntervalMs = options.health?.writeIntervalMs === undefined ? {} : { writeIntervalMs: options.health.writeIntervalMs };
  const pg = postgresOf(collector.store);
  const sqlite = collector.sqlite;
  if (pg !== null || sqlite === null) {
    if (pg === null) throw new StoreError('a store with neither a SQLite file nor a PostgreSQL database');
    const health = new PostgresHealth(pg, { ...writeIntervalMs, onChange });
    // The first probe is awaited by nobody: /healthz answers "not probed yet" until it lands.
    health.start().catch((err: unknown) => {
      logger.error({ err }, 'the store heartbeat could not start');
    });
    return { health: { check: () => Promise.resolve(health.check()) }, checkpointer: null, stop: () => health.stop() };
  }
  const db = sqlite.db;
  const checkpointer = path === ':memory:' ? null : new WalCheckpointer(db, { path, logger });
  const integrity =
    path === ':memory:'
      ? null
      : new IntegrityCheck({
          path,
          ...(options.health?.integrityIntervalMs === undefined ? {} : { intervalMs: options.health.integrityIntervalMs }),
          ...(options.health?.integrityFirstDelayMs === undefined ? {} : { firstDelayMs: options.health.integrityFirstDelayMs }),
          onResult: (r) => {
            if (r.status === 'ok') logger.info({ ms: r.ms }, 'database quick_check: ok');
            else logger.error({ code: 'PW_ERR_STORE_INTEGRITY', problems: r.problems, ms: r.ms }, `database quick_check: ${r.status}`);
          },
        });
  const health = new StoreHealth(db, {
    integrity,
    ...writeIntervalMs,
    ...(options.health?.minFreeBytes === undefined ? {} : { minFreeBytes: options.health.minFreeBytes }),
    onChange,
  });
  return {
    // Its write probe stands aside while a transaction is open (store/health.ts).
    health: { check: () => Promise.resolve(health.check()) },
    checkpointer,
    stop: async () => {
      await integrity?.stop();
      await checkpointer?.stop();
    },
  };
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export async function createCollector(options: CollectorOptions): Promise<Collector> {
  const logger = options.logger ?? createLogger();
  const config = options.config ?? parseConfig({});
  const { host, port } = parseListen(options.listen ?? DEFAULT_LISTEN);
  const leaseMs = replicaLeaseMs(options.replicaLeaseMs ?? config.replicas.leaseSeconds * 1000);
  const now = options.now ?? (() => new Date());
  // Assigned below; the engine only calls it after a commit, long after the gateway exists.
  let deliver = (_agentId: string): void => undefined;
  // serve makes the key when there is none: after refusing an empty --db, before opening it.
  const storeConfig = config.store;
  const keyFile = options.keyFile ?? config.keyFile;
  const collector = await openCollector({
    store:
      storeConfig?.kind === 'postgres'
        ? { kind: 'postgres', url: storeConfig.url, ...(storeConfig.maxConnections === undefined ? {} : { maxConnections: storeConfig.maxConnections }) }
        : { kind: 'sqlite', path: storeConfig?.path ?? options.dbPath, init: options.init ?? false },
    ...(keyFile === undefined ? {} : { keyFile }),
    key: 'create',
    logger,
    policy: config.policy,
    now,
    rollouts: {
      onEnqueued: (agentId) => {
        deliver(agentId);
      },
    },
  });
  const key = collector.key();
  const store = collector.store;
  const sqlitePath = storeConfig?.kind === 'sqlite' ? storeConfig.path : options.dbPath;
  if (collector.sqlite !== null) warnLooseDatabaseMode(sqlitePath, logger);
  let gateway: Gateway | undefined;
  const supervision = superviseStore(collector, sqlitePath, options, logger);
  const duties = dutiesFor(store, { logger, ttlMs: leaseMs });
  let liveness: ReplicaLiveness | undefined;
  const checkpointer = supervision.checkpointer;
  try {
    const metrics = createMetrics();
    const findings = collector.findings;
    let checkpointFailures = 0;
    metrics.registry.onCollect(() => {
      // The store's agents_connected is the fleet's; this is the process's own, per replica.
      metrics.agentConnections.set(gateway?.connectedAgents ?? 0);
      metrics.findingsQueue.set(findings.queued);
      if (checkpointer !== null) {
        metrics.walFrames.set(checkpointer.stats.walFrames);
        metrics.checkpointFailuresTotal.inc(checkpointer.stats.failures - checkpointFailures);
        checkpointFailures = checkpointer.stats.failures;
      }
    });
    const started = Date.now();
    const loaded = await collector.loadFindings();
    logger.info({ ...loaded, ms: Date.now() - started }, 'advisories loaded');
    const outbox = store.outbox;
    // Each rollout and host fails alone (issue 10): openCollector logs each failure, and it is kept on the rollout or host.
    const rollouts = collector.rollouts;
    metrics.registry.onCollect(async () => {
      for (const [state, n] of Object.entries(await store.rollouts.countByState())) metrics.rollouts.set({ state }, n);
    });
    gateway = new Gateway({
      store,
      replica: duties.replica,
      collectorPublicKey: key.publicKey,
      logger,
      now,
      ...options.gateway,
      instructions: {
        pendingFor: (agentIds, at) => store.outbox.pendingForAgents(agentIds, at),
        markSent: (ids, at) => store.outbox.markManySent(ids, at),
        // The engine records the result in the outbox too, and moves the rollout on.
        recordResult: (agentId, result) => {
          metrics.instructionResultsTotal.inc({ status: result.status });
          return Promise.resolve(rollouts.onResult(agentId, result));
        },
      },
      onInventory: (agentId, inventory, hash) => {
        findings.schedule(agentId, inventory, hash);
        rollouts.onInventory(agentId, inventory).catch((err: unknown) => {
          logger.error({ err, agentId }, 'the rollouts could not take the new inventory');
        });
      },
      onReport: (status, seconds) => {
        metrics.reportsTotal.inc({ status });
        if (status !== 'rejected') metrics.reportIngestSeconds.observe(seconds);
      },
    });
    const gw = gateway;
    deliver = (agentId) => {
      gw.deliverInstructions(agentId);
    };
    await findings.scheduleAll(await store.hosts.ids());
    // Reports a `reports import` stored on this database while it serves: everything up to
    // now is in scheduleAll above.
    const imports = store.reportImports;
    let importSeq = await imports.lastSeq();
    const pickUpImports = async (): Promise<void> => {
      const rows = await imports.since(importSeq);
      if (rows.length === 0) return;
      importSeq = rows[rows.length - 1]?.seq ?? importSeq;
      const agentIds = new Set(rows.map((r) => r.agentId));
      logger.info({ hosts: agentIds.size, files: rows.length }, 'imported reports: correlating their hosts');
      // The importing process told the rollouts already (collector/commands/reports.ts). One replica judges them.
      if (recorrelateDuty.held) findings.scheduleStored(agentIds);
    };
    // Once-only work: every duty is this process's on SQLite; on PostgreSQL each is a lease one replica holds (services/replicas/duties.ts).
    const rolloutDuty = duties.get('rollout-tick');
    const recorrelateDuty = duties.get('recorrelate');
    const housekeepingDuty = duties.get('housekeeping');
    // Its row is written before the gateway serves, so no mark names a replica the others do not know.
    liveness = new ReplicaLiveness({ store, replica: duties.replica, leaseMs, housekeeping: housekeepingDuty, connections: gw, logger });
    await liveness.start();
    const beating = liveness;
    const shared = collector.sqlite === null;
    const changeLog = new ChangeLogHousekeeping((seq) => store.advisoryChanges.clear(seq));
    housekeepingDuty.onChange(() => {
      changeLog.reset();
    });
    // Instructions another process enqueued on this database reach connected agents here.
    const pushUnsent = (): void => {
      outbox.agentsWithUnsent(now()).then(
        (agentIds) => {
          for (const agentId of agentIds) if (gw.isConnected(agentId)) gw.deliverInstructions(agentId);
        },
        (err: unknown) => {
          logger.error({ err }, 'pushing instructions enqueued by another process failed; the next tick tries again');
        },
      );
    };
    // One advance of the rollouts at a time: a slow one is not overlapped by the next tick, and close waits for it.
    let advancing: Promise<void> | null = null;
    const tick = (): void => {
      pickUpImports().catch((err: unknown) => {
        logger.error({ err }, 'picking up imported reports failed; the next tick tries again');
      });
      // Advisories another process (or a sync in this one) changed on this database: a restart is not needed.
      // Every replica takes them into its correlator; one re-judges the fleet, and the log is cleared behind all of them.
      void findings
        .followStore({ rejudge: recorrelateDuty.held, clear: !shared })
        .then(async (changed) => {
          if (shared && housekeepingDuty.held) await changeLog.tick(findings.changeSeq, Date.now());
          return changed;
        })
        .then(
        (changed) => {
          if (changed.advisories > 0 || changed.hosts > 0) logger.info(changed, 'advisories changed in the store: re-judging the hosts');
        },
        (err: unknown) => {
          logger.error({ err }, 'taking in changed advisories failed; the next tick tries again');
        },
      );
      // Failures of single rollouts are logged by onError; a throw here is the store's own.
      if (rolloutDuty.held)
        advancing ??= rollouts
        .tick()
        .then(
          () => undefined,
          (err: unknown) => {
            logger.error({ err }, 'advancing the rollouts failed; the next tick tries again');
          },
        )
        .finally(() => {
          advancing = null;
        });
      pushUnsent();
    };
    tick();
    const ticker = setInterval(tick, options.rolloutTickMs ?? 15_000);
    ticker.unref();

    const app = createApp({
      store,
      correlator: findings.correlator,
      policy: config.policy,
      now,
      metrics,
      rollouts,
      logger,
      storeHealth: supervision.health,
      onAgentRevoked: (agentId) => {
        gw.disconnect(agentId, new ProtocolError(`agent ${agentId} was revoked`, 'PW_ERR_AGENT_REVOKED', CLOSE.revoked));
      },
      onError: (err) => {
        logger.error({ err }, 'HTTP request failed');
      },
    });
    const fetch = getRequestListener(app.fetch);
    const listener = (req: IncomingMessage, res: ServerResponse): void => {
      void fetch(req, res);
    };
    const server: HttpServer | HttpsServer =
      options.tls === undefined ? createHttpServer(HTTP_DEADLINES, listener) : createHttpsServer({ ...HTTP_DEADLINES, handshakeTimeout: HTTP_HEADERS_TIMEOUT_MS, cert: options.tls.cert, key: options.tls.key }, listener);
    gw.attach(server);
    if (options.tls === undefined && !isLoopback(host)) {
      logger.warn({ listen: `${host}:${port}` }, 'listening beyond loopback without TLS: enrollment tokens and inventories cross the network in clear; give --tls-cert and --tls-key');
    }
    await new Promise<void>((resolveListen, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolveListen();
      });
    });
    const bound = (server.address() as AddressInfo).port;
    const scheme = options.tls === undefined ? 'http' : 'https';
    const url = `${scheme}://${hostForUrl(host)}:${bound}`;
    const agentUrl = `${options.tls === undefined ? 'ws' : 'wss'}://${hostForUrl(host)}:${bound}${AGENT_PATH}`;
    logger.info({ url, agentUrl }, 'collector listening');
    let feedScheduler: FeedScheduler | null = null;
    let feedSchedulerStopped: Promise<void> = Promise.resolve();
    if (options.feedSync !== undefined && config.feedSync) {
      const feeds = collector.feeds;
      const feedSync = options.feedSync;
      const startFeeds = (): void => {
        feedScheduler = new FeedScheduler({
          ...feedSync,
          store: feeds.advisories,
          sources: () => feeds.sources(config),
          audit: new FeedAudit(store.audit, 'system'),
          logger,
          staleFeedHours: config.policy.staleFeedHours,
          now,
        });
        feedScheduler.start();
      };
      const feedDuty = duties.get('feed-sync');
      // Only the replica holding feed-sync downloads; it hands the duty on when it stops or cannot renew.
      feedDuty.onChange((held) => {
        if (held && feedScheduler === null) startFeeds();
        else if (!held && feedScheduler !== null) {
          const stopping = feedScheduler;
          feedScheduler = null;
          feedSchedulerStopped = stopping.stop();
        }
      });
      if (feedDuty.held) startFeeds();
    }
    // A replica that takes the rollout duty advances at once rather than a tick later (another replica's died).
    rolloutDuty.onChange((held) => {
      if (held) tick();
    });
    duties.start();
    // An instruction enqueued on another replica (its API, a rollout tick, a CLI) for an agent connected here.
    const outboxListener =
      storeConfig?.kind === 'postgres'
        ? new PostgresListener({
            url: storeConfig.url,
            channels: [OUTBOX_CHANNEL],
            onNotification: (_channel, agentId) => {
              if (gw.isConnected(agentId)) gw.deliverInstructions(agentId);
            },
            // Notifications sent while the listener was reconnecting are lost: look at the outbox afresh.
            onReconnect: () => {
              pushUnsent();
            },
            onError: (err) => {
              logger.warn({ err }, 'listening for enqueued instructions failed; reconnecting (the tick still pushes them)');
            },
          })
        : null;
    await outboxListener?.start();

    let closing: Promise<void> | undefined;
    const close = (): Promise<void> => {
      closing ??= (async () => {
        const stopped = new Promise<void>((r) => {
          server.close(() => {
            r();
          });
        });
        server.closeIdleConnections();
        clearInterval(ticker);
        await outboxListener?.close();
        await duties.stop();
        await advancing;
        await feedSchedulerStopped;
        await feedScheduler?.stop();
        await findings.stop();
        await gw.close();
        server.closeAllConnections();
        await stopped;
        // The connections' own marks first, then whatever is left of this replica's.
        await gw.marksWritten();
        await beating.stop();
        await store.agents.flushTouches();
        await supervision.stop();
        await collector.close();
        logger.info('collector stopped');
      })();
      return closing;
    };
    return { httpServer: server, url, agentUrl, publicKey: key.publicKey, store, sqlite: collector.sqlite, gateway: gw, findings, rollouts, outbox: store.outbox, duties, metrics, logger, close };
  } catch (err) {
    await gateway?.close();
    await liveness?.stop();
    await duties.stop();
    await supervision.stop();
    await collector.close();
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' || (err as NodeJS.ErrnoException).code === 'EADDRNOTAVAIL' || (err as NodeJS.ErrnoException).code === 'EACCES') {
      throw new UsageError(`cannot listen on ${host}:${port}: ${(err as Error).message}`);
    }
    throw err;
  }
}
