/**
 * One agent worker of the scale bench (bench-scale.ts forks it: `node --import tsx
 * scripts/scale-worker.ts`). It simulates up to MAX_AGENTS_PER_WORKER agents with
 * bench-fleet.ts's simulator (real ed25519 keys, the real protocol, one WebSocket each),
 * every socket bound to one of the loopback source addresses it was given, so no source
 * holds more than a few hundred of the fleet's connections and the gateway's per-address
 * limit on pending handshakes never throttles the bench as it would not throttle a real
 * fleet. Each agent has the fleet's list of collectors and picks and fails over as the
 * real agent does (agent/daemon/collectors.ts).
 *
 * It runs one phase at a time when the bench says so, times it itself and answers with
 * its counts (scale-ipc.ts). When the bench goes away (the IPC channel closes) it drops
 * every connection and exits.
 */
import { createHash } from 'node:crypto';
import { CollectorRotation } from '../agent/daemon/collectors.ts';
import { newKeys } from '../shared/testing/fake-agent.ts';
import type { Inventory } from '../shared/protocol.ts';
import {
  ackStatus,
  buildVariants,
  checkFrames,
  connectAgent,
  drive,
  enrollAgent,
  fullReport,
  Link,
  makeAgent,
  pool,
  type Sent,
  type SimAgent,
  STEP_TIMEOUT_MS,
  storing,
  unchangedReport,
  type Variant,
  VARIANTS,
  within,
} from './bench-fleet.ts';
import { type InitMessage, ParentMessageSchema, type PhaseMessage, type PhaseResult, type WorkerMessage } from './scale-ipc.ts';

interface Fleet {
  init: InitMessage;
  template: Inventory;
  variants: Variant[];
  agents: SimAgent[];
  /** Per agent, where it connects (and fails over) among the collectors. */
  rotations: (CollectorRotation | null)[];
  /** Connections to the echo server of the baseline. */
  echoLinks: Link[];
}

let fleet: Fleet | null = null;

function send(msg: WorkerMessage): void {
  process.send?.(msg);
}

