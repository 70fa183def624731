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
import { createHash, randomUUID } from 'node:crypto';
import { Backoff } from '../agent/daemon/backoff.ts';
import { CollectorRotation } from '../agent/daemon/collectors.ts';
import { verifyInstruction } from '../agent/executor/verify.ts';
import type { InstructionResult } from '../shared/instructions.ts';
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
  type Msg,
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
  /** Armed by instructionArm or takeoverArm, collected by the matching wait. */
  armed: Armed | null;
}

/** What one of the two-step exchanges is waiting for: one promise per armed agent. */
interface Armed {
  kind: 'instruction' | 'takeover';
  waits: Promise<void>[];
  arrivals: { instructionId: string; at: number }[];
  served: { at: number; collector: number }[];
  problems: Map<string, number>;
  /** Takeover: why reconnect attempts failed (each agent tried the next collector after). */
  retries: Map<string, number>;
  failovers: number;
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

interface Moves {
  failovers: number;
  /** Why each attempt that moved on failed, grouped. */
  why: Map<string, number>;
}

/**
 * Tries `attempt` on the rotation's current collector, moving to the next after each
 * failure, until it succeeds or every collector of the list has failed once (then the last
 * error). Counts the moves.
 */
async function viaRotation(rotation: CollectorRotation, attempt: (url: string) => Promise<void>, moves: Moves): Promise<void> {
  for (;;) {
    try {
      await attempt(rotation.current);
      rotation.connected();
      return;
    } catch (err) {
      const everyOneFailed = rotation.failed();
      if (everyOneFailed) throw err;
      moves.failovers++;
      const key = (err as Error).message.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, 'ID').slice(0, 200);
      moves.why.set(key, (moves.why.get(key) ?? 0) + 1);
    }
  }
}

/** Open agent connections by the index (in collectorUrls) of the collector holding each. */
function openByCollector(f: Fleet): number[] {
  const counts = f.init.collectorUrls.map(() => 0);
  f.agents.forEach((a, i) => {
    const rotation = f.rotations[i];
    if (a.link === null || a.link.closed !== null || rotation === null || rotation === undefined) return;
    const at = f.init.collectorUrls.indexOf(rotation.current);
    counts[at] = (counts[at] ?? 0) + 1;
  });
  return counts;
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
  fleet = { init: msg, template, variants, agents, rotations: agents.map(() => null), echoLinks: [], armed: null };
  return { type: 'ready', worker: msg.worker, frameBytes: { full: full.data.length, byReference: byRef.data.length, unchanged: Buffer.byteLength(unchangedReport(full.hash).data) } };
}

type Outcome = Omit<PhaseResult, 'type' | 'worker' | 'phase' | 'open' | 'openByCollector' | 'cpuSeconds'>;

/** A handshake per agent (`task`), `window` at a time, each timed. */
async function handshakes(f: Fleet, indexes: readonly number[], deadline: number, task: (i: number, moves: Moves) => Promise<void>, window = f.init.windows.handshake): Promise<Outcome> {
  const latencies: number[] = [];
  const moves: Moves = { failovers: 0, why: new Map() };
  const startedAt = now();
  const r = await pool(indexes.length, window, deadline, async (k) => {
    const t = performance.now();
    await task(indexes[k] as number, moves);
    latencies.push(performance.now() - t);
  });
  const problems = [...r.errors];
  if (r.timedOut) problems.push(`deadline reached with ${indexes.length - r.count - r.failed} not started`);
  return { count: r.count, failed: indexes.length - r.count, startedAt, endedAt: now(), latenciesMs: latencies, statuses: Object.fromEntries(moves.why), failovers: moves.failovers, problems };
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

function problem(armed: Armed, p: string, into: Map<string, number> = armed.problems): void {
  const key = p.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, 'ID').slice(0, 200);
  into.set(key, (into.get(key) ?? 0) + 1);
}

