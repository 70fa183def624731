/**
 * The fleet at scale for `npm run bench -- --only scale` (issue 12, "Must show"): simulated
 * agents driven from several worker processes (scale-worker.ts), over loopback, against
 * collectors in their own processes, at each size of PW_BENCH_SCALE (default 1000,10000),
 * to show whether the collector's cost per agent stays flat as the fleet grows.
 *
 * Why several processes: every process here may hold 20,000 open files (ulimit -Hn, which
 * cannot be raised), so one process cannot hold 50,000 sockets; each worker drives at most
 * MAX_AGENTS_PER_WORKER agents. Each worker binds its sockets to its own loopback source
 * addresses (127.100+w.x.y), at most AGENTS_PER_ADDRESS agents on one, as a real fleet
 * comes from many hosts: the gateway limits pending handshakes per source address
 * (maxPendingPerAddress, 256), and the bench keeps every source and the whole fleet under
 * the limits (maxPendingHandshakes, 1024) instead of measuring 503s.
 *
 * Phases, each with a deadline, timed in the workers (first start to last end, over all of
 * them) and summed here: enrollment with one counted token (a new ed25519 key each),
 * connect with a signed hello and hold, one full report per agent (2,000 packages; the
 * fleet's 32 package sets, each stored once), one report naming a held set, one unchanged
 * report. After each: the collectors' RSS (/proc/PID/status), and after connecting and
 * holding, the connected agents as the collectors count them (/metrics).
 *
 * Each agent holds the LIST of collectors and picks one as agent/daemon does
 * (CollectorRotation: its own ranking of the list by sha256 of its id and each URL, the next in it after a failure). Each size runs twice,
 * each time on a fresh store prepared as bench-fleet.ts does (a token, the real Debian
 * DSA/DLA lists and KEV): against one SQLite collector (dist/collector.js serve, 127.0.0.1:0),
 * which holds at most about 19,000 connections (its own open-file limit), so larger sizes
 * run on PostgreSQL alone; and against REPLICAS collectors (serve --config, one keyFile) on
 * one throwaway PostgreSQL cluster, into which the prepared store was moved with `store
 * migrate`. Each replica's connections and RSS are its own (patchwarden_agent_connections
 * on its /metrics, /proc/PID/status).
 *
 * On the replicas two more figures, after the reports:
 * - instruction delivery across replicas: a sample of the connected agents, spread over
 *   every worker and so every replica, is sent one signed refresh each, enqueued from this
 *   process (the outbox's insert and pg_notify, as the CLI or a rollout on another replica
 *   enqueues); the replica holding the agent pushes it. Each worker says when the frame
 *   arrived; its agent checks it as agent/daemon does and answers with a result and a
 *   report. Timed from the start of the enqueue (one machine, one clock).
 * - takeover: the replica holding the most agents is SIGKILLed while every agent is
 *   connected; its agents reconnect as agent/daemon does (the next collector of their own
 *   ranking of the list, a jittered delay within a second) and are served an unchanged
 *   report. Timed from the kill to the last one served; the survivors' /metrics must then
 *   count every agent. The rankings spread a dead replica's agents over the survivors:
 *   where those could not hold them within their open-file limit (50,000 agents: about
 *   25,000 on each of two processes), agents are released first, evenly, and the figure
 *   says how many.
 *
 * Baselines from the same run: each phase's time and memory per agent at the smallest size
 * (1.00x at a larger size: the cost per agent did not grow); at the smallest size itself, a
 * ws echo server in its own process driven by the same workers from the same addresses
 * (connect with one round trip, one echo round trip of an unchanged-report frame, its RSS
 * per held connection). Whatever happens, the workers, the echo server, the collectors and
 * the PostgreSQL cluster are stopped and the temporary directories removed.
 */