function now(): number {
  return performance.timeOrigin + performance.now();
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function sourceOf(f: Fleet, i: number): string {
  return f.init.addresses[i % f.init.addresses.length] as string;
}

/**
 * Tries `attempt` on the rotation's current collector, moving to the next after each
 * failure, until it succeeds or every collector of the list has failed once (then the last
 * error). Counts the moves.
 */
async function viaRotation(rotation: CollectorRotation, attempt: (url: string) => Promise<void>, moves: { failovers: number }): Promise<void> {
  for (;;) {
    try {
      await attempt(rotation.current);
      rotation.connected();
      return;
    } catch (err) {
      const everyOneFailed = rotation.failed();
      if (everyOneFailed) throw err;
      moves.failovers++;
    }
  }
}

function openLinks(f: Fleet): number {
  let open = 0;
  for (const a of f.agents) if (a.link !== null && a.link.closed === null) open++;
  for (const l of f.echoLinks) if (l.closed === null) open++;
  return open;
}

function init(msg: InitMessage): WorkerMessage {
  const { template, variants } = buildVariants(msg.dataDir, msg.base);
  const agents = Array.from({ length: msg.agents }, (_, i) => makeAgent(msg.firstAgent + i, template.host));
  checkFrames(template, variants, agents);
  const sample = agents[0] as SimAgent;
  const v0 = variants[0] as Variant;
  const full = fullReport(template, v0, sample);
  const byRef = fullReport(template, v0, sample, true);
  full.release();
  byRef.release();
  fleet = { init: msg, template, variants, agents, rotations: agents.map(() => null), echoLinks: [] };
  return { type: 'ready', worker: msg.worker, frameBytes: { full: full.data.length, byReference: byRef.data.length, unchanged: Buffer.byteLength(unchangedReport(full.hash).data) } };
}

type Outcome = Omit<PhaseResult, 'type' | 'worker' | 'phase' | 'open' | 'cpuSeconds'>;

/** A handshake per agent (`task`), `window` at a time, each timed. */
async function handshakes(f: Fleet, indexes: readonly number[], deadline: number, task: (i: number, moves: { failovers: number }) => Promise<void>): Promise<Outcome> {
  const latencies: number[] = [];
  const moves = { failovers: 0 };
  const startedAt = now();
  const r = await pool(indexes.length, f.init.windows.handshake, deadline, async (k) => {
    const t = performance.now();
    await task(indexes[k] as number, moves);
    latencies.push(performance.now() - t);
  });
  const problems = [...r.errors];
  if (r.timedOut) problems.push(`deadline reached with ${indexes.length - r.count - r.failed} not started`);
  return { count: r.count, failed: indexes.length - r.count, startedAt, endedAt: now(), latenciesMs: latencies, statuses: {}, failovers: moves.failovers, problems };
}

/** One report per connected agent that `can` send it, `window` in flight, each waiting for its ack. */
async function reports(f: Fleet, deadline: number, window: number, frame: (a: SimAgent) => Sent, want: string, can: (a: SimAgent) => boolean = () => true): Promise<Outcome> {
  const open = f.agents.filter((a) => a.link !== null && a.link.closed === null);
  const live = open.filter(can);
  const startedAt = now();
  const r = await drive(
    live.map((a) => a.link as Link),
    1,
    Math.min(window, Math.max(1, live.length)),
    deadline,
    (i) => frame(live[i] as SimAgent),
    ackStatus,
  );
  const endedAt = now();
  const problems = [...r.problems];
  const other = Object.entries(r.statuses).filter(([s]) => s !== want);
  if (other.length > 0) problems.push(`acks ${JSON.stringify(r.statuses)}: each should be ${want}`);
  const lost = f.agents.length - open.length;
  if (lost > 0) problems.push(`${lost} agents had no open connection`);
  if (open.length > live.length) problems.push(`${open.length - live.length} agents could not send one (no inventory stored)`);
  return { count: r.statuses[want] ?? 0, failed: f.agents.length - (r.statuses[want] ?? 0), startedAt, endedAt, latenciesMs: r.samples, statuses: r.statuses, failovers: 0, problems };
}

async function runPhase(f: Fleet, msg: PhaseMessage): Promise<Outcome> {
  const deadline = performance.now() + msg.deadlineMs;
  const { agents, template, variants, init: cfg } = f;
  const all = agents.map((_, i) => i);
  switch (msg.phase) {
    case 'enroll':
      // `patchwarden-agent enroll` goes to the one collector it is given; the bench spreads
      // enrollments over the list (from a hash of the host name, as there is no agent id
      // yet) so no replica takes them all.
      return handshakes(f, all, deadline, async (i, moves) => {
        const a = agents[i] as SimAgent;
        const rotation = new CollectorRotation(cfg.collectorUrls, a.hostname);
        const keys = newKeys();
        await viaRotation(rotation, (url) => enrollAgent(url, cfg.token, a, keys, sourceOf(f, i)), moves);
      });
    case 'connect': {
      const enrolled = all.filter((i) => agents[i]?.agentId !== null);
      const outcome = await handshakes(f, enrolled, deadline, async (i, moves) => {
        const a = agents[i] as SimAgent;
        const rotation = new CollectorRotation(cfg.collectorUrls, a.agentId as string);
        f.rotations[i] = rotation;
        await viaRotation(
          rotation,
          async (url) => {
            await connectAgent(url, a, sourceOf(f, i));
          },
          moves,
        );
      });
      const unenrolled = agents.length - enrolled.length;
      if (unenrolled > 0) outcome.problems.push(`${unenrolled} agents were not enrolled`);
      outcome.failed = agents.length - outcome.count;
      return outcome;
    }
    case 'full':
      // Agent i reports package set i mod VARIANTS: the first report of each set stores it,
      // every other is matched against the held set, as a fleet built from a few images is.
      return reports(f, deadline, cfg.windows.full, (a) => storing(a, fullReport(template, variants[a.index % VARIANTS] as Variant, a)), 'stored');
    case 'byReference':
      // The next set, held since the full phase, named by its hash.
      return reports(f, deadline, cfg.windows.full, (a) => storing(a, fullReport(template, variants[(a.index + 1) % VARIANTS] as Variant, a, true)), 'stored');
    case 'unchanged':
      return reports(
        f,
        deadline,
        cfg.windows.unchanged,
        (a) => unchangedReport(a.hash ?? ''),
        'unchanged',
        (a) => a.hash !== null,
      );
    case 'echoConnect': {
      const url = msg.echoUrl;
      if (url === undefined) throw new Error('echoConnect without echoUrl');
      return handshakes(f, all, deadline, async (i) => {
        const link = await Link.open(url, sourceOf(f, i));
        f.echoLinks.push(link);
        await within(
          STEP_TIMEOUT_MS,
          'echo connect',
          (async () => {
            await link.expect('challenge');
            link.send('{"type":"hello"}');
            await link.expect('hello');
          })(),
          () => {
            link.ws.terminate();
          },
        );
      });
    }
    case 'echoRoundTrip': {
      const live = f.echoLinks.filter((l) => l.closed === null);
      const hash = createHash('sha256').update('echo').digest('hex');
      const startedAt = now();
      const r = await drive(live, 1, Math.min(cfg.windows.unchanged, Math.max(1, live.length)), deadline, () => unchangedReport(hash), (m, sent) => (m.id === sent.id ? 'echo' : null));
      return { count: r.count, failed: live.length - r.count, startedAt, endedAt: now(), latenciesMs: r.samples, statuses: r.statuses, failovers: 0, problems: r.problems };
    }
    case 'release': {
      const startedAt = now();
      let closed = 0;
      for (const a of agents) {
        if (a.link !== null) {
          a.link.ws.terminate();
          a.link = null;
          closed++;
        }
      }
      for (const l of f.echoLinks) l.ws.terminate();
      closed += f.echoLinks.length;
      f.echoLinks = [];
      return { count: closed, failed: 0, startedAt, endedAt: now(), latenciesMs: [], statuses: {}, failovers: 0, problems: [] };
    }
  }
}

async function phase(msg: PhaseMessage): Promise<WorkerMessage> {
  const f = fleet;
  if (f === null) throw new Error(`phase ${msg.phase} before init`);
  const cpu = cpuSeconds();
  const outcome = await runPhase(f, msg);
  const result: PhaseResult = { type: 'result', worker: f.init.worker, phase: msg.phase, open: openLinks(f), cpuSeconds: cpuSeconds() - cpu, ...outcome };
  return result;
}

function dropAll(): void {
  for (const a of fleet?.agents ?? []) a.link?.ws.terminate();
  for (const l of fleet?.echoLinks ?? []) l.ws.terminate();
}

// One message at a time, in order: the bench sends the next phase only after this one's result.
let queue: Promise<void> = Promise.resolve();
process.on('message', (raw: unknown) => {
  queue = queue.then(async () => {
    const parsed = ParentMessageSchema.safeParse(raw);
    const worker = fleet?.init.worker ?? -1;
    if (!parsed.success) {
      send({ type: 'failed', worker: Math.max(0, worker), message: `unreadable message from the bench: ${parsed.error.message.slice(0, 500)}` });
      return;
    }
    const msg = parsed.data;
    try {
      if (msg.type === 'exit') {
        dropAll();
        process.disconnect();
        return;
      }
      send(msg.type === 'init' ? init(msg) : await phase(msg));
    } catch (err) {
      send({ type: 'failed', worker: Math.max(0, msg.type === 'init' ? msg.worker : worker), message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    }
  });
});

// The bench went away (it ended, or died): nothing is left to measure.
process.on('disconnect', () => {
  dropAll();
  process.exit(0);
});

if (process.send === undefined) {
  process.stderr.write('scale-worker: bench-scale.ts runs it, over an IPC channel\n');
  process.exit(2);
}