/**
 * What agent/daemon does with an instruction frame: checks it as the executor does
 * (agent/executor/verify.ts: the pinned key, its own id, not expired), runs it (a refresh:
 * nothing to run here), sends its result and waits for the ack, then sends a fresh report
 * (unchanged: the inventory is the same) and waits for that ack. The caller takes the
 * arrival time before it, for the delivery latency.
 */
async function answerInstruction(link: Link, a: SimAgent, m: Msg, collectorPublicKey: string, ledger: Set<string>): Promise<{ instructionId: string }> {
  const startedAt = new Date();
  // The frame is the signed instruction with its message type beside it (shared/protocol.ts).
  const { type: _type, ...signed } = m;
  const verdict = verifyInstruction(signed, { collectorPublicKey, agentId: a.agentId ?? '', now: startedAt, ledger });
  if (!verdict.ok) throw new Error(`instruction refused: ${verdict.code} ${verdict.message}`);
  const id = verdict.instruction.id;
  ledger.add(id);
  const result: InstructionResult = {
    instructionId: id,
    status: 'succeeded',
    code: null,
    message: `${verdict.instruction.kind}: done (scale bench)`,
    dryRun: verdict.instruction.dryRun,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    commands: [],
    changes: [],
    rebootRequired: null,
  };
  const resultId = randomUUID();
  link.send(JSON.stringify({ type: 'result', id: resultId, result }));
  const ack = await link.expect('ack');
  if (ack.id !== resultId || ack.status !== 'stored') throw new Error(`the result was acked ${JSON.stringify(ack).slice(0, 200)}`);
  await unchangedRoundTrip(link, a, collectorPublicKey, ledger);
  return { instructionId: id };
}

/** One unchanged report and its ack; an instruction that comes first (one sent again at welcome) is answered on the way. */
async function unchangedRoundTrip(link: Link, a: SimAgent, collectorPublicKey: string, ledger: Set<string>): Promise<void> {
  const report = unchangedReport(a.hash ?? '');
  link.send(report.data);
  for (;;) {
    const m = await link.next();
    if (m.type === 'instruction') {
      await answerInstruction(link, a, m, collectorPublicKey, ledger);
      continue;
    }
    if (m.type !== 'ack' || m.id !== report.id) throw new Error(`expected the ack of the report, got ${JSON.stringify(m).slice(0, 200)}`);
    if (m.status !== 'unchanged') throw new Error(`the unchanged report was acked ${String(m.status)}`);
    return;
  }
}