import { ensureBuilt } from './dist-fresh.ts';
import { type ChildProcess, fork, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { readCollectorKey } from '../collector/signing-key.ts';
import { openPostgresStore } from '../collector/store/store.ts';
import { type Instruction, signInstruction } from '../shared/instructions.ts';
import { rssMiB, serveInChild, type ChildCollector } from '../shared/testing/collector-process.ts';
import { atExit, OwnedChild, ownedTempDir } from '../shared/testing/owned-child.ts';
import { type Postgres, startPostgres } from '../shared/testing/postgres.ts';
import { needs, TOOLS } from '../shared/testing/system-tools.ts';
import type { Inventory } from '../shared/protocol.ts';
import { Child, ECHO_SERVER, FULL_WINDOW, HANDSHAKE_CONCURRENCY, openFileLimit, percentile, pool, prepareStore, procCpuSeconds, procStatus, scrapeMetrics, settle, UNCHANGED_WINDOW, VARIANTS } from './bench-fleet.ts';
import { type InitMessage, MAX_AGENTS_PER_WORKER, type Phase, type PhaseMessage, type PhaseResult, type WorkerMessage, WorkerMessageSchema } from './scale-ipc.ts';

const ROOT = join(import.meta.dirname, '..');

/** bench.ts's figure(), passed in (bench.ts runs its main on import). */
export type MakeScaleFigure<F> = (
  section: 'scale',
  name: string,
  value: number,
  unit: 'ms' | 'us' | 'MB' | 'KB' | 'count',
  baseline: { name: string; value: number } | null,
  options?: { aim?: (value: number, ratio: number | null) => { text: string; met: boolean }; note?: string; invalid?: string | null },
) => F;

export const DEFAULT_SIZES = [1000, 10_000];
/** Agents sharing one source address at most: a few hundred, like a NAT'd site, under maxPendingPerAddress (256) in flight. */
const AGENTS_PER_ADDRESS = 200;
/** Descriptors a collector needs besides its agents' sockets (store, WAL, logs, HTTP, Node). */
const COLLECTOR_FD_MARGIN = 1000;
/**
 * Enrollments in flight over the whole fleet: a wave of new hosts, not the whole fleet at
 * once. Every enrollment takes the one token's row (its use count) for its transaction, so
 * on PostgreSQL they are committed one after the other; more in flight only queue, and a
 * queue longer than the gateway's 5 s handshake timeout drops them (an enrollment may
 * then commit after its agent gave up, leaving it unable to enroll again with that key).
 */
const ENROLL_WINDOW = 32;
/** How long the connected fleet is held before the reports: every connection must still be open after. */
const HOLD_MS = 5000;
/** Time for a worker to answer beyond its phase's own deadline before the bench gives up on it. */
const ANSWER_GRACE_MS = 60_000;

const COLLECTOR_PHASES = ['enroll', 'connect', 'full', 'byReference', 'unchanged'] as const satisfies readonly Phase[];
type CollectorPhase = (typeof COLLECTOR_PHASES)[number];

const PHASE_NAMES: Record<CollectorPhase, string> = {
  enroll: 'enrollment (new key, enroll, one counted token)',
  connect: 'connect with a signed hello, held',
  full: 'full report (2,000 packages in the frame)',
  byReference: 'report naming a held package set',
  unchanged: 'unchanged report',
};

/**
 * Per agent, ms of deadline on top of a minute: generous, this machine's two cores are
 * shared. The arm phases' deadlines cover their waits too (the instructions of a sample,
 * the reconnects of a killed replica's agents).
 */
const DEADLINE_PER_AGENT_MS: Record<Phase, number> = {
  // PostgreSQL commits one token's enrollments one after the other: 37/s on the shared machine.
  enroll: 40,
  connect: 10,
  full: 40,
  byReference: 10,
  unchanged: 2,
  instructionArm: 20,
  instructionWait: 0,
  takeoverArm: 10,
  takeoverWait: 0,
  echoConnect: 10,
  echoRoundTrip: 2,
  release: 1,
};

/** The PostgreSQL collectors of a run: replicas of one store, each agent given all their URLs. */
export const REPLICAS = 3;
/** Each replica's pool (config `store.maxConnections`), as the README's example. */
const PG_POOL = 10;
/** Agents sent one instruction each across replicas, at most: enough for a p99, few enough to enqueue in seconds. */
const INSTRUCTION_SAMPLE = 2000;
/** Instructions being enqueued at once from the bench's own connections, as a rollout tick or an operator's CLI would. */
const ENQUEUE_CONCURRENCY = 4;
/** How long the survivors' connection counts may take to settle after the last moved agent was served. */
const SURVIVOR_SETTLE_MS = 30_000;
/** Uneven spread of the agents' rankings: a replica may hold this much over its even share. */
const SPREAD_SLACK = 1.05;

export type Engine = 'sqlite' | 'postgres';
const ENGINE_NAMES: Record<Engine, string> = { sqlite: 'SQLite', postgres: `${REPLICAS} PostgreSQL replicas` };

export function sizesFromEnv(text = process.env.PW_BENCH_SCALE): number[] {
  if (text === undefined || text.trim() === '') return DEFAULT_SIZES;
  const sizes = text.split(',').map((s) => s.trim());
  const bad = sizes.filter((s) => !/^\d{1,7}$/.test(s) || Number(s) < VARIANTS);
  if (bad.length > 0 || sizes.length === 0) throw new RangeError(`PW_BENCH_SCALE=${text}: expected a comma list of agent counts, each at least ${VARIANTS} (one agent per package set)`);
  return [...new Set(sizes.map(Number))].sort((a, b) => a - b);
}

// ---------------------------------------------------------------------------------------
// workers

/** One forked scale-worker.ts: requests answered in order, every answer checked against scale-ipc.ts. */
class Worker {
  readonly index: number;
  readonly proc: ChildProcess;
  readonly #owned: OwnedChild;
  #waiter: { resolve: (m: WorkerMessage) => void; reject: (e: Error) => void } | null = null;

  constructor(index: number) {
    this.index = index;
    this.proc = fork(join(ROOT, 'scripts', 'scale-worker.ts'), [], { cwd: ROOT, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' });
    this.#owned = new OwnedChild(this.proc);
    void this.#owned.exited.then((exit) => {
      this.#fail(new Error(`worker ${index} ended (${exit})`));
    });
    this.proc.once('error', (err) => {
      this.#fail(new Error(`worker ${index}: ${err.message}`));
    });
    this.proc.on('message', (raw: unknown) => {
      const parsed = WorkerMessageSchema.safeParse(raw);
      if (!parsed.success) {
        this.#fail(new Error(`worker ${index} sent an unreadable message: ${parsed.error.message.slice(0, 500)}`));
        return;
      }
      const w = this.#waiter;
      this.#waiter = null;
      if (w === null) return;
      if (parsed.data.type === 'failed') w.reject(new Error(`worker ${index} failed: ${parsed.data.message}`));
      else if (parsed.data.worker !== index) w.reject(new Error(`worker ${index} answered as worker ${parsed.data.worker}`));
      else w.resolve(parsed.data);
    });
  }

  #fail(err: Error): void {
    const w = this.#waiter;
    this.#waiter = null;
    w?.reject(err);
  }

  request(msg: unknown, timeoutMs: number): Promise<WorkerMessage> {
    const exit = this.#owned.exit;
    if (exit !== null) return Promise.reject(new Error(`worker ${this.index} ended (${exit})`));
    if (this.#waiter !== null) return Promise.reject(new Error(`worker ${this.index} is busy`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#fail(new Error(`worker ${this.index}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiter = {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.proc.send(msg as object);
    });
  }

  /** Asks it to drop its connections and exit; SIGKILL after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    await this.#owned.stop(graceMs, () => {
      if (this.proc.connected) this.proc.send({ type: 'exit' });
    });
  }
}

/** The loopback addresses of worker `w`: 127.(100+w).x.y, none of them 127.0.0.1 where the collectors listen. */
function addressesOf(w: number, agents: number): string[] {
  const n = Math.ceil(agents / AGENTS_PER_ADDRESS);
  return Array.from({ length: n }, (_, j) => `127.${100 + w}.${Math.floor(j / 250)}.${1 + (j % 250)}`);
}

interface Summed {
  phase: Phase;
  count: number;
  failed: number;
  /** First start to last end over the workers. */
  ms: number;
  latencyMs: { p50: number; p99: number; max: number };
  statuses: Record<string, number>;
  failovers: number;
  open: number;
  workerCpuSeconds: number;
  problems: string[];
}

function sum(phase: Phase, results: readonly PhaseResult[]): Summed {
  const latencies = results.flatMap((r) => r.latenciesMs).sort((a, b) => a - b);
  const statuses: Record<string, number> = {};
  for (const r of results) for (const [s, n] of Object.entries(r.statuses)) statuses[s] = (statuses[s] ?? 0) + n;
  return {
    phase,
    count: results.reduce((s, r) => s + r.count, 0),
    failed: results.reduce((s, r) => s + r.failed, 0),
    ms: Math.max(...results.map((r) => r.endedAt)) - Math.min(...results.map((r) => r.startedAt)),
    latencyMs: { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), max: latencies[latencies.length - 1] ?? NaN },
    statuses,
    failovers: results.reduce((s, r) => s + r.failovers, 0),
    open: results.reduce((s, r) => s + r.open, 0),
    workerCpuSeconds: results.reduce((s, r) => s + r.cpuSeconds, 0),
    problems: results.flatMap((r) => r.problems.map((p) => `worker ${r.worker}: ${p}`)),
  };
}

export class Workers {
  readonly list: Worker[];
  /** Source addresses given out over all workers. */
  addresses = 0;
  /** Agents each worker drives. */
  counts: number[] = [];

  constructor(count: number) {
    this.list = Array.from({ length: count }, (_, i) => new Worker(i));
  }

  /** Gives each worker its share of `agents` and waits until each has built its frames. */
  async init(agents: number, base: Omit<InitMessage, 'type' | 'worker' | 'firstAgent' | 'agents' | 'addresses' | 'windows'>): Promise<{ full: number; byReference: number; unchanged: number }> {
    const k = this.list.length;
    const share = Math.ceil(agents / k);
    // The gateway's limits hold for the whole fleet at once; each worker takes its part.
    const windows = { enroll: Math.ceil(ENROLL_WINDOW / k), handshake: Math.ceil((2 * HANDSHAKE_CONCURRENCY) / k), full: Math.ceil(FULL_WINDOW / k), unchanged: Math.ceil(UNCHANGED_WINDOW / k) };
    const answers = await Promise.all(
      this.list.map((w, i) => {
        const first = i * share;
        const mine = Math.min(share, agents - first);
        this.counts[i] = mine;
        const addresses = addressesOf(i, mine);
        this.addresses += addresses.length;
        const msg: InitMessage = { type: 'init', worker: i, firstAgent: first, agents: mine, addresses, windows, ...base };
        return w.request(msg, 120_000);
      }),
    );
    const ready = answers[0];
    if (ready?.type !== 'ready') throw new Error(`worker 0 answered init with ${ready?.type ?? 'nothing'}`);
    return ready.frameBytes;
  }

  /** Runs `phase` in every worker at once and sums their results. */
  async phase(phase: Phase, agents: number, echoUrl?: string): Promise<Summed> {
    return sum(phase, await this.each(phase, agents, () => (echoUrl === undefined ? {} : { echoUrl })));
  }

