/**
 * The messages between the scale bench (bench-scale.ts) and its agent workers
 * (scale-worker.ts), over the IPC channel of child_process.fork. Both sides parse what they
 * receive with these schemas: a worker that sends something else has failed, and the bench
 * says so instead of summing garbage.
 */
import { z } from 'zod';
import { InventorySchema } from '../shared/protocol.ts';

/**
 * What a worker does on `phase`: the collector phases in the order the bench runs them,
 * the echo-server baseline (connect and hold, one round trip each), and `release`, which
 * closes every connection the worker holds (or `keep` of them).
 *
 * Across replicas (PostgreSQL), two exchanges each in two steps, with the bench acting in
 * between: `instructionArm` picks a sample of connected agents and says who they are (the
 * bench then enqueues one signed instruction for each, from its own process), and
 * `instructionWait` answers when each has arrived (and been answered with a result) or the
 * deadline passed; `takeoverArm` watches the agents connected to `victimUrl` (the bench
 * then SIGKILLs that replica), and `takeoverWait` answers when each has reconnected to
 * another replica and been served an unchanged report.
 */
export const PHASES = [
  'enroll',
  'connect',
  'full',
  'byReference',
  'unchanged',
  'instructionArm',
  'instructionWait',
  'takeoverArm',
  'takeoverWait',
  'echoConnect',
  'echoRoundTrip',
  'release',
] as const;
export type Phase = (typeof PHASES)[number];

/**
 * Agents one worker drives at most: its sockets count against the per-process open-file
 * limit (ulimit -Hn is 20,000 on the bench machine and cannot be raised), with room for the
 * echo baseline's and Node's own descriptors.
 */
export const MAX_AGENTS_PER_WORKER = 8000;

const count = z.number().int().min(0);

export const InitMessageSchema = z.strictObject({
  type: z.literal('init'),
  worker: count,
  /** Global index of the worker's first agent: host names, machine ids and package sets follow it. */
  firstAgent: count,
  agents: z.number().int().min(1).max(MAX_AGENTS_PER_WORKER),
  /** Loopback source addresses; agent i connects from addresses[i mod length]. */
  addresses: z.array(z.ipv4()).min(1),
  /** The fleet's collectors (replicas): each agent starts at the top of its own ranking (CollectorRotation), as agent/daemon does. */
  collectorUrls: z.array(z.url({ protocol: /^wss?$/ })).min(1),
  token: z.string().min(1),
  dataDir: z.string().min(1),
  /** The 2,000-package inventory of bench.ts (buildInventory), from which the worker builds the fleet's package sets. */
  base: InventorySchema,
  /** Enrollments, other handshakes, full or by-reference reports, unchanged reports in flight in this worker at most. */
  windows: z.strictObject({ enroll: z.number().int().min(1), handshake: z.number().int().min(1), full: z.number().int().min(1), unchanged: z.number().int().min(1) }),
});
export type InitMessage = z.infer<typeof InitMessageSchema>;

export const PhaseMessageSchema = z.strictObject({
  type: z.literal('phase'),
  phase: z.enum(PHASES),
  /** The worker stops starting work after this long and reports what it did. */
  deadlineMs: z.number().int().min(1),
  /** The echo server, for echoConnect. */
  echoUrl: z.url({ protocol: /^ws$/ }).optional(),
  /** instructionArm: agents of this worker to arm at most, spread over its connected ones. */
  sample: count.optional(),
  /** instructionArm: the key the instructions are signed with (base64url raw ed25519), which the agents check as agent/daemon does. */
  collectorPublicKey: z.string().min(1).optional(),
  /** takeoverArm: the replica about to be killed. */
  victimUrl: z.url({ protocol: /^wss?$/ }).optional(),
  /** release: connections to keep open (the first ones of this worker); default none. */
  keep: count.optional(),
});
export type PhaseMessage = z.infer<typeof PhaseMessageSchema>;

export const ParentMessageSchema = z.discriminatedUnion('type', [InitMessageSchema, PhaseMessageSchema, z.strictObject({ type: z.literal('exit') })]);
export type ParentMessage = z.infer<typeof ParentMessageSchema>;

export const ReadyMessageSchema = z.strictObject({
  type: z.literal('ready'),
  worker: count,
  /** Bytes of one full report frame, of one naming its package set, of one unchanged report. */
  frameBytes: z.strictObject({ full: count, byReference: count, unchanged: count }),
});

export const PhaseResultSchema = z.strictObject({
  type: z.literal('result'),
  worker: count,
  phase: z.enum(PHASES),
  /** Agents (or reports) that completed the phase, and those that failed. */
  count,
  failed: count,
  /**
   * When the phase's work started and ended in the worker, in ms since the epoch
   * (performance.timeOrigin + performance.now(): comparable between processes on one machine).
   */
  startedAt: z.number(),
  endedAt: z.number(),
  /** Each completed agent's handshake or ack wait, in ms (the bench merges them for percentiles). */
  latenciesMs: z.array(z.number().min(0)),
  /**
   * Ack statuses by name (stored, unchanged, ...); for handshakes and takeoverWait, why
   * attempts failed, grouped (each agent then tried the next collector of its list).
   */
  statuses: z.record(z.string(), count),
  /** Connection attempts that went to the next collector of the agent's list after a failure. */
  failovers: count,
  /** Connections this worker holds open after the phase. */
  open: count,
  /** This worker's CPU seconds (user + system) during the phase. */
  cpuSeconds: z.number().min(0),
  /** What went wrong, grouped: `N x message`. */
  problems: z.array(z.string()),
  /** Open connections by the collector (index in collectorUrls) they are held by, after the phase. */
  openByCollector: z.array(count),
  /** instructionArm: the armed agents, with the index of the collector holding each one's connection. */
  armed: z.array(z.strictObject({ agentId: z.uuid(), collector: count })).optional(),
  /** instructionWait: when each instruction frame arrived at its agent (ms since the epoch, as startedAt). */
  arrivals: z.array(z.strictObject({ instructionId: z.uuid(), at: z.number() })).optional(),
  /** takeoverArm: agents watched; takeoverWait: when each watched agent was served again (ms since the epoch), and by which collector. */
  watched: count.optional(),
  served: z.array(z.strictObject({ at: z.number(), collector: count })).optional(),
});
export type PhaseResult = z.infer<typeof PhaseResultSchema>;

export const WorkerMessageSchema = z.discriminatedUnion('type', [
  ReadyMessageSchema,
  PhaseResultSchema,
  z.strictObject({ type: z.literal('failed'), worker: count, message: z.string() }),
]);
export type WorkerMessage = z.infer<typeof WorkerMessageSchema>;
