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
 * (CollectorRotation: sha256(agentId) mod n, the next after a failure), so replicas behind
 * one store are a change of `startCollectors` alone. Today it is one SQLite collector
 * (dist/collector.js serve, 127.0.0.1:0, a temporary file with the real Debian DSA/DLA lists
 * and KEV loaded, as bench-fleet.ts): it holds at most about 19,000 connections (its own
 * open-file limit), so a larger size is not tried and the section says so.
 *
 * Baselines from the same run: each phase's time and memory per agent at the smallest size
 * (1.00x at a larger size: the cost per agent did not grow); at the smallest size itself, a
 * ws echo server in its own process driven by the same workers from the same addresses
 * (connect with one round trip, one echo round trip of an unchanged-report frame, its RSS
 * per held connection). Whatever happens, the workers, the echo server and the collectors
 * are killed and the temporary directories removed.
 */
import { ensureBuilt } from './dist-fresh.ts';
import { type ChildProcess, fork } from 'node:child_process';
import { join, relative } from 'node:path';
import { rssMiB, serveInChild, type ChildCollector } from '../shared/testing/collector-process.ts';
import { OwnedChild, ownedTempDir } from '../shared/testing/owned-child.ts';
import type { Inventory } from '../shared/protocol.ts';
import { Child, ECHO_SERVER, FULL_WINDOW, HANDSHAKE_CONCURRENCY, openFileLimit, percentile, prepareStore, procCpuSeconds, procStatus, scrapeMetrics, settle, UNCHANGED_WINDOW, VARIANTS } from './bench-fleet.ts';
import { type InitMessage, MAX_AGENTS_PER_WORKER, type Phase, type PhaseResult, type WorkerMessage, WorkerMessageSchema } from './scale-ipc.ts';

const ROOT = join(import.meta.dirname, '..');

/** bench.ts's figure(), passed in (bench.ts runs its main on import). */
export type MakeScaleFigure<F> = (
  section: 'scale',
  name: string,
  value: number,
  unit: 'us' | 'KB' | 'count',
  baseline: { name: string; value: number } | null,
  options?: { aim?: (value: number, ratio: number | null) => { text: string; met: boolean }; note?: string; invalid?: string | null },
) => F;

export const DEFAULT_SIZES = [1000, 10_000];
/** Agents sharing one source address at most: a few hundred, like a NAT'd site, under maxPendingPerAddress (256) in flight. */
const AGENTS_PER_ADDRESS = 200;
/** Descriptors a collector needs besides its agents' sockets (store, WAL, logs, HTTP, Node). */
const COLLECTOR_FD_MARGIN = 1000;
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

