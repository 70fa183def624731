/**
 * A fleet served by several collectors as an operator runs it (issue 12 §3), for the fault
 * tests: a throwaway PostgreSQL cluster, collectors `serve`d each in its own process from
 * one config (one store, one `keyFile`, a short `replicas.leaseSeconds`), and agents that
 * are the real daemon (agent/daemon/agent.ts: its spool, result outbox, instruction ledger
 * and rotation over every collector) in this process, with a simulated inventory and a
 * live-patch handler that logs each run. What each agent was acknowledged, where it was
 * served and what it ran are kept here, for the tests to compare with the store, which they
 * read with their own SQL (`db`), not through the collector's code. Tests only.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Agent, type AgentExit } from '../../agent/daemon/agent.ts';
import { loadConfig, loadPrivateKey } from '../../agent/daemon/config.ts';
import { enroll } from '../../agent/daemon/enroll.ts';
import { createLogger as createAgentLogger } from '../../agent/daemon/log.ts';
import type { Handler } from '../../agent/executor/handler.ts';
import { createLogger } from '../../collector/logger.ts';
import { type OpenedCollector, openCollector } from '../../collector/open-collector.ts';
import type { InstructionResult } from '../instructions.ts';
import type { Inventory } from '../protocol.ts';
import { type ChildCollector, serveInChild } from './collector-process.ts';
import { inventoryOf, rhel95Packages } from './correlate-fixtures.ts';
import { logSink } from './daemon-fixtures.ts';
import { type Postgres, startPostgres } from './postgres.ts';

const ROOT = join(import.meta.dirname, '..', '..');
/** From the sources, as the other tests that serve in a child do: no build needed. */
const SERVE = ['--import', 'tsx', 'collector/main.ts'] as const;

export async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 30_000, everyMs = 50): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export interface Ack {
  id: string;
  hash: string;
  full: boolean;
  status: string;
  /** performance.now() when the agent had it. */
  at: number;
}

export interface Run {
  instructionId: string;
  rolloutId: string | null;
  start: number;
  end: number | null;
}

/** One simulated host running the real agent daemon. */
export class FleetHost {
  readonly name: string;
  readonly agentId: string;
  readonly agent: Agent;
  /** Reports the collector acknowledged, in order. */
  readonly acks: Ack[] = [];
  /** The collector URL of each connection that reached welcome, in order. */
  readonly served: string[] = [];
  /** Every time the live-patch handler ran (the executor's ledger lets it run once per instruction id). */
  readonly runs: Run[] = [];
  /** Instruction results the collector acknowledged. */
  readonly results: InstructionResult[] = [];
  /** The daemon's log lines, parsed. */
  readonly log: ReturnType<typeof logSink>;
  disconnects = 0;
  #variant = 0;
  #inventory: Inventory;
  #run: Promise<AgentExit> | null = null;

  constructor(name: string, agentId: string, agent: Agent, log: ReturnType<typeof logSink>, inventory: Inventory) {
    this.name = name;
    this.agentId = agentId;
    this.agent = agent;
    this.log = log;
    this.#inventory = inventory;
    agent.on('acked', (a) => this.acks.push({ ...a, at: performance.now() }));
    agent.on('connected', (w) => this.served.push(w.collector));
    agent.on('disconnected', () => this.disconnects++);
    agent.on('result', (r) => this.results.push(r));
  }

  get inventory(): Inventory {
    return this.#inventory;
  }

  /** Full reports it has had to send so far: the first and one per change. */
  get changes(): number {
    return this.#variant;
  }

  start(): void {
    this.#run ??= this.agent.run();
  }

  /** The host's packages change (one more of the real image's), so its next check sends a full report. */
  change(): void {
    this.#variant++;
    this.#inventory = variant(this.name, this.#variant);
  }

  /** Nothing waits in its spool or its result outbox, and it is connected. */
  get idle(): boolean {
    return this.agent.spool.size === 0 && this.served.length > 0;
  }

  async stop(): Promise<void> {
    if (this.#run !== null) await this.agent.stop();
  }
}

/** The real RHEL 9.5 image's packages, fewer than all so each change adds one; with a live-patch tool (the rollout targets it). */
let image: Inventory['packages'] | undefined;

function variant(name: string, n: number): Inventory {
  image ??= rhel95Packages();
  const packages = image;
  const inv = inventoryOf('AlmaLinux:9', 'rpm', packages.slice(0, packages.length - 40 + n), {
    livepatch: { provider: 'kpatch', active: true, effectiveVersion: null, fixedCves: [], modules: [] },
  });
  inv.host.hostname = name;
  return inv;
}

export interface FleetOptions {
  replicas?: number;
  leaseSeconds?: number;
  /** How long one live patch takes on a host (drawn per run). */
  workMs?: () => number;
}

export class ReplicaFleet {
  readonly cluster: Postgres;
  readonly dir: string;
  readonly configPath: string;
  readonly replicas: ChildCollector[] = [];
  /** The test's own connection, for reading the store as it is. */
  readonly db: pg.Pool;
  /** The store as a CLI on another machine sees it: tokens, the rollout engine (its enqueues notify the replicas). */
  opened: OpenedCollector | null = null;
  readonly hosts: FleetHost[] = [];
  readonly leaseSeconds: number;
  readonly #workMs: () => number;

  private constructor(cluster: Postgres, dir: string, options: FleetOptions) {
    this.cluster = cluster;
    this.dir = dir;
    this.configPath = join(dir, 'collector.json');
    this.leaseSeconds = options.leaseSeconds ?? 2;
    this.#workMs = options.workMs ?? (() => 0);
    this.db = new pg.Pool({ connectionString: cluster.url, max: 2 });
    this.db.on('error', () => undefined);
  }

