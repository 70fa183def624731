/**
 * This collector's heartbeat among the replicas sharing the store, and the clearing of
 * dead replicas' connection marks (issue 12 §3; the rows and their locking are
 * store/replicas.ts).
 *
 * Every lease period / 3 the replica renews its row for a lease period; when the row had
 * expired (this replica was cut off from the database, or stalled) it marks its connections
 * again. The replica holding the `housekeeping` duty then clears the marks of replicas whose
 * rows have expired, so an agent whose replica was SIGKILLed is shown disconnected about a
 * lease period after its replica's last heartbeat (15 s by default), or connected again to
 * whichever replica it reaches next. Marks naming no replica at all (written before
 * connection owners were recorded) are cleared when the duty is taken and every
 * ORPHAN_SWEEP_MS after: that needs a scan of the connected agents.
 *
 * On SQLite the same rows are kept by the one collector; the gateway also clears every mark
 * at its start there.
 */
import { hostname } from 'node:os';
import type { Logger } from '../../logger.ts';
import type { ReplicaIdentity } from '../../store/replicas.ts';
import type { AsyncStore } from '../../store/store.ts';
import type { Duty } from './duties.ts';

/** How often marks that name no replica are looked for (they come only from older collectors). */
export const ORPHAN_SWEEP_MS = 10 * 60_000;

export interface Connections {
  connectedAgentIds(): readonly string[];
  /** Clears the marks of those of `agentIds` whose connection has closed since they were listed. */
  clearClosed(agentIds: readonly string[]): Promise<void>;
}

export interface LivenessOptions {
  store: Pick<AsyncStore, 'replicas'>;
  /** The replica id duties.ts made (`host:pid:random`). */
  replica: string;
  /** How long a heartbeat keeps the replica alive: the duties' lease period. */
  leaseMs: number;
  /** Whether this replica sweeps now. */
  housekeeping: Duty;
  /** The agents whose sockets this replica holds (the gateway). */
  connections: Connections;
  logger: Logger;
}

export class ReplicaLiveness {
  readonly #opts: LivenessOptions;
  readonly #self: ReplicaIdentity;
  #timer: NodeJS.Timeout | undefined;
  #tick: Promise<void> = Promise.resolve();
  #stopped = false;
  /** Date.now() of the last orphan sweep; 0 sweeps at the next chance. */
  #orphansAt = 0;
  #failing = false;

  constructor(options: LivenessOptions) {
    this.#opts = options;
    this.#self = { id: options.replica, host: hostname(), pid: process.pid, startedAt: new Date().toISOString() };
    options.housekeeping.onChange((held) => {
      if (held) this.#orphansAt = 0;
    });
  }

  get replica(): string {
    return this.#self.id;
  }

  /** Writes the first heartbeat (before the gateway marks any connection as this replica's), then beats and sweeps every lease period / 3. */
  async start(): Promise<void> {
    await this.beatOnce();
    const loop = (): void => {
      if (this.#stopped) return;
      this.#tick = this.beatOnce().finally(() => {
        if (!this.#stopped) this.#timer = setTimeout(loop, this.#opts.leaseMs / 3).unref();
      });
    };
    this.#timer = setTimeout(loop, this.#opts.leaseMs / 3).unref();
  }

  /** One heartbeat and, when this replica holds housekeeping, one sweep. Never rejects: failures are logged, and the next tick tries again. */
  async beatOnce(): Promise<void> {
    const { store, logger, leaseMs, housekeeping } = this.#opts;
    try {
      const connections = this.#opts.connections;
      let listed: readonly string[] = [];
      const beat = await store.replicas.beat(this.#self, leaseMs, () => (listed = connections.connectedAgentIds()));
      if (this.#failing) logger.info({ replica: this.#self.id }, 'replica heartbeat written again');
      this.#failing = false;
      if (beat.revived && beat.remarked > 0) {
        // A connection that closed between the listing and the new mark had its own clear run before it.
        await connections.clearClosed(listed);
        logger.warn({ replica: this.#self.id, agents: beat.remarked }, 'this replica\'s heartbeat had expired: its agents were marked connected to it again');
      }
    } catch (err) {
      if (!this.#failing) logger.warn({ err, replica: this.#self.id }, `the replica heartbeat failed; after ${leaseMs / 1000} s without one the other replicas clear this one's agents' connected marks`);
      this.#failing = true;
      return;
    }
    if (!housekeeping.held) return;
    try {
      const orphans = Date.now() - this.#orphansAt >= ORPHAN_SWEEP_MS;
      const swept = await store.replicas.sweep({ orphans });
      if (orphans) this.#orphansAt = Date.now();
      for (const r of swept.replicas) {
        logger.warn({ replica: r.id, lastHeartbeat: r.heartbeatAt, agents: r.agents }, `replica ${r.id} stopped beating: the agents it held (${r.agents}) are marked disconnected`);
      }
      if (swept.orphans > 0) logger.info({ agents: swept.orphans }, 'agents marked connected by no known replica are marked disconnected');
    } catch (err) {
      logger.error({ err }, 'clearing dead replicas\' connection marks failed; the next tick tries again');
    }
  }

  /**
   * Stops beating; then clears this replica's marks and removes its row, so its agents are
   * shown disconnected at once rather than a lease period later. Call it after the gateway
   * has closed its connections.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#tick;
    try {
      await this.#opts.store.replicas.leave(this.#self.id);
    } catch (err) {
      this.#opts.logger.warn({ err }, 'could not clear this replica\'s connection marks at close; another replica clears them after its heartbeat expires');
    }
  }
}
