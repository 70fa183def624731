/**
 * The collector's composition root: the one place that opens the store, holds the signing
 * key and builds the services over them. `serve` (server.ts), every CLI command and the
 * test harnesses take their collector from here, so the object graph is wired once.
 *
 * Transports (gateway, http, commands) reach the store only through what this returns:
 * its services, and `store` for the fleet parts (audit, tokens, agents, reports, hosts)
 * until those move into services with the asynchronous store (issue 12).
 *
 * openCollector is asynchronous because a PostgreSQL store opens asynchronously;
 * collectorOn wires an already open store, for callers that must stay synchronous (the
 * rollout test kit's restart).
 */
import { signInstruction } from '../shared/instructions.ts';
import type { Finding } from '../shared/protocol.ts';
import type { DuePolicy } from './domain/correlate/policy.ts';
import { parseConfig } from './config.ts';
import { createLogger, type Logger } from './logger.ts';
import { ApiTokens } from './services/access/api-tokens.ts';
import { AirGap } from './services/airgap/air-gap.ts';
import { FeedLibrary } from './services/feeds/library.ts';
import { RiskExceptions } from './services/findings/exceptions.ts';
import { HostFindings } from './services/findings/host-findings.ts';
import { RecordedScans } from './services/findings/recorded-scans.ts';
import { HostList } from './services/fleet/host-list.ts';
import { RolloutEngine, type RolloutErrorContext } from './services/rollouts/engine.ts';
import { collectorKeyPath, loadOrCreateKey, readCollectorKey, type SigningKey } from './signing-key.ts';
import { openStore, prepareStore, type Store, type StoreOptions } from './store/store.ts';

/**
 * How the signing key is had:
 * - `create`: read, or made when missing, while opening (`serve`, `feed export`: a
 *   collector that never served gets the key `serve` would make);
 * - `read`: read while opening, before the store is opened, and a missing key refused
 *   (PW_ERR_SOURCE_UNAVAILABLE): nothing is written for a command that cannot sign;
 * - `lazy` (default): read at the first key(), refused as `read` does; a command that
 *   signs nothing never needs it.
 */
export type KeyMode = 'create' | 'read' | 'lazy';

export interface OpenCollectorOptions {
  store: StoreOptions;
  /** The key's file; default `collector.key` beside the SQLite file (collector/signing-key.ts). */
  keyFile?: string;
  key?: KeyMode;
  /** A key held in memory instead of a file (the rollout test kit). */
  signingKey?: SigningKey;
  /** Default: warnings on stderr. */
  logger?: Logger;
  /** Due dates and stale-feed limits; default the config's defaults. */
  policy?: DuePolicy;
  now?: () => Date;
  rollouts?: {
    /** After a commit that enqueued instructions for the agent (serve pushes them). */
    onEnqueued?: (agentId: string) => void;
    onError?: (err: unknown, where: RolloutErrorContext) => void;
    /** The findings a rollout selects hosts by; default the findings service, loaded at first use. */
    findings?: (agentId: string) => Promise<Finding[]>;
  };
}

export interface OpenedCollector {
  /** The store: for the composition (server.ts) and, until they become services, the fleet parts. */
  readonly store: Store;
  readonly logger: Logger;
  /** Where the signing key lives (computed when first asked: a `:memory:` store without a keyFile has none). */
  keyPath(): string;
  /** The signing key, per the KeyMode; made or read once. `made`: this process made it. */
  key(): SigningKey & { made: boolean };
  /** Hosts' findings over the stored advisories; built at first use, not loaded (load() is the caller's). */
  readonly findings: HostFindings;
  /** Loads the stored advisories into the findings once (later calls return the first figures); followStore keeps them current. */
  loadFindings(): ReturnType<HostFindings['load']>;
  readonly rollouts: RolloutEngine;
  readonly feeds: FeedLibrary;
  readonly airGap: AirGap;
  /** Accepted risks. */
  readonly exceptions: RiskExceptions;
  readonly apiTokens: ApiTokens;
  /** `scan --db`: a file judged against the store's advisories, and recorded in the host's history. */
  readonly recordedScans: RecordedScans;
  /** The hosts that have reported (`hosts`). */
  readonly hosts: HostList;
  /** Stops the findings' background work and closes the store. */
  close(): void;
}

/** Warnings only, on stderr: a CLI command's stdout is its output. serve passes its own. */
function defaultLogger(): Logger {
  return createLogger({ level: 'warn', destination: process.stderr });
}