  /** The cluster, then the replicas one after the other (the first makes the schema and the key). Close with `close()`. */
  static async start(options: FleetOptions = {}): Promise<ReplicaFleet> {
    const cluster = await startPostgres();
    const dir = mkdtempSync(join(tmpdir(), 'pw-faults-'));
    const fleet = new ReplicaFleet(cluster, dir, options);
    try {
      writeFileSync(
        fleet.configPath,
        JSON.stringify({ store: { kind: 'postgres', url: cluster.url }, keyFile: join(dir, 'collector.key'), feedSync: false, replicas: { leaseSeconds: fleet.leaseSeconds } }),
      );
      for (let i = 0; i < (options.replicas ?? 2); i++) fleet.replicas.push(await fleet.serve());
      fleet.opened = await openCollector({ store: { kind: 'postgres', url: cluster.url }, keyFile: join(dir, 'collector.key'), key: 'read', logger: createLogger({ level: 'silent' }) });
    } catch (err) {
      await fleet.close();
      throw err;
    }
    return fleet;
  }

  /** The test's own view of the store (as a CLI elsewhere has it). */
  store(): OpenedCollector['store'] {
    if (this.opened === null) throw new Error('the fleet is closed');
    return this.opened.store;
  }

  rollouts(): OpenedCollector['rollouts'] {
    if (this.opened === null) throw new Error('the fleet is closed');
    return this.opened.rollouts;
  }

  serve(): Promise<ChildCollector> {
    return serveInChild(SERVE, ['--config', this.configPath, '--listen', '127.0.0.1:0'], { cwd: ROOT });
  }

  get agentUrls(): string[] {
    return this.replicas.map((r) => r.agentUrl);
  }

  /** SIGKILL, as the OOM killer or a power cut would: no lease given up, no connection closed. Resolves once it is gone. */
  async kill(replica: ChildCollector): Promise<void> {
    process.kill(replica.pid, 'SIGKILL');
    await replica.stop();
  }

  /** Whether the replica's process is still there (it did not die of an error of its own). */
  alive(replica: ChildCollector): boolean {
    try {
      process.kill(replica.pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  /** Enrolls `n` hosts, spread over the replicas, each listing every replica; none runs until start(). */
  async enroll(n: number): Promise<FleetHost[]> {
    const { token } = await this.store().tokens.create({ uses: n, ttlMs: 3_600_000, createdBy: 'cli:test' });
    const urls = this.agentUrls;
    for (let i = 0; i < n; i++) {
      const name = `host-${String(this.hosts.length).padStart(3, '0')}`;
      const home = join(this.dir, name);
      mkdirSync(home);
      const configPath = join(home, 'agent.json');
      const first = urls[i % urls.length] as string;
      await enroll({ collectorUrl: first, collectorUrls: urls.filter((u) => u !== first), token, configPath, identity: { hostname: name, machineId: null } });
      const config = await loadConfig(configPath);
      const { key } = await loadPrivateKey(config.keyFile);
      // The handler and the inventory source are the host's, made below with the agent they go into.
      const ref: { host: FleetHost | null } = { host: null };
      const handler: Handler = {
        name: 'kpatch',
        run: async (instruction) => {
          const run: Run = { instructionId: instruction.id, rolloutId: instruction.rolloutId, start: performance.now(), end: null };
          ref.host?.runs.push(run);
          await sleep(this.#workMs());
          run.end = performance.now();
          return { status: 'succeeded', code: null, message: 'live patch applied', commands: [] };
        },
      };
      const sink = logSink();
      const agent = await Agent.create({
        config,
        key,
        log: createAgentLogger({ destination: sink }),
        collect: () => Promise.resolve({ ...(ref.host as FleetHost).inventory, collectedAt: new Date().toISOString() }),
        watch: [],
        // Another collector is tried within 100 ms; all of them down, at most a second apart.
        backoff: { baseMs: 100, capMs: 1000, stableMs: 60_000 },
        handshakeTimeoutMs: 5000,
        ackTimeoutMs: 20_000,
        resolveHandler: () => Promise.resolve(handler),
      });
      ref.host = new FleetHost(name, config.agentId, agent, sink, variant(name, 0));
      this.hosts.push(ref.host);
    }
    return this.hosts.slice(-n);
  }

  /** `/healthz`'s status code on a replica (0: no answer). */
  async health(replica: ChildCollector): Promise<number> {
    try {
      const res = await fetch(`${replica.url}/healthz`, { signal: AbortSignal.timeout(5000) });
      await res.arrayBuffer();
      return res.status;
    } catch {
      return 0;
    }
  }

  /** The live holder of a duty's lease (its `host:pid:random`), or null. */
  async holder(duty: string): Promise<string | null> {
    const r = await this.db.query<{ holder: string }>('SELECT holder FROM leases WHERE name = $1 AND expires_at > now()', [duty]);
    return r.rows[0]?.holder ?? null;
  }

  /** Stops the agents, the replicas, then the cluster, and removes every file. Idempotent. */
  async close(): Promise<void> {
    await Promise.all(this.hosts.splice(0).map((h) => h.stop()));
    await Promise.all(this.replicas.map((r) => r.stop()));
    await this.opened?.close();
    this.opened = null;
    await this.db.end().catch(() => undefined);
    await this.cluster.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Whether a lease holder string (`host:pid:random`) names this process. */
export function heldBy(holder: string | null, replica: ChildCollector): boolean {
  return holder?.split(':')[1] === String(replica.pid);
}