  /** Runs `phase` in every worker at once, each with its own extra fields; their results as they are. */
  async each(phase: Phase, agents: number, extra: (worker: number) => Partial<PhaseMessage>, deadlineMs = 60_000 + agents * DEADLINE_PER_AGENT_MS[phase]): Promise<PhaseResult[]> {
    const answers = await Promise.all(this.list.map((w, i) => w.request({ type: 'phase', phase, deadlineMs, ...extra(i) }, deadlineMs + ANSWER_GRACE_MS)));
    return answers.map((a, i) => {
      if (a.type !== 'result' || a.phase !== phase) throw new Error(`worker ${i} answered ${phase} with ${a.type}`);
      return a;
    });
  }

  async stop(): Promise<void> {
    await Promise.all(this.list.map((w) => w.stop(10_000)));
  }
}

// ---------------------------------------------------------------------------------------
// collectors

/** A collector under test: its process (for RSS and CPU) and its addresses. */
interface Collector {
  pid: number;
  httpUrl: string;
  agentUrl: string;
  stop(): Promise<void>;
  /** Its first error-level log lines. */
  errors(): string[];
}

/** Whether the process still runs (a collector that died mid-phase invalidates every figure after). */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Started {
  collectors: Collector[];
  token: string;
  engine: string;
  /** PostgreSQL: the database, and the key every replica signs with (the bench signs its instructions with it too). */
  postgres: { url: string; keyPath: string } | null;
  /** Stops the collectors and the database server, removes the cluster's directory. */
  stop(): Promise<void>;
}