/** Opens the store the options name and wires the collector over it; close() closes both. */
export function openCollector(options: OpenCollectorOptions): Promise<OpenedCollector> {
  try {
    const mode = options.key ?? 'lazy';
    const logger = options.logger ?? defaultLogger();
    let key: (SigningKey & { made: boolean }) | undefined;
    let storeOptions = options.store;
    if (options.signingKey === undefined && mode !== 'lazy') {
      // serve's order: the key's place first (a `:memory:` store must name one), an empty
      // database file refused before a key is made beside it, the key, then the store.
      const path = keyPathOf(options);
      if (mode === 'create') {
        storeOptions = prepareStore(storeOptions);
        key = loadOrCreateKey(path, logger);
      } else key = { ...readCollectorKey(path), made: false };
    }
    const store = openStore(storeOptions);
    try {
      return Promise.resolve(collectorOn(store, { ...options, logger }, key));
    } catch (err) {
      store.close();
      throw err;
    }
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}

function keyPathOf(options: Pick<OpenCollectorOptions, 'store' | 'keyFile'>): string {
  return collectorKeyPath({ dbPath: options.store.path, ...(options.keyFile === undefined ? {} : { keyFile: options.keyFile }) });
}

/**
 * The collector over a store opened already (synchronously: the rollout test kit restarts
 * without awaiting); openCollector is the way in for everything else. `key` is one read
 * already by openCollector.
 */
export function collectorOn(store: Store, options: OpenCollectorOptions, key?: SigningKey & { made: boolean }): OpenedCollector {
  const logger = options.logger ?? defaultLogger();
  const now = options.now ?? (() => new Date());
  const policy = options.policy ?? parseConfig({}).policy;
  let heldKey = key ?? (options.signingKey === undefined ? undefined : { ...options.signingKey, made: false });
  let path: string | undefined;
  const keyPath = (): string => (path ??= keyPathOf(options));
  const getKey = (): SigningKey & { made: boolean } => (heldKey ??= { ...readCollectorKey(keyPath()), made: false });

  let findings: HostFindings | undefined;
  let loaded: ReturnType<HostFindings['load']> | undefined;
  const findingsService = (): HostFindings => (findings ??= new HostFindings({ store: store.async, policy, logger, now }));
  const loadFindings = (): ReturnType<HostFindings['load']> => (loaded ??= findingsService().load());
  const findingsOf =
    options.rollouts?.findings ??
    (async (agentId: string): Promise<Finding[]> => {
      // A CLI process reads the advisories only when a rollout first needs them.
      await loadFindings();
      return (await findingsService().findings(agentId))?.findings ?? [];
    });

  let rollouts: RolloutEngine | undefined;
  let feeds: FeedLibrary | undefined;
  let airGap: AirGap | undefined;
  let exceptions: RiskExceptions | undefined;
  let apiTokens: ApiTokens | undefined;
  let recordedScans: RecordedScans | undefined;
  let hosts: HostList | undefined;
  const collector: OpenedCollector = {
    store,
    logger,
    keyPath,
    key: getKey,
    get findings() {
      return findingsService();
    },
    loadFindings,
    get rollouts() {
      return (rollouts ??= new RolloutEngine({
        store: store.async,
        findings: findingsOf,
        signer: (instruction) => signInstruction(instruction, getKey().privateKeyPem),
        now,
        ...(options.rollouts?.onEnqueued === undefined ? {} : { onEnqueued: options.rollouts.onEnqueued }),
        onError:
          options.rollouts?.onError ??
          ((err, where) => {
            logger.error({ err, ...where }, 'a rollout could not advance, or a host failed alone; the others go on');
          }),
      }));
    },
    get feeds() {
      return (feeds ??= new FeedLibrary(store.async));
    },
    get airGap() {
      return (airGap ??= new AirGap({ store: store.async, rollouts: () => collector.rollouts, key: getKey }));
    },
    get exceptions() {
      return (exceptions ??= new RiskExceptions(store.async));
    },
    get apiTokens() {
      return (apiTokens ??= new ApiTokens(store.async));
    },
    get recordedScans() {
      return (recordedScans ??= new RecordedScans(store.async));
    },
    get hosts() {
      return (hosts ??= new HostList(store.async));
    },
    close() {
      try {
        // serve awaits findings.stop() before it closes the collector; a CLI process queues no slice to wait for.
        void findings?.stop();
      } finally {
        store.close();
      }
    },
  };
  return collector;
}