/** Per agent, ms of deadline on top of a minute: generous, this machine's two cores are shared. */
const DEADLINE_PER_AGENT_MS: Record<Phase, number> = { enroll: 20, connect: 10, full: 40, byReference: 10, unchanged: 2, echoConnect: 10, echoRoundTrip: 2, release: 1 };

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

  constructor(count: number) {
    this.list = Array.from({ length: count }, (_, i) => new Worker(i));
  }

  /** Gives each worker its share of `agents` and waits until each has built its frames. */
  async init(agents: number, base: Omit<InitMessage, 'type' | 'worker' | 'firstAgent' | 'agents' | 'addresses' | 'windows'>): Promise<{ full: number; byReference: number; unchanged: number }> {
    const k = this.list.length;
    const share = Math.ceil(agents / k);
    // The gateway's limits hold for the whole fleet at once; each worker takes its part.
    const windows = { handshake: Math.ceil((2 * HANDSHAKE_CONCURRENCY) / k), full: Math.ceil(FULL_WINDOW / k), unchanged: Math.ceil(UNCHANGED_WINDOW / k) };
    const answers = await Promise.all(
      this.list.map((w, i) => {
        const first = i * share;
        const mine = Math.min(share, agents - first);
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
    const deadlineMs = 60_000 + agents * DEADLINE_PER_AGENT_MS[phase];
    const answers = await Promise.all(this.list.map((w) => w.request({ type: 'phase', phase, deadlineMs, ...(echoUrl === undefined ? {} : { echoUrl }) }, deadlineMs + ANSWER_GRACE_MS)));
    const results = answers.map((a, i) => {
      if (a.type !== 'result' || a.phase !== phase) throw new Error(`worker ${i} answered ${phase} with ${a.type}`);
      return a;
    });
    return sum(phase, results);
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

/**
 * The collectors the agents spread over. Today one SQLite collector on a prepared store; the
 * PostgreSQL replicas of issue 12 are started here instead (their agent URLs become every
 * agent's list).
 */
async function startCollectors(collectorJs: string, dir: string, dataDir: string, agents: number): Promise<{ collectors: Collector[]; token: string; engine: string }> {
  const dbPath = join(dir, 'collector.db');
  const token = prepareStore(collectorJs, dir, dbPath, dataDir, agents, 'bench scale');
  const c: ChildCollector = await serveInChild([collectorJs], ['--db', dbPath, '--listen', '127.0.0.1:0'], { cwd: dir });
  return { collectors: [{ pid: c.pid, httpUrl: c.url, agentUrl: c.agentUrl, stop: () => c.stop() }], token, engine: 'one SQLite collector' };
}

/** Most agents one collector process can hold: one socket each within its open-file limit. */
export function sqliteCollectorCapacity(): number {
  return openFileLimit() - COLLECTOR_FD_MARGIN;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------
// one size

interface PhaseFigures extends Summed {
  /** Wall time per agent that completed it, in microseconds. */
  usPerAgent: number;
  /** The collectors' RSS after the phase (summed), and over their idle RSS per agent. */
  rssMb: number;
  kbPerAgent: number;
  /** Collector CPU seconds over wall seconds, summed over collectors; the workers' the same. */
  collectorCpu: number;
  workerCpu: number;
  /** Ms until the collectors had correlated what the phase queued (report phases), null if never. */
  settleMs: number | null;
}

interface SizeRun {
  agents: number;
  workers: number;
  addresses: number;
  engine: string;
  frameBytes: { full: number; byReference: number; unchanged: number };
  idleRssMb: number;
  peakRssMb: number;
  phases: Record<CollectorPhase, PhaseFigures>;
  /** Connected agents by the collectors' /metrics after connecting, and again after holding HOLD_MS. */
  connected: { reported: number | null; afterHold: number | null; heldOpen: number };
  echo: { connect: Summed; roundTrip: Summed; idleRssMb: number; heldRssMb: number; kbPerConnection: number; problems: string[] } | null;
  /** The collectors' counts at the end disagree with what the workers were answered. */
  problems: string[];
}

async function connectedCount(collectors: readonly Collector[]): Promise<number | null> {
  let total = 0;
  for (const c of collectors) {
    const m = await scrapeMetrics(c.httpUrl);
    if (m.connected === null) return null;
    total += m.connected;
  }
  return total;
}

function totalRss(collectors: readonly Collector[]): number {
  return collectors.reduce((s, c) => s + rssMiB(c.pid), 0);
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

async function runSize(agents: number, opts: { collectorJs: string; dataDir: string; base: Inventory; echo: boolean; progress: (line: string) => void }): Promise<SizeRun> {
  const { progress } = opts;
  const k = Math.max(2, Math.ceil(agents / MAX_AGENTS_PER_WORKER));
  const temp = ownedTempDir('pw-bench-scale-');
  const dir = temp.path;
  let collectors: Collector[] = [];
  const workers = new Workers(k);
  const problems: string[] = [];
  try {
    progress(`scale ${agents}: preparing the store (token, DSA/DLA/KEV), starting the collector, ${k} workers building their frames`);
    // The workers load while the store is prepared (they were forked above); they need the
    // collectors' URLs to start.
    const started = await startCollectors(opts.collectorJs, dir, opts.dataDir, agents);
    collectors = started.collectors;
    const frameBytes = await workers.init(agents, { collectorUrls: collectors.map((c) => c.agentUrl), token: started.token, dataDir: opts.dataDir, base: opts.base });
    const alive = (): void => {
      const dead = collectors.filter((c) => !running(c.pid));
      if (dead.length > 0) throw new Error(`${dead.length} collector(s) ended during the run`);
    };

    const echo = opts.echo ? await echoBaseline(workers, agents, progress) : null;

    await sleep(500);
    const idleRssMb = totalRss(collectors);
    const phases: Partial<Record<CollectorPhase, PhaseFigures>> = {};
    const connected: SizeRun['connected'] = { reported: null, afterHold: null, heldOpen: 0 };
    for (const phase of COLLECTOR_PHASES) {
      progress(`scale ${agents}: ${PHASE_NAMES[phase]}, ${k} workers`);
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
        connected.reported = await connectedCount(collectors);
        await sleep(HOLD_MS);
        connected.afterHold = await connectedCount(collectors);
        if (connected.reported !== s.count) s.problems.push(`the collectors count ${connected.reported ?? '?'} connected agents, the workers ${s.count}`);
        if (connected.afterHold !== s.count) s.problems.push(`after ${HOLD_MS / 1000} s the collectors count ${connected.afterHold ?? '?'} connected agents, the workers connected ${s.count}`);
      } else if (phase !== 'enroll') {
        // The next phase measures its own work, not this one's correlation tail.
        for (const c of collectors) {
          const ms = await settle(c.httpUrl, 120_000);
          settleMs = ms === null || settleMs === null ? (settleMs ?? ms) : Math.max(settleMs, ms);
          if (ms === null) s.problems.push('the collector’s correlation queue did not drain');
        }
      }
      const rssMb = totalRss(collectors);
      if (phase !== 'enroll' && s.open !== agents) s.problems.push(`${s.open} of ${agents} connections open after the phase`);
      if (s.failed > 0) s.problems.push(`${s.failed} of ${agents} agents did not complete it`);
      if (s.failovers > 0) s.problems.push(`${s.failovers} attempts moved to another collector`);
      if (phase === 'connect') connected.heldOpen = s.open;
      phases[phase] = {
        ...s,
        usPerAgent: (s.ms * 1000) / Math.max(1, s.count),
        rssMb,
        kbPerAgent: ((rssMb - idleRssMb) * 1024) / agents,
        collectorCpu,
        workerCpu: s.workerCpuSeconds / wall,
        settleMs,
      };
    }
    const peakRssMb = collectors.reduce((acc, c) => acc + procStatus(c.pid).hwmMb, 0);
    // What the collectors counted against what the workers were acked. Report counters are
    // per process (summed); hosts are rows of the one store every replica shares.
    const counted = await Promise.all(collectors.map((c) => scrapeMetrics(c.httpUrl)));
    const acked = { stored: (phases.full?.count ?? 0) + (phases.byReference?.count ?? 0), unchanged: phases.unchanged?.count ?? 0 };
    const total = (pick: (m: (typeof counted)[number]) => number | null): number | null => {
      let t = 0;
      for (const m of counted) {
        const v = pick(m);
        if (v === null) return null;
        t += v;
      }
      return t;
    };
    const stored = total((m) => m.stored);
    const unchanged = total((m) => m.unchanged);
    const hosts = Math.max(...counted.map((m) => m.hosts ?? NaN));
    if (stored !== acked.stored) problems.push(`the collectors count ${stored ?? '?'} stored reports, the workers were acked ${acked.stored}`);
    if (unchanged !== acked.unchanged) problems.push(`the collectors count ${unchanged ?? '?'} unchanged reports, the workers were acked ${acked.unchanged}`);
    if (hosts !== agents) problems.push(`the store holds ${Number.isNaN(hosts) ? '?' : hosts} hosts for ${agents} agents`);
    await workers.phase('release', agents);
    return {
      agents,
      workers: k,
      addresses: workers.addresses,
      engine: started.engine,
      frameBytes,
      idleRssMb,
      peakRssMb,
      phases: phases as Record<CollectorPhase, PhaseFigures>,
      connected,
      echo,
      problems,
    };
  } finally {
    await workers.stop();
    await Promise.all(collectors.map((c) => c.stop()));
    temp.remove();
  }
}

// ---------------------------------------------------------------------------------------
// the section

function short(n: number): string {
  return n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n);
}

export async function scaleSection<F>(figure: MakeScaleFigure<F>, progress: (line: string) => void, dataDir: string, base: Inventory): Promise<{ figures: F[]; raw: unknown }> {
  const sizes = sizesFromEnv();
  const capacity = sqliteCollectorCapacity();
  const tried = sizes.filter((n) => n <= capacity);
  const skipped = sizes.filter((n) => n > capacity);
  if (tried.length === 0) throw new RangeError(`PW_BENCH_SCALE: every size is above ${capacity}, the most agents one SQLite collector can hold here (ulimit -n ${openFileLimit()}); the 50,000 of issue 12 need the PostgreSQL replicas`);
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
  try {
    for (const [i, agents] of tried.entries()) runs.push(await runSize(agents, { collectorJs, dataDir, base, echo: i === 0, progress }));
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  }

  const first = runs[0] as SizeRun;
  const echo = first.echo;
  const figures: F[] = [];
  const invalid = (list: readonly string[]): string | null => (list.length === 0 ? null : list.join('; '));
  const ms = (v: number | null): string => (v === null || !Number.isFinite(v) ? '?' : v < 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(0)} ms`);
  for (const r of runs) {
    const smallest = r === first;
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
        figure('scale', `${short(r.agents)} agents: ${PHASE_NAMES[phase]}, time per agent`, p.usPerAgent, 'us', timeBase, {
          note:
            `${p.count} in ${ms(p.ms)} over ${r.workers} workers; ${handshake ? 'handshake' : 'ack'} p50 ${ms(p.latencyMs.p50)} p99 ${ms(p.latencyMs.p99)}; ` +
            `CPU: collector ${(p.collectorCpu * 100).toFixed(0)}%, workers ${(p.workerCpu * 100).toFixed(0)}% of a core` +
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
      figures.push(
        figure('scale', `${short(r.agents)} agents: collector RSS over idle per agent, after ${phase === 'byReference' ? 'by-reference reports' : phase === 'full' ? 'full reports' : phase === 'unchanged' ? 'unchanged reports' : phase === 'connect' ? 'connect + hold' : 'enrollment'}`, p.kbPerAgent, 'KB', memBase, {
          note: `RSS ${p.rssMb.toFixed(0)} MB, idle ${r.idleRssMb.toFixed(0)} MB`,
          invalid: invalid(smallest ? (echo?.problems ?? []) : []),
        }),
      );
    }
    figures.push(
      figure('scale', `${short(r.agents)} agents: connected, as the collector counts them`, r.connected.afterHold ?? NaN, 'count', null, {
        aim: (v) => ({ text: `= ${r.agents}`, met: v === r.agents }),
        note: `/metrics patchwarden_agents_connected: ${r.connected.reported ?? '?'} after connecting, ${r.connected.afterHold ?? '?'} after holding ${HOLD_MS / 1000} s; the workers hold ${r.connected.heldOpen} open from ${r.addresses} loopback addresses; collector peak RSS ${r.peakRssMb.toFixed(0)} MB`,
        invalid: invalid([...r.phases.connect.problems, ...r.problems]),
      }),
    );
  }
  // Per agent at each size, and for the larger sizes what each agent beyond the smallest
  // size's cost (the fixed part, such as the fleet's 32 package sets held once, drops out).
  const linear = runs
    .map((r) => {
      const at = COLLECTOR_PHASES.map((ph) => `${ph} ${r.phases[ph].usPerAgent.toFixed(0)} us, ${r.phases[ph].kbPerAgent.toFixed(1)} KB`).join('; ');
      if (r === first) return `${short(r.agents)}: ${at}`;
      const extra = r.agents - first.agents;
      const marginal = COLLECTOR_PHASES.map((ph) => {
        const us = ((r.phases[ph].ms - first.phases[ph].ms) * 1000) / extra;
        const kb = ((r.phases[ph].rssMb - r.idleRssMb - (first.phases[ph].rssMb - first.idleRssMb)) * 1024) / extra;
        return `${ph} ${us.toFixed(0)} us, ${kb.toFixed(1)} KB`;
      }).join('; ');
      return `${short(r.agents)}: ${at} (each agent beyond ${short(first.agents)}: ${marginal})`;
    })
    .join(' | ');
  const intro =
    `${tried.join(', ')} agents (PW_BENCH_SCALE), each size on a fresh store, driven by worker processes of at most ${MAX_AGENTS_PER_WORKER} agents (scale-worker.ts: real ed25519 keys, bench-fleet.ts's protocol code), ` +
    `at most ${AGENTS_PER_ADDRESS} agents per loopback source address, each agent picking its collector from the list with CollectorRotation; ` +
    `against ${first.engine} (${relative(ROOT, collectorJs)} serve, temp SQLite file with the real Debian DSA/DLA lists and KEV${built === null ? '' : `; ${built}`}); ` +
    `one report of each kind per agent (full frames ${(first.frameBytes.full / 1024).toFixed(0)} KB, by reference ${first.frameBytes.byReference} B, unchanged ${first.frameBytes.unchanged} B); ` +
    `time per agent is the phase's first start to last end over the workers divided by the agents; memory per agent is the collector's RSS over its idle RSS divided by the agents. ` +
    `Per agent, time and collector memory: ${linear}` +
    (skipped.length === 0
      ? ''
      : `. Not tried: ${skipped.join(', ')} agents: one SQLite collector holds at most about ${capacity} connections here (ulimit -n ${openFileLimit()} per process); 50,000 need the PostgreSQL replicas`);
  return { figures, raw: { intro, sizes, skipped, capacity, runs } };
}