function cli(collectorJs: string, dir: string, args: readonly string[]): void {
  const r = spawnSync(process.execPath, [collectorJs, ...args], { cwd: dir, encoding: 'utf8', timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
  if (r.error !== undefined || r.status !== 0) throw new Error(`${args.slice(0, 2).join(' ')} failed (${r.error?.message ?? `exit ${r.status ?? r.signal ?? '?'}`}): ${r.stderr}`);
}

/**
 * The collectors the agents spread over, each in its own process (`dist/collector.js
 * serve`, 127.0.0.1:0). SQLite: one collector on a prepared file. PostgreSQL: a throwaway
 * cluster (fsync on, as a production server: the SQLite collector pays for its commits
 * too), the same prepared file moved into it with `store migrate` as an operator moves a
 * SQLite collector (the token and the DSA/DLA/KEV feeds come along), then REPLICAS
 * collectors on one config (`store`, `keyFile`): the first makes the key, the others read it.
 */
async function startCollectors(engine: Engine, collectorJs: string, dir: string, dataDir: string, agents: number): Promise<Started> {
  const dbPath = join(dir, 'collector.db');
  const token = prepareStore(collectorJs, dir, dbPath, dataDir, agents, 'bench scale');
  const asCollector = (c: ChildCollector): Collector => ({ pid: c.pid, httpUrl: c.url, agentUrl: c.agentUrl, stop: () => c.stop(), errors: () => c.errors() });
  if (engine === 'sqlite') {
    const c = asCollector(await serveInChild([collectorJs], ['--db', dbPath, '--listen', '127.0.0.1:0'], { cwd: dir }));
    return { collectors: [c], token, engine: 'one SQLite collector', postgres: null, stop: () => c.stop() };
  }
  const cluster: Postgres = await startPostgres({ durable: true });
  // startPostgres quits the server if this process exits without stop(); its directory goes too.
  const forgetCluster = atExit(() => {
    rmSync(cluster.socketDir, { recursive: true, force: true });
  });
  const collectors: Collector[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(collectors.map((c) => c.stop()));
    await cluster.stop();
    forgetCluster();
  };
  try {
    cli(collectorJs, dir, ['store', 'migrate', '--from', dbPath, '--to', cluster.url]);
    rmSync(dbPath, { force: true });
    const keyPath = join(dir, 'collector.key');
    const configPath = join(dir, 'collector.json');
    writeFileSync(configPath, JSON.stringify({ store: { kind: 'postgres', url: cluster.url, maxConnections: PG_POOL }, keyFile: keyPath, feedSync: false }), { mode: 0o600 });
    const serve = async (): Promise<Collector> => asCollector(await serveInChild([collectorJs], ['--config', configPath, '--listen', '127.0.0.1:0'], { cwd: dir }));
    // The first makes the key; the others start together and read it.
    collectors.push(await serve());
    const rest = await Promise.allSettled(Array.from({ length: REPLICAS - 1 }, serve));
    for (const r of rest) if (r.status === 'fulfilled') collectors.push(r.value);
    const failed = rest.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    return { collectors, token, engine: `${REPLICAS} PostgreSQL replicas (one cluster, pool ${PG_POOL} each)`, postgres: { url: cluster.url, keyPath }, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Most agents one collector process can hold: one socket each within its open-file limit. */
export function collectorCapacity(): number {
  return openFileLimit() - COLLECTOR_FD_MARGIN;
}

/** Most agents the run of `engine` can hold: the replicas' even shares, with room for the uneven spread. */
export function engineCapacity(engine: Engine): number {
  return engine === 'sqlite' ? collectorCapacity() : Math.floor((collectorCapacity() * REPLICAS) / SPREAD_SLACK);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function now(): number {
  return performance.timeOrigin + performance.now();
}
// ---------------------------------------------------------------------------------------
// one size

interface PhaseFigures extends Summed {
  /** Wall time per agent that completed it, in microseconds. */
  usPerAgent: number;
  /** The collectors' RSS after the phase (summed, and each), and over their idle RSS per agent. */
  rssMb: number;
  rssByCollector: number[];
  kbPerAgent: number;
  /** Collector CPU seconds over wall seconds, summed over collectors; the workers' the same. */
  collectorCpu: number;
  workerCpu: number;
  /** Ms until the collectors had correlated what the phase queued (report phases), null if never. */
  settleMs: number | null;
}

/** Instructions enqueued from the bench's own process, each delivered by the replica holding its agent. */
interface InstructionRun {
  sample: number;
  enqueued: number;
  delivered: number;
  /**
   * Arrival at the agent minus the start of the enqueue (its insert and pg_notify
   * included), ms: an upper bound of commit-to-agent, never below it (the agent may read
   * the frame before the bench has read the enqueue's answer).
   */
  latencyMs: { p50: number; p99: number; max: number; min: number };
  /** The enqueue itself (insert + notify, from the bench's pool), p50 and p99 ms. */
  enqueueEachMs: { p50: number; p99: number };
  /** Per replica: instructions its agents were sent, and their p99. */
  byReplica: { sent: number; p99: number }[];
  enqueueMs: number;
  problems: string[];
}

/** One replica SIGKILLed while every agent was connected, its agents served by the others. */
interface TakeoverRun {
  victim: number;
  /** Agents released first so that the replicas left can hold the rest (their open-file limit), else 0. */
  trimmed: number;
  why: string | null;
  /** Agents connected before the kill, and those the victim held (which must move). */
  connectedBefore: number;
  moved: number;
  served: number;
  /** From the kill until the last moved agent was served; per agent p50 and p99. */
  allMs: number;
  perAgentMs: { p50: number; p99: number };
  /** Where the moved agents were served, by replica index. */
  servedBy: number[];
  retries: Record<string, number>;
  failovers: number;
  /** Connected by the surviving replicas' /metrics after, each and summed; the workers' open connections. */
  survivorsConnected: (number | null)[];
  survivorsTotal: number | null;
  /** The store's count of connected agents after (still counting the dead replica's until liveness sweeps them). */
  storeAfter: number | null;
  workersOpen: number;
  survivorsRssMb: number[];
  survivorsPeakRssMb: number[];
  problems: string[];
}

interface SizeRun {
  agents: number;
  engineKey: Engine;
  workers: number;
  addresses: number;
  engine: string;
  frameBytes: { full: number; byReference: number; unchanged: number };
  idleRssMb: number;
  peakRssMb: number;
  /** Each collector's idle and peak RSS (before any kill), and its connected agents after the hold. */
  replicas: { idleRssMb: number; peakRssMb: number; connected: number | null }[];
  phases: Record<CollectorPhase, PhaseFigures>;
  /**
   * Connections the collectors hold by their /metrics after connecting, and again after
   * holding HOLD_MS (summed over replicas); the store's count of connected agents then.
   */
  connected: { reported: number | null; afterHold: number | null; store: number | null; heldOpen: number };
  echo: { connect: Summed; roundTrip: Summed; idleRssMb: number; heldRssMb: number; kbPerConnection: number; problems: string[] } | null;
  instructions: InstructionRun | null;
  takeover: TakeoverRun | null;
  /** The collectors' counts at the end disagree with what the workers were answered. */
  problems: string[];
}

/** The agent connections each collector process holds, by its /metrics (patchwarden_agent_connections). */
async function connectedEach(collectors: readonly Collector[]): Promise<(number | null)[]> {
  return Promise.all(collectors.map(async (c) => (await scrapeMetrics(c.httpUrl)).held));
}

/** The store's count of connected agents (patchwarden_agents_connected), as one collector reads it. */
async function storeConnected(c: Collector | undefined): Promise<number | null> {
  return c === undefined ? null : (await scrapeMetrics(c.httpUrl)).connected;
}

function total(values: readonly (number | null)[]): number | null {
  return values.some((v) => v === null) ? null : values.reduce<number>((s, v) => s + (v ?? 0), 0);
}

/** The ws echo baseline, run by the same workers from the same addresses. */
async function echoBaseline(workers: Workers, agents: number, progress: (line: string) => void): Promise<NonNullable<SizeRun['echo']>> {
  const echo = new Child(['-e', ECHO_SERVER], ROOT);
  try {
    const port = (await echo.waitLine(/^echo listening on (\d+)$/, 30_000, 'the ws echo server'))[1] ?? '';
    const pid = echo.proc.pid;
    if (pid === undefined) throw new Error('the echo server has no pid');
    await sleep(300);
    const idleRssMb = rssMiB(pid);
    progress(`scale: baseline: ${agents} ws connects with one round trip to an echo server, held, then one echo round trip each`);
    const connect = await workers.phase('echoConnect', agents, `ws://127.0.0.1:${port}/`);
    await sleep(1000);
    const heldRssMb = rssMiB(pid);
    const roundTrip = await workers.phase('echoRoundTrip', agents);
    await workers.phase('release', agents);
    const problems: string[] = [];
    for (const [what, s] of [['echo connect', connect], ['echo round trip', roundTrip]] as const) {
      if (s.failed > 0 || s.problems.length > 0) problems.push(`${what}: ${s.failed} failed; ${s.problems.join('; ')}`);
    }
    return { connect, roundTrip, idleRssMb, heldRssMb, kbPerConnection: ((heldRssMb - idleRssMb) * 1024) / Math.max(1, connect.count), problems };
  } finally {
    await echo.stop(5000);
  }
}

function stats(sorted: readonly number[]): { p50: number; p99: number; max: number; min: number } {
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted[sorted.length - 1] ?? NaN, min: sorted[0] ?? NaN };
}

/**
 * Hosts in the PostgreSQL store, asked directly (the bench's own connection), and the
 * enrolled agents that have none: how many reports the store holds for each and the
 * inventory hash it recorded, to tell a report never stored from a host row lost.
 */
async function hostsInStore(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const hosts = await client.query<{ n: string }>('SELECT count(*) AS n FROM hosts');
    const missing = await client.query<{ id: string; reports: string; hash: string | null }>(
      'SELECT a.id, (SELECT count(*) FROM reports r WHERE r.agent_id = a.id) AS reports, a.last_inventory_hash AS hash FROM agents a WHERE NOT EXISTS (SELECT 1 FROM hosts h WHERE h.agent_id = a.id) ORDER BY a.id LIMIT 5',
    );
    return `${hosts.rows[0]?.n ?? '?'} hosts; agents without one: ${missing.rows.map((r) => `${r.id} (${r.reports} reports, last inventory ${r.hash?.slice(0, 12) ?? 'none'})`).join(', ') || 'none'}`;
  } finally {
    await client.end();
  }
}

/**
 * Delivery across replicas: a sample of connected agents, spread over every worker (and so
 * over every replica), is sent one signed `refresh` instruction each, enqueued from this
 * process through the store as the CLI or another replica's rollout tick would (the
 * outbox's insert, then its pg_notify); the replica holding the agent is told by the
 * notification and pushes it. Each agent checks it as agent/daemon does, answers with its
 * result and a fresh (unchanged) report, and says when the frame arrived.
 */
async function instructionDelivery(workers: Workers, agents: number, pg: NonNullable<Started['postgres']>, replicas: number, progress: (line: string) => void): Promise<InstructionRun> {
  const key = readCollectorKey(pg.keyPath);
  const sample = Math.min(agents, INSTRUCTION_SAMPLE);
  const deadlineMs = 60_000 + sample * DEADLINE_PER_AGENT_MS.instructionArm;
  progress(`scale ${agents}: one signed instruction to each of ${sample} agents, enqueued from the bench, pushed by the replica holding each`);
  // Each worker's share of the sample by its agents, the rounding's remainder to the first ones: exactly `sample` in all.
  const shares = workers.counts.map((n) => Math.floor((sample * n) / agents));
  for (let i = 0, left = sample - shares.reduce((x, y) => x + y, 0); left > 0; i = (i + 1) % shares.length, left--) shares[i] = (shares[i] ?? 0) + 1;
  const armed = await workers.each('instructionArm', sample, (i) => ({ sample: shares[i] ?? 0, collectorPublicKey: key.publicKey }), deadlineMs);
  const targets = armed.flatMap((r) => r.armed ?? []);
  const problems = armed.flatMap((r) => r.problems.map((p) => `worker ${r.worker}: ${p}`));
  const committed = new Map<string, { at: number; collector: number }>();
  const enqueueTimes: number[] = [];
  const store = await openPostgresStore({ kind: 'postgres', url: pg.url, maxConnections: ENQUEUE_CONCURRENCY });
  const t0 = now();
  try {
    const r = await pool(targets.length, ENQUEUE_CONCURRENCY, performance.now() + deadlineMs, async (j) => {
      const t = targets[j];
      if (t === undefined) return;
      const issued = new Date();
      const id = randomUUID();
      const instruction: Instruction = {
        schema: 'patchwarden.instruction/1',
        kind: 'refresh',
        id,
        agentId: t.agentId,
        issuedAt: issued.toISOString(),
        notBefore: issued.toISOString(),
        expiresAt: new Date(issued.getTime() + 3_600_000).toISOString(),
        rolloutId: null,
        dryRun: false,
      };
      const signed = signInstruction(instruction, key.privateKeyPem);
      const at = now();
      await store.outbox.enqueue({ id, agentId: t.agentId, payload: signed.payload, signature: signed.signature, expiresAt: instruction.expiresAt, rolloutId: null }, issued);
      committed.set(id, { at, collector: t.collector });
      enqueueTimes.push(now() - at);
    });
    if (r.failed > 0 || r.timedOut) problems.push(`enqueue: ${r.failed} failed${r.timedOut ? ', deadline reached' : ''}: ${r.errors.join('; ')}`);
  } finally {
    await store.close();
  }
  const enqueueMs = now() - t0;
  const waited = await workers.each('instructionWait', sample, () => ({}), deadlineMs);
  problems.push(...waited.flatMap((r) => r.problems.map((p) => `worker ${r.worker}: ${p}`)));
  const latencies: number[] = [];
  const byReplica = Array.from({ length: replicas }, () => [] as number[]);
  for (const a of waited.flatMap((r) => r.arrivals ?? [])) {
    const c = committed.get(a.instructionId);
    if (c === undefined) {
      problems.push(`instruction ${a.instructionId} arrived but was not enqueued by the bench`);
      continue;
    }
    latencies.push(a.at - c.at);
    byReplica[c.collector]?.push(a.at - c.at);
  }
  latencies.sort((a, b) => a - b);
  if (latencies.length !== committed.size) problems.push(`${committed.size - latencies.length} of ${committed.size} instructions enqueued never arrived`);
  if (committed.size !== sample) problems.push(`${committed.size} of ${sample} instructions enqueued`);
  return {
    sample,
    enqueued: committed.size,
    delivered: latencies.length,
    latencyMs: stats(latencies),
    enqueueEachMs: { p50: percentile(enqueueTimes.sort((a, b) => a - b), 0.5), p99: percentile(enqueueTimes, 0.99) },
    byReplica: byReplica.map((l) => ({ sent: l.length, p99: percentile(l.sort((a, b) => a - b), 0.99) })),
    enqueueMs,
    problems,
  };
}

/**
 * SIGKILL of the replica holding the most agents while every agent is connected; each of
 * its agents reconnects as agent/daemon does (the next collector of its own ranking, a
 * jittered delay within the first second) and is served an unchanged report. The rankings
 * spread the dead replica's agents over the others: when those cannot hold them within their
 * open-file limit, agents are released first, evenly over the fleet, so that they can; the
 * figure says how many.
 */
async function takeover(workers: Workers, agents: number, collectors: readonly Collector[], collectorPublicKey: string, progress: (line: string) => void): Promise<TakeoverRun> {
  const problems: string[] = [];
  let perReplica = await connectedEach(collectors);
  const victim = perReplica.reduce<number>((best, v, i) => ((v ?? -1) > (perReplica[best] ?? -1) ? i : best), 0);
  const capacity = collectorCapacity();
  // Each survivor takes its share of the dead replica's agents on top of its own.
  const share = (perReplica[victim] ?? 0) / Math.max(1, collectors.length - 1);
  const next = perReplica.reduce<number>((best, v, i) => (i !== victim && (best === victim || (v ?? 0) > (perReplica[best] ?? 0)) ? i : best), victim === 0 ? 1 : 0);
  const both = Math.ceil((perReplica[next] ?? 0) + share);
  let trimmed = 0;
  let why: string | null = null;
  if (both > capacity) {
    const keepShare = capacity / SPREAD_SLACK / both;
    const released = await workers.each('release', agents, (i) => ({ keep: Math.floor((workers.counts[i] ?? 0) * keepShare) }));
    const open = released.reduce((s, r) => s + r.open, 0);
    trimmed = agents - open;
    why = `replica ${next + 1}, with its share of replica ${victim + 1}'s agents, would hold about ${both}, over the ${capacity} its open-file limit allows (ulimit -n ${openFileLimit()}): ${trimmed} agents were released first`;
    progress(`scale ${agents}: takeover: ${why}`);
    await sleep(2000);
    perReplica = await connectedEach(collectors);
  }
  const connectedBefore = total(perReplica);
  const victimUrl = collectors[victim]?.agentUrl ?? '';
  const moved = perReplica[victim] ?? 0;
  progress(`scale ${agents}: SIGKILL of replica ${victim + 1} (${moved} agents), its agents moving to the others`);
  const deadlineMs = 60_000 + agents * DEADLINE_PER_AGENT_MS.takeoverArm;
  const armed = await workers.each('takeoverArm', agents, () => ({ victimUrl, collectorPublicKey }), deadlineMs);
  const watched = armed.reduce((s, r) => s + (r.watched ?? 0), 0);
  if (watched !== moved) problems.push(`the workers watch ${watched} agents of replica ${victim + 1}, its /metrics counted ${moved}`);
  const victimPid = collectors[victim]?.pid ?? 0;
  const killedAt = now();
  process.kill(victimPid, 'SIGKILL');
  const waited = await workers.each('takeoverWait', agents, () => ({}), deadlineMs);
  problems.push(...waited.flatMap((r) => r.problems.map((p) => `worker ${r.worker}: ${p}`)));
  const served = waited.flatMap((r) => r.served ?? []);
  const times = served.map((s) => s.at - killedAt).sort((a, b) => a - b);
  const servedBy = collectors.map((_, i) => served.filter((s) => s.collector === i).length);
  const retries: Record<string, number> = {};
  for (const r of waited) for (const [s, n] of Object.entries(r.statuses)) retries[s] = (retries[s] ?? 0) + n;
  if (served.length !== watched) problems.push(`${watched - served.length} of the ${watched} agents of replica ${victim + 1} were not served by another replica`);
  // The survivors' gateways count their connections; the store shows the dead replica's
  // agents as connected until the housekeeping holder sweeps its marks (a lease period).
  // A connection a survivor authenticated after its agent had given up on it (a handshake
  // timeout on the agent's side) is counted until the survivor sees it close: read until
  // the counts settle, at most SURVIVOR_SETTLE_MS.
  const survivors = collectors.filter((_, i) => i !== victim);
  const settleFrom = performance.now();
  let survivorsConnected = await connectedEach(survivors);
  while (total(survivorsConnected) !== connectedBefore && performance.now() - settleFrom < SURVIVOR_SETTLE_MS) {
    await sleep(1000);
    survivorsConnected = await connectedEach(survivors);
  }
  const settledMs = performance.now() - settleFrom;
  const survivorsTotal = total(survivorsConnected);
  const storeAfter = await storeConnected(survivors[0]);
  const workersOpen = waited.reduce((s, r) => s + r.open, 0);
  if (connectedBefore === null || survivorsTotal !== connectedBefore) problems.push(`${(settledMs / 1000).toFixed(0)} s after the last was served the surviving replicas count ${survivorsTotal ?? '?'} connected agents; ${connectedBefore ?? '?'} were connected before the kill`);
  if (workersOpen !== connectedBefore) problems.push(`the workers hold ${workersOpen} connections open; ${connectedBefore ?? '?'} were connected before the kill`);
  return {
    victim,
    trimmed,
    why,
    connectedBefore: connectedBefore ?? NaN,
    moved: watched,
    served: served.length,
    allMs: times[times.length - 1] ?? NaN,
    perAgentMs: { p50: percentile(times, 0.5), p99: percentile(times, 0.99) },
    servedBy,
    retries,
    failovers: waited.reduce((s, r) => s + r.failovers, 0),
    survivorsConnected,
    survivorsTotal,
    storeAfter,
    workersOpen,
    survivorsRssMb: survivors.map((c) => rssMiB(c.pid)),
    survivorsPeakRssMb: survivors.map((c) => procStatus(c.pid).hwmMb),
    problems,
  };
}

export async function runSize(engine: Engine, agents: number, opts: { collectorJs: string; dataDir: string; base: Inventory; echo: boolean; progress: (line: string) => void }): Promise<SizeRun> {
  const { progress } = opts;
  const k = Math.max(2, Math.ceil(agents / MAX_AGENTS_PER_WORKER));
  const temp = ownedTempDir('pw-bench-scale-');
  const dir = temp.path;
  let started: Started | null = null;
  const workers = new Workers(k);
  const problems: string[] = [];
  const label = `scale ${agents} ${engine === 'sqlite' ? 'SQLite' : 'PostgreSQL'}`;
  try {
    progress(`${label}: preparing the store (token, DSA/DLA/KEV), starting ${ENGINE_NAMES[engine]}, ${k} workers building their frames`);
    // The workers load while the store is prepared (they were forked above); they need the
    // collectors' URLs to start.
    started = await startCollectors(engine, opts.collectorJs, dir, opts.dataDir, agents);
    const collectors = started.collectors;
    const frameBytes = await workers.init(agents, { collectorUrls: collectors.map((c) => c.agentUrl), token: started.token, dataDir: opts.dataDir, base: opts.base });
    const alive = (): void => {
      const dead = collectors.filter((c) => !running(c.pid));
      if (dead.length > 0) throw new Error(`${dead.length} collector(s) ended during the run`);
    };

    const echo = opts.echo ? await echoBaseline(workers, agents, progress) : null;

    await sleep(500);
    const idleByCollector = collectors.map((c) => rssMiB(c.pid));
    const idleRssMb = idleByCollector.reduce((a, b) => a + b, 0);
    const phases: Partial<Record<CollectorPhase, PhaseFigures>> = {};
    const connected: SizeRun['connected'] = { reported: null, afterHold: null, store: null, heldOpen: 0 };
    let connectedByReplica: (number | null)[] = collectors.map(() => null);
    for (const phase of COLLECTOR_PHASES) {
      progress(`${label}: ${PHASE_NAMES[phase]}, ${k} workers`);
      const cpu0 = collectors.map((c) => procCpuSeconds(c.pid));
      const t0 = performance.now();
      const s = await workers.phase(phase, agents);
      const wall = (performance.now() - t0) / 1000;
      const collectorCpu = collectors.reduce((acc, c, i) => acc + (procCpuSeconds(c.pid) - (cpu0[i] ?? 0)), 0) / wall;
      alive();
      let settleMs: number | null = null;
      if (phase === 'connect') {
        // Let the gateway's bookkeeping of the last handshakes settle before reading memory.
        await sleep(1000);
        connected.reported = total(await connectedEach(collectors));
        await sleep(HOLD_MS);
        connectedByReplica = await connectedEach(collectors);
        connected.afterHold = total(connectedByReplica);
        connected.store = await storeConnected(collectors[0]);
        if (connected.store !== s.count) s.problems.push(`the store counts ${connected.store ?? '?'} connected agents, the workers connected ${s.count}`);
        if (connected.reported !== s.count) s.problems.push(`the collectors count ${connected.reported ?? '?'} connected agents, the workers ${s.count}`);
        if (connected.afterHold !== s.count) s.problems.push(`after ${HOLD_MS / 1000} s the collectors count ${connected.afterHold ?? '?'} connected agents, the workers connected ${s.count}`);
        const over = connectedByReplica.flatMap((n, i) => (n !== null && n > collectorCapacity() ? [`replica ${i + 1} holds ${n} agents, over the ${collectorCapacity()} its open-file limit allows`] : []));
        s.problems.push(...over);
      } else if (phase !== 'enroll') {
        // The next phase measures its own work, not this one's correlation tail.
        for (const c of collectors) {
          const ms = await settle(c.httpUrl, 120_000);
          settleMs = ms === null || settleMs === null ? (settleMs ?? ms) : Math.max(settleMs, ms);
          if (ms === null) s.problems.push('the collector’s correlation queue did not drain');
        }
      }
      const rssByCollector = collectors.map((c) => rssMiB(c.pid));
      const rssMb = rssByCollector.reduce((a, b) => a + b, 0);
      if (phase !== 'enroll' && s.open !== agents) s.problems.push(`${s.open} of ${agents} connections open after the phase`);
      if (s.failed > 0) s.problems.push(`${s.failed} of ${agents} agents did not complete it`);
      if (s.failovers > 0) s.problems.push(`${s.failovers} attempts moved to another collector (${Object.entries(s.statuses).map(([why, n]) => `${n} x ${why}`).join('; ')})`);
      if (phase === 'connect') connected.heldOpen = s.open;
      phases[phase] = {
        ...s,
        usPerAgent: (s.ms * 1000) / Math.max(1, s.count),
        rssMb,
        rssByCollector,
        kbPerAgent: ((rssMb - idleRssMb) * 1024) / agents,
        collectorCpu,
        workerCpu: s.workerCpuSeconds / wall,
        settleMs,
      };
    }
    const peakByCollector = collectors.map((c) => procStatus(c.pid).hwmMb);
    const peakRssMb = peakByCollector.reduce((a, b) => a + b, 0);
    // What the collectors counted against what the workers were acked. Report counters are
    // per process (summed); hosts are rows of the one store every replica shares.
    const counted = await Promise.all(collectors.map((c) => scrapeMetrics(c.httpUrl)));
    const acked = { stored: (phases.full?.count ?? 0) + (phases.byReference?.count ?? 0), unchanged: phases.unchanged?.count ?? 0 };
    const sumOf = (pick: (m: (typeof counted)[number]) => number | null): number | null => total(counted.map(pick));
    const stored = sumOf((m) => m.stored);
    const unchanged = sumOf((m) => m.unchanged);
    const hosts = Math.max(...counted.map((m) => m.hosts ?? NaN));
    if (stored !== acked.stored) problems.push(`the collectors count ${stored ?? '?'} stored reports, the workers were acked ${acked.stored}`);
    if (unchanged !== acked.unchanged) problems.push(`the collectors count ${unchanged ?? '?'} unchanged reports, the workers were acked ${acked.unchanged}`);
    if (hosts !== agents) {
      // Once more, a moment later, and what the store itself says, to tell a stale gauge from a lost host.
      await sleep(2000);
      const again = await Promise.all(collectors.map((c) => scrapeMetrics(c.httpUrl)));
      const direct = started.postgres === null ? null : await hostsInStore(started.postgres.url);
      problems.push(
        `the store holds ${Number.isNaN(hosts) ? '?' : hosts} hosts for ${agents} agents (by each collector's /metrics: ${counted.map((m) => `${m.hosts ?? '?'}, ${m.collectErrors ?? '?'} collect errors`).join('; ')}; ` +
          `2 s later ${again.map((m) => `${m.hosts ?? '?'}, ${m.collectErrors ?? '?'} collect errors`).join('; ')}${direct === null ? '' : `; the database itself ${direct}`})`,
      );
    }

    // A refusal such as PW_ERR_STORE names no cause to the agent: the collector's log does.
    collectors.forEach((c, i) => {
      const lines = c.errors();
      if (lines.length > 0) problems.push(`collector ${i + 1} logged ${lines.length >= 20 ? '20 or more' : lines.length} errors before the takeover, first: ${lines.slice(0, 2).map((l) => l.slice(0, 800)).join(' | ')}`);
    });

    let instructions: InstructionRun | null = null;
    let takeoverRun: TakeoverRun | null = null;
    if (started.postgres !== null) {
      instructions = await instructionDelivery(workers, agents, started.postgres, collectors.length, progress);
      alive();
      takeoverRun = await takeover(workers, agents, collectors, readCollectorKey(started.postgres.keyPath).publicKey, progress);
    }
    await workers.phase('release', agents);
    return {
      agents,
      engineKey: engine,
      workers: k,
      addresses: workers.addresses,
      engine: started.engine,
      frameBytes,
      idleRssMb,
      peakRssMb,
      replicas: collectors.map((_, i) => ({ idleRssMb: idleByCollector[i] ?? NaN, peakRssMb: peakByCollector[i] ?? NaN, connected: connectedByReplica[i] ?? null })),
      phases: phases as Record<CollectorPhase, PhaseFigures>,
      connected,
      echo,
      instructions,
      takeover: takeoverRun,
      problems,
    };
  } finally {
    await workers.stop();
    await started?.stop();
    temp.remove();
  }
}

// ---------------------------------------------------------------------------------------
// the section

function short(n: number): string {
  return n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n);
}

const ms = (v: number | null): string => (v === null || !Number.isFinite(v) ? '?' : v < 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(0)} ms`);
const invalid = (list: readonly string[]): string | null => (list.length === 0 ? null : list.join('; '));

/** One engine's figures over its sizes, against its smallest size (and there the echo server). */
function engineFigures<F>(figure: MakeScaleFigure<F>, runs: readonly SizeRun[]): { figures: F[]; linear: string } {
  const first = runs[0] as SizeRun;
  const echo = first.echo;
  const figures: F[] = [];
  const tag = ENGINE_NAMES[first.engineKey];
  for (const r of runs) {
    const smallest = r === first;
    const at = `${short(r.agents)} agents, ${tag}`;
    for (const phase of COLLECTOR_PHASES) {
      const p = r.phases[phase];
      const handshake = phase === 'enroll' || phase === 'connect';
      const timeBase = smallest
        ? echo === null
          ? null
          : handshake
            ? { name: `ws connect + 1 round trip to an echo server, same workers (${short(echo.connect.count)})`, value: (echo.connect.ms * 1000) / Math.max(1, echo.connect.count) }
            : { name: `one ws echo round trip of an unchanged-report frame, same workers (${short(echo.roundTrip.count)})`, value: (echo.roundTrip.ms * 1000) / Math.max(1, echo.roundTrip.count) }
        : { name: `the same at ${short(first.agents)} agents`, value: first.phases[phase].usPerAgent };
      figures.push(
        figure('scale', `${at}: ${PHASE_NAMES[phase]}, time per agent`, p.usPerAgent, 'us', timeBase, {
          note:
            `${p.count} in ${ms(p.ms)} (${((p.count * 1000) / Math.max(1, p.ms)).toFixed(0)}/s) over ${r.workers} workers; ${handshake ? 'handshake' : 'ack'} p50 ${ms(p.latencyMs.p50)} p99 ${ms(p.latencyMs.p99)}; ` +
            `CPU: collector${r.replicas.length > 1 ? 's' : ''} ${(p.collectorCpu * 100).toFixed(0)}%, workers ${(p.workerCpu * 100).toFixed(0)}% of a core` +
            (p.settleMs === null ? '' : `; correlation caught up ${ms(p.settleMs)} after`),
          invalid: invalid([...p.problems, ...(smallest ? (echo?.problems ?? []) : [])]),
        }),
      );
    }
    for (const phase of COLLECTOR_PHASES) {
      const p = r.phases[phase];
      const memBase = smallest
        ? echo === null
          ? null
          : { name: `echo server RSS per held connection (${short(echo.connect.count)})`, value: echo.kbPerConnection }
        : { name: `the same at ${short(first.agents)} agents`, value: first.phases[phase].kbPerAgent };
      const after = phase === 'byReference' ? 'by-reference reports' : phase === 'full' ? 'full reports' : phase === 'unchanged' ? 'unchanged reports' : phase === 'connect' ? 'connect + hold' : 'enrollment';
      figures.push(
        figure('scale', `${at}: collector RSS over idle per agent, after ${after}`, p.kbPerAgent, 'KB', memBase, {
          note: `RSS ${p.rssMb.toFixed(0)} MB, idle ${r.idleRssMb.toFixed(0)} MB${r.replicas.length > 1 ? ` (summed over the replicas: ${p.rssByCollector.map((v) => v.toFixed(0)).join(' + ')} MB)` : ''}`,
          invalid: invalid(smallest ? (echo?.problems ?? []) : []),
        }),
      );
    }
    figures.push(
      figure('scale', `${at}: connected, as the collector${r.replicas.length > 1 ? 's count' : ' counts'} them`, r.connected.afterHold ?? NaN, 'count', null, {
        aim: (v) => ({ text: `= ${r.agents}`, met: v === r.agents }),
        note: `/metrics patchwarden_agent_connections${r.replicas.length > 1 ? ', summed' : ''}: ${r.connected.reported ?? '?'} after connecting, ${r.connected.afterHold ?? '?'} after holding ${HOLD_MS / 1000} s (the store's patchwarden_agents_connected ${r.connected.store ?? '?'}); the workers hold ${r.connected.heldOpen} open from ${r.addresses} loopback addresses; collector peak RSS ${r.peakRssMb.toFixed(0)} MB`,
        invalid: invalid([...r.phases.connect.problems, ...r.problems]),
      }),
    );
    if (r.replicas.length > 1) {
      const capacity = collectorCapacity();
      r.replicas.forEach((rep, i) => {
        figures.push(
          figure('scale', `${at}: replica ${i + 1}, peak RSS holding its agents`, rep.peakRssMb, 'MB', null, {
            aim: (v) => ({ text: '< 1024 MB', met: v < 1024 }),
            note:
              `${rep.connected ?? '?'} agents connected (/metrics), ${rep.connected === null ? '?' : capacity - rep.connected} sockets below its open-file room (${capacity} of ulimit -n ${openFileLimit()}); ` +
              `RSS idle ${rep.idleRssMb.toFixed(0)} MB, after ${COLLECTOR_PHASES.map((ph) => `${ph} ${(r.phases[ph].rssByCollector[i] ?? NaN).toFixed(0)}`).join(', ')} MB`,
            invalid: invalid(r.phases.connect.problems.filter((p) => p.startsWith(`replica ${i + 1} `))),
          }),
        );
      });
    }
    const ins = r.instructions;
    if (ins !== null) {
      figures.push(
        figure('scale', `${at}: instruction delivery across replicas, p99 (enqueue -> frame at the agent)`, ins.latencyMs.p99, 'ms', null, {
          aim: (v) => ({ text: '< 1000 ms', met: v < 1000 }),
          note:
            `${ins.delivered} of ${ins.enqueued} delivered (sample ${ins.sample}), enqueued from the bench's own connections (outbox insert + pg_notify, ${ENQUEUE_CONCURRENCY} at a time) in ${ms(ins.enqueueMs)}, each p50 ${ms(ins.enqueueEachMs.p50)} p99 ${ms(ins.enqueueEachMs.p99)}, timed from its start; ` +
            `p50 ${ms(ins.latencyMs.p50)}, p99 ${ms(ins.latencyMs.p99)}, max ${ms(ins.latencyMs.max)}; by replica holding the agent: ${ins.byReplica.map((b, i) => `${i + 1}: ${b.sent} sent, p99 ${ms(b.p99)}`).join('; ')}; ` +
            `each agent checked it (verify.ts), answered with its result and an unchanged report, both acked`,
          invalid: invalid(ins.problems),
        }),
      );
    }
    const tk = r.takeover;
    if (tk !== null) {
      const retries = Object.entries(tk.retries);
      figures.push(
        figure('scale', `${at}: SIGKILL of one replica, until every one of its agents was served by another`, tk.allMs, 'ms', null, {
          aim: () => ({ text: `all ${tk.moved} moved, none lost`, met: tk.served === tk.moved && tk.survivorsTotal === tk.connectedBefore }),
          note:
            `replica ${tk.victim + 1} held ${tk.moved} of ${tk.connectedBefore} connected agents; each reconnected as agent/daemon does (next in its list, within a jittered second) and had an unchanged report acked: ` +
            `per agent p50 ${ms(tk.perAgentMs.p50)}, p99 ${ms(tk.perAgentMs.p99)}; served by ${tk.servedBy.map((n, i) => (i === tk.victim ? null : `replica ${i + 1}: ${n}`)).filter((x) => x !== null).join(', ')}; ` +
            `${tk.failovers} reconnect attempts failed and moved on${retries.length === 0 ? '' : ` (${retries.map(([s, n]) => `${n} x ${s}`).join('; ').slice(0, 400)})`}; ` +
            `after: the surviving replicas' /metrics count ${tk.survivorsConnected.map((n) => n ?? '?').join(' + ')} = ${tk.survivorsTotal ?? '?'} connected (the store's count: ${tk.storeAfter ?? '?'}; it keeps a dead replica's agents marked until replica liveness sweeps them), the workers hold ${tk.workersOpen} open; ` +
            `survivors' RSS ${tk.survivorsRssMb.map((v) => v.toFixed(0)).join(', ')} MB (peak ${tk.survivorsPeakRssMb.map((v) => v.toFixed(0)).join(', ')} MB)` +
            (tk.why === null ? '' : `; ${tk.why}`),
          invalid: invalid(tk.problems),
        }),
      );
    }
  }
  // Per agent at each size, and for the larger sizes what each agent beyond the smallest
  // size's cost (the fixed part, such as the fleet's 32 package sets held once, drops out).
  const linear = runs
    .map((r) => {
      const perAgent = COLLECTOR_PHASES.map((ph) => `${ph} ${r.phases[ph].usPerAgent.toFixed(0)} us, ${r.phases[ph].kbPerAgent.toFixed(1)} KB`).join('; ');
      if (r === first) return `${short(r.agents)}: ${perAgent}`;
      const extra = r.agents - first.agents;
      const marginal = COLLECTOR_PHASES.map((ph) => {
        const us = ((r.phases[ph].ms - first.phases[ph].ms) * 1000) / extra;
        const kb = ((r.phases[ph].rssMb - r.idleRssMb - (first.phases[ph].rssMb - first.idleRssMb)) * 1024) / extra;
        return `${ph} ${us.toFixed(0)} us, ${kb.toFixed(1)} KB`;
      }).join('; ');
      return `${short(r.agents)}: ${perAgent} (each agent beyond ${short(first.agents)}: ${marginal})`;
    })
    .join(' | ');
  return { figures, linear: `${tag}: ${linear}` };
}

