/**
 * What the routes share, made once per app from createApp's dependencies.
 */
import type { Correlator } from '../domain/correlate/correlator.ts';
import type { DuePolicy } from '../domain/correlate/policy.ts';
import type { AsyncStore } from '../store/store.ts';
import { createLogger } from '../logger.ts';
import type { Logger } from '../logger.ts';
import type { RolloutEngine } from '../services/rollouts/engine.ts';
import { AuthGuard, SessionStore } from './auth.ts';
import { AuthFailureLimiter } from './auth-limiter.ts';
import { CursorCodec } from './cursor.ts';
import { FleetFindings } from '../services/findings/fleet-findings.ts';
import type { CollectorMetrics } from './metrics.ts';

/** What the routes read and write (the asynchronous store, `Store.async`): API tokens and the audit log, the fleet's agents, reports and hosts, advisories, EPSS, finding history, exceptions, the fleet's summary and the store's health. */
export type AppStore = Pick<AsyncStore, 'audit' | 'agents' | 'reports' | 'hosts' | 'apiTokens' | 'advisories' | 'epss' | 'history' | 'exceptions' | 'summary' | 'health'>;

/** What /healthz asks: the store's health report. */
export type HealthCheck = Pick<AsyncStore['health'], 'check'>;

export interface AppDeps {
  /** The store the caller opened, or the parts of it the API and the dashboard read and write. */
  store: AppStore;
  /** Loaded with the store's advisories (and kept current by feed imports) by the caller. */
  correlator: Correlator;
  policy: DuePolicy;
  /** The clock; tests pass a fixed one. */
  now?: () => Date;
  metrics: CollectorMetrics;
  /** HMAC key for page cursors (32 random bytes when absent: cursors then end with the process). */
  cursorKey?: Buffer;
  /** Called after an agent is revoked through the API, so the gateway can close its connection. */
  onAgentRevoked?: (agentId: string) => void;
  /** Unexpected errors (answered with 500 PW_ERR_INTERNAL and no detail); default: one line on stderr. */
  onError?: (err: unknown) => void;
  /** The collector's rollout engine; without it the rollout routes answer 404 (an app over a store alone, as in tests). */
  rollouts?: RolloutEngine;
  /** Refused authentications and 403s are logged here (with the source address, never the token); default: warnings as JSON lines on stderr. */
  logger?: Logger;
  /** What /healthz reports (heartbeat commit, room, periodic quick_check); default: `store.health`, with no periodic check. */
  storeHealth?: HealthCheck;
  /** Failed authentications per source address; default: 10 at once, then one per 6 s, 10,000 sources tracked. */
  authLimiter?: AuthFailureLimiter;
}

export interface Services {
  deps: AppDeps;
  now: () => Date;
  tokens: AppStore['apiTokens'];
  audit: AppStore['audit'];
  hosts: AppStore['hosts'];
  findings: FleetFindings;
  cursors: CursorCodec;
  sessions: SessionStore;
  guard: AuthGuard;
}

export function makeServices(deps: AppDeps): Services {
  const now = deps.now ?? (() => new Date());
  const tokens = deps.store.apiTokens;
  return {
    deps,
    now,
    tokens,
    audit: deps.store.audit,
    hosts: deps.store.hosts,
    findings: new FleetFindings({ store: deps.store, correlator: deps.correlator, policy: deps.policy, now }),
    cursors: new CursorCodec(deps.cursorKey),
    sessions: new SessionStore(tokens, now),
    guard: new AuthGuard({
      tokens,
      limiter: deps.authLimiter ?? new AuthFailureLimiter({ now: () => now().getTime() }),
      refused: deps.metrics.authRefusedTotal,
      logger: deps.logger ?? createLogger({ level: 'warn', destination: process.stderr }),
      audit: deps.store.audit,
      now,
    }),
  };
}