/** Agents of this worker connected now, `n` of them at most, spread evenly over its list. */
function spread(f: Fleet, n: number): number[] {
  const open = f.agents.flatMap((a, i) => (a.link !== null && a.link.closed === null ? [i] : []));
  if (n >= open.length) return open;
  return Array.from({ length: n }, (_, j) => open[Math.floor((j * open.length) / n)] as number);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Instructions seen per agent, as the agent's ledger refuses a replay. */
const ledgers = new Map<number, Set<string>>();
function ledgerOf(i: number): Set<string> {
  let l = ledgers.get(i);
  if (l === undefined) ledgers.set(i, (l = new Set()));
  return l;
}

function arm(f: Fleet, msg: PhaseMessage): Outcome & { armed?: { agentId: string; collector: number }[]; watched?: number } {
  const startedAt = now();
  const key = msg.collectorPublicKey;
  if (key === undefined) throw new Error(`${msg.phase} without collectorPublicKey`);
  const armed: Armed = { kind: msg.phase === 'instructionArm' ? 'instruction' : 'takeover', waits: [], arrivals: [], served: [], problems: new Map(), retries: new Map(), failovers: 0 };
  f.armed = armed;
  const { collectorUrls } = f.init;
  const base = { count: 0, failed: 0, startedAt, endedAt: now(), latenciesMs: [], statuses: {}, failovers: 0, problems: [] };
  if (msg.phase === 'instructionArm') {
    const picked = spread(f, msg.sample ?? 0);
    const list: { agentId: string; collector: number }[] = [];
    for (const i of picked) {
      const a = f.agents[i] as SimAgent;
      const link = a.link as Link;
      list.push({ agentId: a.agentId as string, collector: collectorUrls.indexOf((f.rotations[i] as CollectorRotation).current) });
      armed.waits.push(
        within(
          msg.deadlineMs,
          'instruction',
          (async () => {
            const m = await link.expect('instruction');
            const at = now();
            const { instructionId } = await answerInstruction(link, a, m, key, ledgerOf(i));
            armed.arrivals.push({ instructionId, at });
          })(),
          () => undefined,
        ).catch((err: unknown) => {
          problem(armed, (err as Error).message);
        }),
      );
    }
    return { ...base, count: list.length, armed: list };
  }
  // takeoverArm: every agent the victim holds reconnects as agent/daemon does when its
  // connection drops: the next collector of its list after a jittered delay within the
  // first backoff window, the window growing only once every collector failed.
  const victim = msg.victimUrl;
  if (victim === undefined) throw new Error('takeoverArm without victimUrl');
  let watched = 0;
  f.agents.forEach((a, i) => {
    const rotation = f.rotations[i];
    const link = a.link;
    if (link === null || link.closed !== null || rotation?.current !== victim) return;
    watched++;
    armed.waits.push(
      within(
        msg.deadlineMs,
        'takeover',
        (async () => {
          await new Promise<void>((resolve) => {
            link.onClose = () => {
              resolve();
            };
          });
          a.link = null;
          const backoff = new Backoff();
          for (;;) {
            const everyOneFailed = rotation.failed();
            await sleep(everyOneFailed ? backoff.next() : backoff.rotation());
            let next: Link | null = null;
            try {
              next = await connectAgent(rotation.current, a, sourceOf(f, i), a.hash);
              rotation.connected();
              backoff.connected();
              await unchangedRoundTrip(next, a, key, ledgerOf(i));
              armed.served.push({ at: now(), collector: collectorUrls.indexOf(rotation.current) });
              return;
            } catch (err) {
              armed.failovers++;
              next?.ws.terminate();
              a.link = null;
              problem(armed, (err as Error).message, armed.retries);
            }
          }
        })(),
        () => undefined,
      ).catch((err: unknown) => {
        problem(armed, (err as Error).message);
      }),
    );
  });
  return { ...base, count: watched, watched };
}

async function collect(f: Fleet, msg: PhaseMessage): Promise<Outcome & { arrivals?: Armed['arrivals']; served?: Armed['served'] }> {
  const armed = f.armed;
  const want = msg.phase === 'instructionWait' ? 'instruction' : 'takeover';
  if (armed?.kind !== want) throw new Error(`${msg.phase} without ${want === 'instruction' ? 'instructionArm' : 'takeoverArm'}`);
  const startedAt = now();
  await Promise.all(armed.waits);
  f.armed = null;
  const done = want === 'instruction' ? armed.arrivals.length : armed.served.length;
  const outcome = {
    count: done,
    failed: armed.waits.length - done,
    startedAt,
    endedAt: now(),
    latenciesMs: [],
    statuses: Object.fromEntries(armed.retries),
    failovers: armed.failovers,
    problems: [...armed.problems].map(([p, n]) => `${n} x ${p}`),
  };
  return want === 'instruction' ? { ...outcome, arrivals: armed.arrivals } : { ...outcome, served: armed.served };
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
      }, cfg.windows.enroll);
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
    case 'instructionArm':
    case 'takeoverArm':
      return arm(f, msg);
    case 'instructionWait':
    case 'takeoverWait':
      return collect(f, msg);
    case 'release': {
      const startedAt = now();
      let closed = 0;
      let kept = 0;
      for (const a of agents) {
        if (a.link !== null && a.link.closed === null && kept < (msg.keep ?? 0)) {
          kept++;
          continue;
        }
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
  const result: PhaseResult = { type: 'result', worker: f.init.worker, phase: msg.phase, open: openLinks(f), openByCollector: openByCollector(f), cpuSeconds: cpuSeconds() - cpu, ...outcome };
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