export async function scaleSection<F>(figure: MakeScaleFigure<F>, progress: (line: string) => void, dataDir: string, base: Inventory): Promise<{ figures: F[]; raw: unknown }> {
  const sizes = sizesFromEnv();
  const noPostgres = needs(TOOLS.postgres);
  const plans = (['sqlite', 'postgres'] as const).map((engine) => {
    const capacity = engineCapacity(engine);
    const usable = engine === 'sqlite' || noPostgres === false;
    return { engine, capacity, tried: usable ? sizes.filter((n) => n <= capacity) : [], skipped: usable ? sizes.filter((n) => n > capacity) : sizes };
  });
  if (plans.every((p) => p.tried.length === 0)) {
    throw new RangeError(`PW_BENCH_SCALE: every size is above what one SQLite collector can hold here (${collectorCapacity()}, ulimit -n ${openFileLimit()})${noPostgres === false ? ` and what ${REPLICAS} PostgreSQL replicas can (${engineCapacity('postgres')})` : `, and ${noPostgres}`}`);
  }
  progress('scale: checking dist/collector.js is up to date');
  const { path: collectorJs, built } = ensureBuilt('collector');
  const runs: SizeRun[] = [];
  // Ctrl-C or a kill must still run the exit hooks that kill the collectors and workers and
  // remove the temporary directories (Node skips them when a signal ends the process).
  const interrupted = (signal: NodeJS.Signals): void => {
    progress(`scale: ${signal}: stopping the collectors and workers`);
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  const t0 = performance.now();
  const seconds: Record<string, number> = {};
  try {
    for (const plan of plans) {
      for (const [i, agents] of plan.tried.entries()) {
        const t = performance.now();
        runs.push(await runSize(plan.engine, agents, { collectorJs, dataDir, base, echo: i === 0, progress }));
        seconds[`${plan.engine} ${agents}`] = (performance.now() - t) / 1000;
      }
    }
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  }

  const figures: F[] = [];
  const linear: string[] = [];
  for (const plan of plans) {
    const mine = runs.filter((r) => r.engineKey === plan.engine);
    if (mine.length === 0) continue;
    const f = engineFigures(figure, mine);
    figures.push(...f.figures);
    linear.push(f.linear);
  }
  const first = runs[0] as SizeRun;
  const [sqlite, postgres] = plans as [(typeof plans)[number], (typeof plans)[number]];
  const notTried = [
    sqlite.skipped.length === 0 ? null : `on SQLite ${sqlite.skipped.join(', ')} agents: one collector holds at most about ${sqlite.capacity} connections here (ulimit -n ${openFileLimit()} per process), so beyond that only the replicas run`,
    postgres.skipped.length === 0 ? null : noPostgres !== false ? `on PostgreSQL: ${noPostgres}` : `on PostgreSQL ${postgres.skipped.join(', ')} agents: over what ${REPLICAS} replicas hold (${postgres.capacity})`,
  ].filter((x) => x !== null);
  const intro =
    `${sizes.join(', ')} agents (PW_BENCH_SCALE), each size on a fresh store, first against one SQLite collector (up to its ~${sqlite.capacity} connections), then against ${REPLICAS} PostgreSQL replicas ` +
    `(${REPLICAS} serve processes on one throwaway PostgreSQL 15 cluster, fsync on, the prepared store moved in with \`store migrate\`, one keyFile), every agent given all ${REPLICAS} URLs; ` +
    `driven by worker processes of at most ${MAX_AGENTS_PER_WORKER} agents (scale-worker.ts: real ed25519 keys, bench-fleet.ts's protocol code), ` +
    `at most ${AGENTS_PER_ADDRESS} agents per loopback source address, each agent picking its collector from the list with CollectorRotation; ` +
    `${relative(ROOT, collectorJs)} serve with the real Debian DSA/DLA lists and KEV${built === null ? '' : `; ${built}`}; ` +
    `one report of each kind per agent (full frames ${(first.frameBytes.full / 1024).toFixed(0)} KB, by reference ${first.frameBytes.byReference} B, unchanged ${first.frameBytes.unchanged} B); ` +
    `time per agent is the phase's first start to last end over the workers divided by the agents; memory per agent is the collectors' RSS over their idle RSS divided by the agents. ` +
    `On the replicas, after the reports: one signed instruction to each of up to ${INSTRUCTION_SAMPLE} agents enqueued from the bench's own process, timed from the start of the enqueue to the frame at the agent; ` +
    `then a SIGKILL of the replica holding the most agents, timed until every agent it held was served by another. ` +
    `Per agent, time and collector memory: ${linear.join(' || ')}` +
    `. Run time: ${Object.entries(seconds)
      .map(([k, v]) => `${k}: ${v.toFixed(0)} s`)
      .join(', ')} (${((performance.now() - t0) / 1000).toFixed(0)} s in all)` +
    (notTried.length === 0 ? '' : `. Not tried: ${notTried.join('; ')}`);
  return { figures, raw: { intro, sizes, plans, runs, seconds } };
}
