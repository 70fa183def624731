/**
 * The fleet simulator of `npm run bench` (issue 4): the collector runs as its own process
 * (dist/collector.js serve on 127.0.0.1:0 over a temporary SQLite file), so its RSS and CPU
 * time are its own, read from /proc; this process simulates the agents, one WebSocket
 * connection each, speaking the real protocol with real ed25519 keys:
 *
 *   enroll:  challenge -> enroll {token, publicKey} -> enrolled, welcome; closed (as `patchwarden-agent enroll` does)
 *   connect: challenge -> hello {agentId, signature} -> welcome; kept open
 *   full:    report {id, hash, inventory} -> ack stored          (2,000 packages in the frame)
 *   by ref:  report {id, hash, packageSet, inventory without packages} -> ack stored
 *            (what agents send first: a fleet built from a few images names sets the collector holds)
 *   same:    report {id, hash, inventory: null} -> ack unchanged
 *
 * Inventories are the real Debian 12 host's packages plus the real bookworm-security index
 * up to 2,000 (built by bench.ts), relabelled Debian 12; each agent has its own host name,
 * machine id and boot id, and the fleet has VARIANTS package sets: the host's real pending
 * upgrades (`apt list --upgradable`) applied to a different depth, as in a fleet half-way
 * through a patch wave. Identical package sets are stored once by the collector; the store
 * is read back at the end to check that, and every count the acks claim. The real Debian
 * DSA and DLA lists and KEV are imported before it serves, so each report is correlated
 * against real advisories (issue 11) and the findings are counted at the end.
 *
 * Baselines from the same run: a ws echo server in its own process (connects with one
 * round trip, and echo round trips: the floor of a handshake and of an unchanged report),
 * and JSON.parse + JSON.stringify of one full report in this process (the least a
 * collector must do with one). Every phase has a deadline; the child processes and the
 * temporary directory are removed whatever happens.
 */
import { ensureBuilt } from './dist-fresh.ts';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, type Hash, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import WebSocket from 'ws';
import { ecosystemFor, parseOsRelease } from '../agent/inventory/os-release.ts';
import { enrollFrame, helloFrame, newKeys } from '../shared/testing/fake-agent.ts';
import { OwnedChild, ownedTempDir } from '../shared/testing/owned-child.ts';
import { openDatabase } from '../collector/store/db.ts';
import { FleetSummaryStore } from '../collector/store/fleet-summary.ts';
import { type CountedTable, StoreInspection } from '../collector/store/inspection.ts';
import { REPORTS_PER_AGENT } from '../collector/store/reports.ts';
import { SqliteDatabase } from '../collector/store/sql/sqlite.ts';
import { inventoryHash, packageSetHash, packagesHash } from '../shared/inventory-hash.ts';
import { type Inventory, InventorySchema, type Package } from '../shared/protocol.ts';
import type { KeyPair } from '../shared/signing.ts';

const ROOT = join(import.meta.dirname, '..');

/** "A few dozen" distinct package sets, as a real fleet built from a handful of images drifts into. */
export const VARIANTS = 32;
/** The label the fleet's inventories carry (see buildVariants). */
export const FLEET_ECOSYSTEM = 'Debian:11';
/**
 * Handshakes in flight at once. The gateway answers 503 past maxPendingHandshakes (1024 by
 * default) unauthenticated connections, so this stays well under it.
 */
export const HANDSHAKE_CONCURRENCY = 128;
/** Full reports of package sets the collector has never seen, each made (and hashed) before the phase. */
const NEW_SET_REPORTS = 500;
/** Full reports in flight: 32 x ~250 KB frames; more only adds memory to both sides. */
export const FULL_WINDOW = 32;
/** Unchanged reports in flight: 10,000 agents on timers keep about this many outstanding. */
export const UNCHANGED_WINDOW = 1000;
const MIN_FULL_REPORTS = 3000;
const MIN_UNCHANGED_REPORTS = 50_000;
/** Echo-server connections for the baselines (its own fds count against `ulimit -n` here). */
const ECHO_CONNECTIONS = 1000;
export const STEP_TIMEOUT_MS = 30_000;
/** Linux's USER_HZ, the unit of utime/stime in /proc/PID/stat, on every architecture Node runs on. */
const CLOCK_TICKS = 100;

export interface FleetBenchOptions {
  /** ../shared/data. */
  dataDir: string;
  /** The 2,000-package inventory of bench.ts (buildInventory). */
  base: Inventory;
  agents: number;
  /** Where the collector writes a V8 CPU profile (node --cpu-prof), or null. */
  cpuProfDir: string | null;
  /**
   * Another build of the collector to run instead of dist/collector.js (no build check): to
   * compare a change against the same run's baselines. Keep it in dist/ so it finds node_modules.
   */
  collectorJs: string | null;
  progress: (line: string) => void;
}

export interface Rate {
  count: number;
  ms: number;
  perSecond: number;
}

export interface PhaseCpu {
  /** Collector CPU seconds over wall seconds: 1.0 is one core busy all the time. */
  collector: number;
  /** The same for this process (the simulated agents). */
  simulator: number;
}

export interface ReportPhase extends Rate {
  window: number;
  statuses: Record<string, number>;
  latencyMs: { p50: number; p99: number; max: number };
  cpu: PhaseCpu;
  problems: string[];
}

export interface FleetBench {
  agents: number;
  packages: number;
  variants: number;
  /** Bytes of one full report frame, of one naming its package set, of one unchanged report frame. */
  frameBytes: { full: number; byReference: number; unchanged: number };
  /** The collector build that ran, relative to the repository. */
  collector: string;
  build: string | null;
  baselines: {
    /** ed25519 key pairs made per second here (newKeys of shared/testing/fake-agent.ts: generate + PEM export). */
    keygenPerSecond: number;
    /** ws connects to the echo server, each with one round trip, per second. */
    echoConnect: Rate;
    /** ws echo round trips of an unchanged-report frame per second. */
    echo: Rate & { window: number; connections: number };
    /** JSON.parse + JSON.stringify of one full report frame per second, here. */
    jsonRoundTripPerSecond: number;
  };
  enroll: Rate & { cpu: PhaseCpu; problems: string[] };
  connect: Rate & { connected: number; cpu: PhaseCpu; problems: string[] };
  /** Full reports, packages in the frame, of the fleet's package sets (held by the collector after the first of each). */
  full: ReportPhase;
  /** Full reports, packages in the frame, each a package set the collector has never seen: the worst case. */
  newSets: ReportPhase;
  /** Changed inventories whose package set the collector holds, named by packageSetHash. */
  byReference: ReportPhase;
  unchanged: ReportPhase;
  /** After each report phase: how long until the collector had correlated every host it queued (null: not within the deadline). */
  correlationCatchUpMs: Record<string, number | null>;
  rssMb: { idle: number; connected: number; afterFull: number; afterUnchanged: number; peak: number };
  /** What the collector said about itself on /metrics after each phase (null when it could not be read). */
  metrics: { connected: number | null; hosts: number | null; stored: number | null; unchanged: number | null };
  /** Rows in the store after the run, read from the database once the collector exited. */
  store: { agents: number; hosts: number; reports: number; maxReportsPerAgent: number; contents: number; expectedContents: number; advisories: number; openFindings: number; hostsWithFindings: number } | null;
  collectorLog: { lines: number; warnings: number; errors: number; exit: string };
  cpuProfile: string | null;
  /** Anything that means a figure does not measure what it says. */
  problems: string[];
}

// ---------------------------------------------------------------------------------------
// the collector build and process

/** Newest modification time of the files dist/collector.js is built from. */
/** The soft `ulimit -n` of this process (children inherit it). */
export function openFileLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m?.[1] === undefined || m[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m[1]);
}

export function procStatus(pid: number): { rssMb: number; hwmMb: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 };
}

/** utime + stime of a process, in seconds. */
export function procCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name is in parentheses and may itself contain spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Collector and simulator CPU use over a phase. */
function cpuMeter(pid: number): () => PhaseCpu {
  const t = performance.now();
  const c = procCpuSeconds(pid);
  const s = selfCpuSeconds();
  return () => {
    const wall = (performance.now() - t) / 1000;
    return { collector: (procCpuSeconds(pid) - c) / wall, simulator: (selfCpuSeconds() - s) / wall };
  };
}

/** A child node process whose stdout is drained line by line (a full pipe would block pino's synchronous writes). */
export class Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<string>;
  readonly #owned: OwnedChild;
  lines = 0;
  warnings = 0;
  errors = 0;
  readonly #tail: string[] = [];
  #partial = '';
  #lineWaiters: { re: RegExp; resolve: (m: RegExpExecArray) => void }[] = [];

  constructor(args: string[], cwd: string) {
    // No feed sync: the bench measures the gateway, and reaches no upstream.
    this.proc = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PATCHWARDEN_FEED_SYNC: 'off' } });
    this.#owned = new OwnedChild(this.proc);
    this.exited = this.#owned.exited;
    this.proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (this.#partial + chunk).split('\n');
      this.#partial = parts.pop() ?? '';
      for (const line of parts) this.#line(line);
    });
    this.proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      for (const line of chunk.split('\n')) if (line !== '') this.#keep(`stderr: ${line}`);
    });
  }

  get exit(): string | null {
    return this.#owned.exit;
  }

  get tail(): string {
    return this.#tail.join('\n');
  }

  #keep(line: string): void {
    this.#tail.push(line.slice(0, 2000));
    if (this.#tail.length > 20) this.#tail.shift();
  }

  #line(line: string): void {
    this.lines++;
    // pino levels: 40 warn, 50 error, 60 fatal.
    const level = Number(/"level":(\d+)/.exec(line)?.[1] ?? 0);
    if (level === 40) this.warnings++;
    if (level >= 50) {
      this.errors++;
      this.#keep(line);
    }
    for (const w of this.#lineWaiters) {
      const m = w.re.exec(line);
      if (m !== null) {
        this.#lineWaiters = this.#lineWaiters.filter((x) => x !== w);
        w.resolve(m);
      }
    }
  }

  /** The first stdout line matching `re`; rejects when the process exits first or nothing comes in time. */
  async waitLine(re: RegExp, timeoutMs: number, what: string): Promise<RegExpExecArray> {
    let timer: NodeJS.Timeout | undefined;
    const line = new Promise<RegExpExecArray>((resolve) => this.#lineWaiters.push({ re, resolve }));
    const failed = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`${what}: nothing within ${timeoutMs} ms\n${this.tail}`));
      }, timeoutMs);
      void this.exited.then((exit) => {
        reject(new Error(`${what}: the process ended (${exit})\n${this.tail}`));
      });
    });
    try {
      return await Promise.race([line, failed]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with how it ended. */
  stop(graceMs: number): Promise<string> {
    return this.#owned.stop(graceMs);
  }
}

// ---------------------------------------------------------------------------------------
// simulated agents

export interface Msg {
  type: string;
  [key: string]: unknown;
}

/** One WebSocket connection: messages queue for next(), or go to onMessage while it is set. */
export class Link {
  readonly ws: WebSocket;
  readonly #queue: Msg[] = [];
  #waiter: { resolve: (m: Msg) => void; reject: (e: Error) => void } | null = null;
  closed: string | null = null;
  onMessage: ((m: Msg) => void) | null = null;
  onClose: ((why: string) => void) | null = null;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      let msg: Msg;
      try {
        if (isBinary) throw new Error('a binary frame');
        const v: unknown = JSON.parse((data as Buffer).toString('utf8'));
        if (typeof v !== 'object' || v === null || typeof (v as { type?: unknown }).type !== 'string') throw new Error('not a message');
        msg = v as Msg;
      } catch (err) {
        this.#closed(`unreadable frame from the peer: ${(err as Error).message}`);
        ws.terminate();
        return;
      }
      if (this.onMessage !== null) this.onMessage(msg);
      else if (this.#waiter !== null) {
        const w = this.#waiter;
        this.#waiter = null;
        w.resolve(msg);
      } else this.#queue.push(msg);
    });
    ws.on('close', (code, reason) => {
      this.#closed(`closed ${code} ${reason.toString('utf8')}`);
    });
    ws.on('error', () => undefined);
  }

  #closed(why: string): void {
    if (this.closed !== null) return;
    this.closed = why;
    const w = this.#waiter;
    this.#waiter = null;
    w?.reject(new Error(`connection ${why}`));
    this.onClose?.(why);
  }

  /** `localAddress`: the loopback address to connect from (each looks like another host to the collector). */
  static open(url: string, localAddress?: string): Promise<Link> {
    return new Promise((resolve, reject) => {
      // A zero masking key: ws then writes the caller's buffer as it is instead of a masked
      // copy. Each of a real fleet's agents masks its own frames on its own machine; here one
      // process speaks for thousands and shares two cores with the collector. The collector's
      // work is the same (ws unmasks every client frame, whatever the key).
      const ws = new WebSocket(url, {
        perMessageDeflate: false,
        maxPayload: 1024 * 1024,
        handshakeTimeout: STEP_TIMEOUT_MS,
        generateMask: zeroMask,
        ...(localAddress === undefined ? {} : { localAddress }),
      });
      const link = new Link(ws);
      ws.once('open', () => {
        resolve(link);
      });
      ws.once('unexpected-response', (_req, res) => {
        ws.terminate();
        reject(new Error(`HTTP ${res.statusCode ?? '?'} instead of a WebSocket`));
      });
      ws.once('error', reject);
    });
  }

  next(): Promise<Msg> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.closed !== null) return Promise.reject(new Error(`connection ${this.closed}`));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  async expect(type: string): Promise<Msg> {
    const m = await this.next();
    if (m.type === type) return m;
    if (m.type === 'error') throw new Error(`expected ${type}, got error ${String(m.code)}: ${String(m.message)}`);
    throw new Error(`expected ${type}, got ${m.type}`);
  }

  /** `written`: the frame's bytes were handed to the socket (its buffer may be reused). */
  send(data: string | Buffer, written?: () => void): void {
    this.ws.send(data, { binary: false }, written);
  }
}

export interface SimAgent {
  index: number;
  hostname: string;
  machineId: string;
  bootId: string;
  /** JSON of the host without uptimeSeconds, as inventoryHash serialises it. */
  stableHostJson: string;
  host: Inventory['host'];
  keys: KeyPair | null;
  agentId: string | null;
  link: Link | null;
  /** The hash of the last inventory the collector acked as stored. */
  hash: string | null;
}

/**
 * Enrollment as `patchwarden-agent enroll` does it: challenge, enroll with `keys`, enrolled
 * and welcome on one connection, closed after. Sets the agent's id and keys.
 */
export async function enrollAgent(url: string, token: string, a: SimAgent, keys: KeyPair, localAddress?: string): Promise<void> {
  const link = await Link.open(url, localAddress);
  try {
    await within(
      STEP_TIMEOUT_MS,
      'enroll',
      (async () => {
        await link.expect('challenge');
        link.send(JSON.stringify(enrollFrame(token, keys, { hostname: a.hostname, machineId: a.machineId })));
        const enrolled = await link.expect('enrolled');
        const welcome = await link.expect('welcome');
        if (typeof enrolled.agentId !== 'string' || welcome.agentId !== enrolled.agentId) throw new Error('enrolled and welcome name different agents');
        a.agentId = enrolled.agentId;
        a.keys = keys;
      })(),
      () => {
        link.ws.terminate();
      },
    );
  } finally {
    link.ws.close(1000);
  }
}

/**
 * An enrolled agent's connection: challenge, signed hello, welcome (naming no inventory:
 * the agent is new; or `inventoryHash`, the one the agent last had stored, when it comes
 * back), kept open as the agent's link. A failed one is terminated.
 */
export async function connectAgent(url: string, a: SimAgent, localAddress?: string, inventoryHash: string | null = null): Promise<Link> {
  const { agentId, keys } = a;
  if (agentId === null || keys === null) throw new Error(`agent ${a.index} is not enrolled`);
  const link = await Link.open(url, localAddress);
  try {
    await within(
      STEP_TIMEOUT_MS,
      'hello',
      (async () => {
        const challenge = await link.expect('challenge');
        link.send(JSON.stringify(helloFrame(String(challenge.nonce), agentId, keys)));
        const welcome = await link.expect('welcome');
        if (welcome.inventoryHash !== inventoryHash) throw new Error(`welcome names inventory ${JSON.stringify(welcome.inventoryHash)}, the agent expected ${JSON.stringify(inventoryHash)}`);
      })(),
      () => {
        link.ws.terminate();
      },
    );
  } catch (err) {
    link.ws.terminate();
    throw err;
  }
  a.link = link;
  return link;
}

const ROLES = ['web', 'api', 'db', 'cache', 'queue', 'batch', 'build', 'edge'];
const SITES = ['fra1', 'ams3', 'lon1', 'nyc2', 'sfo3'];

export function makeAgent(index: number, base: Inventory['host']): SimAgent {
  const hostname = `${ROLES[index % ROLES.length] ?? 'host'}-${index}.${SITES[index % SITES.length] ?? 'dc'}.example.internal`;
  const machineId = createHash('sha256').update(`patchwarden-bench-machine-${index}`).digest('hex').slice(0, 32);
  const bootId = randomUUID();
  const host: Inventory['host'] = { ...base, hostname, machineId, bootId, uptimeSeconds: 3600 + index };
  const { uptimeSeconds: _up, ...stable } = host;
  return { index, hostname, machineId, bootId, stableHostJson: JSON.stringify(stable), host, keys: null, agentId: null, link: null, hash: null };
}

// ---------------------------------------------------------------------------------------
// inventories

interface Upgrade {
  name: string;
  from: string;
  to: string;
}

/** `name/suite version arch [upgradable from: old]` lines of `apt list --upgradable`. */
export function parseAptUpgradable(text: string): Upgrade[] {
  const out: Upgrade[] = [];
  for (const line of text.split('\n')) {
    const m = /^([^/\s]+)\/\S+ (\S+) \S+ \[upgradable from: ([^\]\s]+)\]$/.exec(line.trim());
    if (m?.[1] !== undefined && m[2] !== undefined && m[3] !== undefined) out.push({ name: m[1], to: m[2], from: m[3] });
  }
  return out;
}

export interface Variant {
  /** packagesHash: what the collector stores once. */
  contentHash: string;
  /** Frames ending in `"packageFormat":…,"packages":[…],"kernel":…,"reboot":…,"warnings":[]}}` of the inventory. */
  frames: FramePool;
  packages: Package[];
  /** The same with `"packages":[]`, and `,"packageSet":"…"}` after the inventory. */
  compactFrames: FramePool;
  setHash: string;
  /** sha256 over everything inventoryHash serialises before the host. */
  hashPrefix: Hash;
  upgraded: number;
}

/**
 * The base inventory relabelled as what its packages are (Debian 12, from the real host's
 * os-release), then VARIANTS package sets: variant v has the first v/(VARIANTS-1) of the
 * host's real pending upgrades applied, so variant 0 is the host as it is and the last one
 * is fully patched. Binary NMUs (`+bN`) keep their source version.
 */
export function buildVariants(dataDir: string, base: Inventory): { template: Inventory; variants: Variant[] } {
  const fields = parseOsRelease(readFileSync(join(dataDir, 'host-inventory', 'debian12-host.os-release'), 'utf8'));
  const os = {
    id: fields.get('ID') ?? null,
    idLike: [],
    versionId: fields.get('VERSION_ID') ?? null,
    codename: fields.get('VERSION_CODENAME') ?? null,
    prettyName: fields.get('PRETTY_NAME') ?? null,
  };
  // Relabelled Debian 11, as the correlate section does: the real DSA/DLA lists loaded into
  // the store (fleetBench) end before Debian 12, so under its own label no package would
  // meet an advisory; as bullseye each of its source packages with advisories is matched
  // against their real ranges (and finds none open: every bookworm version is newer than
  // the bullseye fixes), so the report figures carry the cost of correlation.
  if (ecosystemFor(os, fields) !== 'Debian:12') throw new Error('the real host is not Debian 12');
  const template: Inventory = { ...base, host: { ...base.host, os, ecosystem: FLEET_ECOSYSTEM } };
  const installed = new Map(base.packages.map((p) => [p.name, p.version]));
  const upgrades = parseAptUpgradable(readFileSync(join(dataDir, 'host-inventory', 'debian12-host.apt-list-upgradable.txt'), 'utf8')).filter(
    (u) => installed.get(u.name) === u.from,
  );
  if (upgrades.length < VARIANTS - 1) throw new Error(`only ${upgrades.length} pending upgrades apply to the inventory; ${VARIANTS} variants need ${VARIANTS - 1}`);
  const variants: Variant[] = [];
  for (let v = 0; v < VARIANTS; v++) {
    const upgraded = Math.round((v * upgrades.length) / (VARIANTS - 1));
    const to = new Map(upgrades.slice(0, upgraded).map((u) => [u.name, u.to]));
    const packages: Package[] = template.packages.map((p) => {
      const version = to.get(p.name);
      if (version === undefined) return p;
      return { ...p, version, sourceVersion: p.sourceVersion === p.version ? version.replace(/\+b\d+$/, '') : p.sourceVersion };
    });
    const inv: Inventory = { ...template, packages };
    const setHash = packageSetHash(packages);
    const { collectedAt: _at, host: _host, ...rest } = inv;
    const forHash = JSON.stringify({ ...rest, packages: setHash, host: null });
    const cut = forHash.length - 'null}'.length;
    if (!forHash.endsWith(',"host":null}')) throw new Error('unexpected key order in the inventory');
    const tailJson = JSON.stringify({ packageFormat: inv.packageFormat, packages: inv.packages, kernel: inv.kernel, reboot: inv.reboot, warnings: inv.warnings });
    const compactJson = JSON.stringify({ packageFormat: inv.packageFormat, packages: [], kernel: inv.kernel, reboot: inv.reboot, warnings: inv.warnings });
    variants.push({
      contentHash: packagesHash(inv),
      frames: new FramePool(Buffer.from(tailJson.slice(1), 'utf8')),
      packages,
      compactFrames: new FramePool(Buffer.from(`${compactJson.slice(1)},"packageSet":"${setHash}"`, 'utf8')),
      setHash,
      hashPrefix: createHash('sha256').update(forHash.slice(0, cut)),
      upgraded,
    });
  }
  return { template, variants };
}

function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

/** Room for a report's head (type, id, hash, schema, collectedAt, agent version, host: about 600 bytes). */
const HEAD_ROOM = 4096;

/**
 * Frame buffers of one tail (a variant's packages and what follows): HEAD_ROOM bytes, the
 * tail, then `}`. A report writes its head just before the tail and sends the buffer from
 * there, so its bytes are head + tail + `}` without a 240 KB copy per report; the buffer
 * goes back to the pool when ws has handed it to the socket. Without this the simulator
 * spent a third of its time copying and collecting frames, on the cores the collector needs.
 */
class FramePool {
  readonly #tail: Buffer;
  readonly #free: Buffer[] = [];

  constructor(tail: Buffer) {
    this.#tail = tail;
  }

  frame(head: string): { data: Buffer; release: () => void } {
    const length = Buffer.byteLength(head, 'utf8');
    if (length > HEAD_ROOM) return { data: Buffer.concat([Buffer.from(head, 'utf8'), this.#tail, FRAME_END]), release: () => undefined };
    let buf = this.#free.pop();
    if (buf === undefined) {
      buf = Buffer.allocUnsafeSlow(HEAD_ROOM + this.#tail.length + FRAME_END.length);
      this.#tail.copy(buf, HEAD_ROOM);
      FRAME_END.copy(buf, HEAD_ROOM + this.#tail.length);
    }
    buf.write(head, HEAD_ROOM - length, 'utf8');
    const owned = buf;
    let released = false;
    return {
      data: buf.subarray(HEAD_ROOM - length),
      release: () => {
        if (released) return;
        released = true;
        this.#free.push(owned);
      },
    };
  }
}

const FRAME_END = Buffer.from('}', 'utf8');

export interface ReportFrame {
  id: string;
  hash: string;
  data: Buffer;
  /** The frame's buffer may be reused: call once it was sent (or will not be). */
  release: () => void;
}

/**
 * One full report frame, built from the variant's serialised tail: the same bytes
 * JSON.stringify would give, without serialising 2,000 packages per report here.
 */
export function fullReport(template: Inventory, variant: Variant, agent: SimAgent, byReference = false): ReportFrame {
  const id = randomUUID();
  const hash = variant.hashPrefix.copy().update(`${agent.stableHostJson}}`).digest('hex');
  const head =
    `{"type":"report","id":"${id}","hash":"${hash}","inventory":{"schema":${JSON.stringify(template.schema)},` +
    `"collectedAt":"${new Date().toISOString()}","agentVersion":${JSON.stringify(template.agentVersion)},"host":${JSON.stringify(agent.host)},`;
  return { id, hash, ...(byReference ? variant.compactFrames : variant.frames).frame(head) };
}

export function unchangedReport(hash: string): { id: string; data: string } {
  const id = randomUUID();
  return { id, data: `{"type":"report","id":"${id}","hash":"${hash}","inventory":null}` };
}

/** Proves the hand-built frames are what the collector expects: schema-valid, hash as inventoryHash computes it. */
export function checkFrames(template: Inventory, variants: readonly Variant[], agents: readonly SimAgent[]): void {
  for (const v of [0, variants.length - 1]) {
    const variant = variants[v];
    const agent = agents[v % agents.length];
    if (variant === undefined || agent === undefined) continue;
    const f = fullReport(template, variant, agent);
    const msg = JSON.parse(f.data.toString('utf8')) as { hash: string; inventory: unknown };
    f.release();
    const inv = InventorySchema.parse(msg.inventory);
    if (inventoryHash(msg.inventory as Inventory) !== f.hash) throw new Error(`variant ${v}: the report's hash is not inventoryHash of its inventory`);
    if (packagesHash(inv) !== variant.contentHash) throw new Error(`variant ${v}: packagesHash differs from the variant's`);
    const r = fullReport(template, variant, agent, true);
    const compact = JSON.parse(r.data.toString('utf8')) as { hash: string; inventory: Inventory; packageSet: string };
    r.release();
    if (compact.inventory.packages.length !== 0 || compact.packageSet !== packageSetHash(inv.packages)) throw new Error(`variant ${v}: the by-reference frame does not name the variant's package set`);
    if (inventoryHash(InventorySchema.parse(compact.inventory), compact.packageSet) !== r.hash) throw new Error(`variant ${v}: the by-reference frame's hash is not inventoryHash with the named set`);
  }
}

// ---------------------------------------------------------------------------------------
// load generators

/** Runs task(0..count-1), `concurrency` at a time, until done or the deadline. */
export async function pool(count: number, concurrency: number, deadline: number, task: (i: number) => Promise<void>): Promise<Rate & { failed: number; errors: string[]; timedOut: boolean }> {
  let next = 0;
  let done = 0;
  let failed = 0;
  let timedOut = false;
  const errors = new Map<string, number>();
  const t = performance.now();
  const worker = async (): Promise<void> => {
    while (next < count) {
      if (performance.now() > deadline) {
        timedOut = true;
        return;
      }
      const i = next++;
      try {
        await task(i);
        done++;
      } catch (err) {
        failed++;
        const key = (err as Error).message.replace(/[0-9a-f-]{36}/g, 'ID').slice(0, 200);
        errors.set(key, (errors.get(key) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  const ms = performance.now() - t;
  return { count: done, ms, perSecond: (done * 1000) / ms, failed, timedOut, errors: [...errors].map(([e, n]) => `${n} x ${e}`) };
}

/** Rejects after `ms` and runs `onTimeout` (which should end what the promise waits for). */
export async function within<T>(ms: number, what: string, p: Promise<T>, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => {
          onTimeout();
          reject(new Error(`${what}: no answer within ${ms} ms`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

export interface Sent {
  id: string;
  data: string | Buffer;
  /** Called with the ack's status. */
  acked?: (status: string) => void;
  /** Called when the frame was written (see FramePool). */
  written?: () => void;
}

/** A report frame whose ack, when `stored`, makes its hash the agent's latest. */
export function storing(a: SimAgent, f: { id: string; hash: string; data: Buffer; release?: () => void }): Sent {
  return {
    id: f.id,
    data: f.data,
    written: f.release,
    acked: (status) => {
      if (status === 'stored') a.hash = f.hash;
    },
  };
}

/** The reply `drive` waits for: the ack of the frame sent, by its status. */
export function ackStatus(m: Msg, sent: Sent): string | null {
  return m.type === 'ack' && m.id === sent.id && typeof m.status === 'string' ? m.status : null;
}

/**
 * Closed-loop load: `window` links at a time, each sending its `rounds` reports one after
 * the other and waiting for each ack (as an agent does), the next link starting when one
 * is done. A reply that is not the expected ack, or a closed link, is a problem and ends
 * that link's share; the deadline ends the phase. `samples`: every ack wait, sorted (to merge phases run in several processes).
 */
export function drive(
  links: readonly Link[],
  rounds: number,
  window: number,
  deadline: number,
  frame: (link: number, round: number) => Sent,
  reply: (m: Msg, sent: Sent) => string | null,
): Promise<Rate & { statuses: Record<string, number>; latencyMs: { p50: number; p99: number; max: number }; samples: number[]; problems: string[] }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const statuses: Record<string, number> = {};
    const problems = new Map<string, number>();
    const latencies: number[] = [];
    let nextLink = 0;
    let active = 0;
    let acked = 0;
    let finished = false;
    const problem = (p: string): void => {
      const key = p.replace(/[0-9a-f-]{36}/g, 'ID').slice(0, 200);
      problems.set(key, (problems.get(key) ?? 0) + 1);
    };
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      for (const l of links) {
        l.onMessage = null;
        l.onClose = null;
      }
      const ms = performance.now() - t0;
      latencies.sort((a, b) => a - b);
      resolve({
        count: acked,
        ms,
        perSecond: (acked * 1000) / ms,
        statuses,
        latencyMs: { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), max: latencies[latencies.length - 1] ?? NaN },
        samples: latencies,
        problems: [...problems].map(([p, n]) => `${n} x ${p}`),
      });
    };
    const timer = setTimeout(() => {
      problem(`deadline: the phase was stopped after ${Math.round(performance.now() - t0)} ms with ${active} reports unanswered`);
      finish();
    }, Math.max(0, deadline - performance.now()));
    const done = (l: Link): void => {
      l.onMessage = null;
      l.onClose = null;
      active--;
      start();
    };
    const send = (i: number, l: Link, round: number): void => {
      const sent = frame(i, round);
      const at = performance.now();
      l.onMessage = (m) => {
        if (finished) return;
        const status = reply(m, sent);
        if (status === null) {
          problem(`unexpected reply ${JSON.stringify(m).slice(0, 300)}`);
          done(l);
          return;
        }
        latencies.push(performance.now() - at);
        acked++;
        statuses[status] = (statuses[status] ?? 0) + 1;
        sent.acked?.(status);
        if (round + 1 < rounds) send(i, l, round + 1);
        else done(l);
      };
      l.onClose = (why) => {
        if (finished) return;
        problem(`connection ${why} with a report unanswered`);
        done(l);
      };
      l.send(sent.data, sent.written);
    };
    const start = (): void => {
      while (!finished && active < window && nextLink < links.length) {
        const i = nextLink++;
        const l = links[i];
        if (l === undefined || l.closed !== null) {
          problem('a link was closed before its turn');
          continue;
        }
        active++;
        send(i, l, 0);
      }
      if (active === 0) finish();
    };
    start();
  });
}

// ---------------------------------------------------------------------------------------
// baselines

/** Operations of `fn` per second over about `ms`. */
export function ratePerSecond(ms: number, fn: () => void): number {
  const warm = performance.now() + Math.min(100, ms / 5);
  while (performance.now() < warm) fn();
  let n = 0;
  const t = performance.now();
  let now = t;
  while (now - t < ms) {
    fn();
    n++;
    now = performance.now();
  }
  return (n * 1000) / (now - t);
}

// The echo server: a challenge-like first message, then every frame sent back as it came.
export const ECHO_SERVER = `
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, clientTracking: false, maxPayload: 1 << 20 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
  ws.send('{"type":"challenge"}');
});
wss.on('listening', () => process.stdout.write('echo listening on ' + wss.address().port + '\\n'));
`;

async function echoBaselines(
  connections: number,
  total: number,
  progress: (line: string) => void,
): Promise<{ connect: Rate; echo: Rate & { window: number; connections: number }; problems: string[] }> {
  const child = new Child(['-e', ECHO_SERVER], ROOT);
  const links: Link[] = [];
  const problems: string[] = [];
  try {
    const port = (await child.waitLine(/^echo listening on (\d+)$/, 30_000, 'the ws echo server'))[1] ?? '';
    const url = `ws://127.0.0.1:${port}/`;
    progress(`fleet: baseline: ${connections} ws connects with one round trip to an echo server, then echo round trips`);
    const connect = await pool(connections, HANDSHAKE_CONCURRENCY, performance.now() + 120_000, async () => {
      const link = await Link.open(url);
      links.push(link);
      await within(STEP_TIMEOUT_MS, 'echo connect', (async () => {
        await link.expect('challenge');
        link.send('{"type":"hello"}');
        await link.expect('hello');
      })(), () => {
        link.ws.terminate();
      });
    });
    if (connect.failed > 0 || connect.timedOut) problems.push(`echo connects: ${connect.failed} failed${connect.timedOut ? ', deadline reached' : ''}: ${connect.errors.join('; ')}`);
    const hash = createHash('sha256').update('echo').digest('hex');
    const window = Math.min(UNCHANGED_WINDOW, links.length);
    const rounds = Math.max(1, Math.ceil(total / Math.max(1, links.length)));
    const echo = await drive(links, rounds, window, performance.now() + 120_000, () => unchangedReport(hash), (m, sent) => (m.id === sent.id ? 'echo' : null));
    problems.push(...echo.problems.map((p) => `echo: ${p}`));
    return { connect, echo: { count: echo.count, ms: echo.ms, perSecond: echo.perSecond, window, connections: links.length }, problems };
  } finally {
    for (const l of links) l.ws.terminate();
    await child.stop(5000);
  }
}

// ---------------------------------------------------------------------------------------
// the bench

/**
 * Waits until the collector has correlated every host a phase's reports queued
 * (patchwarden_findings_queue 0), so the next phase measures its own work, not the last
 * one's tail. Returns the wait in ms (null if the gauge never reached 0 in time).
 */
export async function settle(url: string, timeoutMs: number): Promise<number | null> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    try {
      const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) });
      if (/^patchwarden_findings_queue 0$/m.test(await res.text())) return performance.now() - t0;
    } catch {
      // The collector is busy; ask again.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return null;
}

/**
 * A collector's /metrics: `connected` is the store's count of connected agents (the whole
 * fleet's, the same on every replica), `held` the connections this process holds.
 */
export async function scrapeMetrics(url: string): Promise<{ connected: number | null; held: number | null; hosts: number | null; stored: number | null; unchanged: number | null; collectErrors: number | null }> {
  try {
    const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    const value = (re: RegExp): number | null => {
      const m = re.exec(text);
      return m?.[1] === undefined ? null : Number(m[1]);
    };
    return {
      connected: value(/^patchwarden_agents_connected (\S+)$/m),
      held: value(/^patchwarden_agent_connections (\S+)$/m),
      hosts: value(/^patchwarden_hosts_total (\S+)$/m),
      stored: value(/^patchwarden_reports_total\{status="stored"\} (\S+)$/m),
      unchanged: value(/^patchwarden_reports_total\{status="unchanged"\} (\S+)$/m),
      // A failed collect hook leaves its gauges at the last scrape's values.
      collectErrors: value(/^patchwarden_metrics_collect_errors (\S+)$/m),
    };
  } catch {
    return { connected: null, held: null, hosts: null, stored: null, unchanged: null, collectErrors: null };
  }
}

/**
 * A new store at `dbPath` with one enrollment token of `uses` uses (returned) and real
 * advisories loaded before the collector serves it, so every full report is correlated (the
 * Debian DSA and DLA lists, whose bookworm lines cover these Debian 12 hosts, and KEV), as
 * the CLI's `token create` and `feed import` do it.
 */
export function prepareStore(collectorJs: string, dir: string, dbPath: string, dataDir: string, uses: number, note: string): string {
  const token = spawnSync(process.execPath, [collectorJs, 'token', 'create', '--db', dbPath, '--uses', String(uses), '--ttl', '24h', '--note', note], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 60_000,
    maxBuffer: 1024 * 1024,
  });
  if (token.error !== undefined || token.status !== 0) throw new Error(`token create failed (${token.error?.message ?? `exit ${token.status ?? token.signal ?? '?'}`}): ${token.stderr}`);
  for (const [name, file] of [
    ['debian-dsa', join(dataDir, 'debian', 'DSA-list.gz')],
    ['debian-dla', join(dataDir, 'debian', 'DLA-list.gz')],
    ['kev', join(dataDir, 'kev', 'known_exploited_vulnerabilities-2025-11-17.csv.gz')],
  ] as const) {
    const r = spawnSync(process.execPath, [collectorJs, 'feed', 'import', '--db', dbPath, '--name', name, file], { cwd: dir, encoding: 'utf8', timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
    if (r.error !== undefined || r.status !== 0) throw new Error(`feed import ${name} failed (${r.error?.message ?? `exit ${r.status ?? r.signal ?? '?'}`}): ${r.stderr}`);
  }
  return token.stdout.trim();
}

export async function benchFleet(opts: FleetBenchOptions): Promise<FleetBench> {
  const { progress } = opts;
  const n = opts.agents;
  if (!Number.isInteger(n) || n < 1) throw new RangeError('--fleet-agents is a whole number of at least 1');
  const echoConnections = Math.min(n, ECHO_CONNECTIONS);
  const fdLimit = openFileLimit();
  // One fd per connection here and one in the collector, plus files, pipes and the echo links.
  if (n + echoConnections + 200 > fdLimit) {
    throw new RangeError(`--fleet-agents ${n}: ulimit -n is ${fdLimit}, and ${n} agents need about ${n + echoConnections + 200} open files here (raise ulimit -n)`);
  }
  if (opts.collectorJs === null) progress('fleet: checking dist/collector.js is up to date');
  const { path: collectorJs, built } = opts.collectorJs === null ? ensureBuilt('collector') : { path: resolve(opts.collectorJs), built: null };
  const problems: string[] = [];

  // Inventories and their self-check, outside every clock.
  const { template, variants } = buildVariants(opts.dataDir, opts.base);
  const agents = Array.from({ length: n }, (_, i) => makeAgent(i, template.host));
  checkFrames(template, variants, agents);
  const sample = agents[0];
  const v0 = variants[0];
  if (sample === undefined || v0 === undefined) throw new Error('unreachable');
  const fullFrame = fullReport(template, v0, sample);
  const frameBytes = { full: fullFrame.data.length, byReference: fullReport(template, v0, sample, true).data.length, unchanged: Buffer.byteLength(unchangedReport(fullFrame.hash).data) };

  progress('fleet: baselines: ed25519 key generation, JSON.parse + JSON.stringify of one full report');
  const keygenPerSecond = ratePerSecond(300, () => newKeys());
  const fullText = fullFrame.data.toString('utf8');
  let sink = 0;
  const jsonRoundTripPerSecond = ratePerSecond(1000, () => {
    sink += JSON.stringify(JSON.parse(fullText)).length;
  });
  if (sink === 0) throw new Error('unreachable');
  const echoBase = await echoBaselines(echoConnections, MIN_UNCHANGED_REPORTS, progress);
  problems.push(...echoBase.problems);

  const temp = ownedTempDir('pw-bench-fleet-');
  const dir = temp.path;
  let child: Child | null = null;
  const links: Link[] = [];
  let store: FleetBench['store'] = null;
  try {
    const dbPath = join(dir, 'collector.db');
    const enrollToken = prepareStore(collectorJs, dir, dbPath, opts.dataDir, n, 'bench fleet');

    const profArgs = opts.cpuProfDir === null ? [] : ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir];
    progress(`fleet: starting the collector (${relative(ROOT, collectorJs)} serve on a temp DB${opts.cpuProfDir === null ? '' : `, CPU profile into ${opts.cpuProfDir}`})`);
    const c = new Child([...profArgs, collectorJs, 'serve', '--db', dbPath, '--listen', '127.0.0.1:0'], dir);
    child = c;
    const listening = await c.waitLine(/^patchwarden-collector listening on (\S+) \(agents: (\S+)\)$/, 60_000, 'collector serve');
    const httpUrl = listening[1] ?? '';
    const agentUrl = listening[2] ?? '';
    const pid = c.proc.pid;
    if (pid === undefined) throw new Error('the collector has no pid');
    const alive = (): void => {
      if (c.exit !== null) throw new Error(`the collector ended (${c.exit})\n${c.tail}`);
    };
    // Settle: the collector has just loaded its (empty) advisories.
    await new Promise((r) => setTimeout(r, 500));
    const idleMb = procStatus(pid).rssMb;

    // Phase 1a: enrollment, as `patchwarden-agent enroll` does it: a new key, one connection, closed after.
    progress(`fleet: enrolling ${n} agents (${HANDSHAKE_CONCURRENCY} at a time; each makes its ed25519 key first)`);
    let cpu = cpuMeter(pid);
    const enroll = await pool(n, HANDSHAKE_CONCURRENCY, performance.now() + 60_000 + n * 20, async (i) => {
      const a = agents[i];
      if (a === undefined) throw new Error('unreachable');
      await enrollAgent(agentUrl, enrollToken, a, newKeys());
    });
    const enrollCpu = cpu();
    alive();
    const enrollProblems = enroll.failed > 0 || enroll.timedOut ? [`${enroll.failed} enrollments failed${enroll.timedOut ? ', deadline reached' : ''}: ${enroll.errors.join('; ')}`] : [];
    problems.push(...enrollProblems.map((p) => `enroll: ${p}`));

    // Phase 1b: every enrolled agent connects with a signed hello and stays connected.
    const enrolled = agents.filter((a) => a.agentId !== null && a.keys !== null);
    progress(`fleet: connecting ${enrolled.length} agents with a signed hello; they stay connected`);
    cpu = cpuMeter(pid);
    const connect = await pool(enrolled.length, HANDSHAKE_CONCURRENCY, performance.now() + 60_000 + n * 10, async (i) => {
      const a = enrolled[i];
      if (a === undefined) throw new Error('unreachable');
      links.push(await connectAgent(agentUrl, a));
    });
    const connectCpu = cpu();
    alive();
    const connectProblems = connect.failed > 0 || connect.timedOut ? [`${connect.failed} connects failed${connect.timedOut ? ', deadline reached' : ''}: ${connect.errors.join('; ')}`] : [];
    // Let the gateway's bookkeeping of the last handshakes settle before reading memory.
    await new Promise((r) => setTimeout(r, 1000));
    const live = agents.filter((a) => a.link !== null && a.link.closed === null);
    const connectedMb = procStatus(pid).rssMb;
    const m1 = await scrapeMetrics(httpUrl);
    if (m1.connected !== null && m1.connected !== live.length) connectProblems.push(`the collector counts ${m1.connected} connected agents, the simulator ${live.length}`);
    problems.push(...connectProblems.map((p) => `connect: ${p}`));

    // Phase 2: full reports. Round r of agent i sends variant (i + r) mod VARIANTS, so each
    // report's package set differs from that agent's last one and must be stored.
    const fullRounds = Math.max(1, Math.ceil(MIN_FULL_REPORTS / Math.max(1, live.length)));
    const fullWindow = Math.min(FULL_WINDOW, live.length);
    progress(`fleet: full reports: ${live.length} agents x ${fullRounds}, ${fullWindow} in flight (${(frameBytes.full / 1024).toFixed(0)} KB each)`);
    const usedVariants = new Set<number>();
    const settleMs: Record<string, number | null> = {};
    /**
     * One phase of reports that must each be stored: driven, measured (rate, collector and
     * simulator CPU), checked (every ack `stored`), then the collector's correlation queue
     * waited out so the next phase measures only its own work.
     */
    const storedPhase = async (
      label: string,
      key: string,
      agentsOf: readonly SimAgent[],
      rounds: number,
      deadline: number,
      frame: (i: number, round: number) => Sent,
    ): Promise<ReportPhase> => {
      cpu = cpuMeter(pid);
      const r = await drive(
        agentsOf.map((a) => a.link as Link),
        rounds,
        fullWindow,
        deadline,
        frame,
        ackStatus,
      );
      const phaseCpu = cpu();
      alive();
      const phaseProblems = [...r.problems];
      if ((r.statuses.stored ?? 0) !== r.count) phaseProblems.push(`acks were ${JSON.stringify(r.statuses)}: every ${label} should be stored`);
      settleMs[key] = await settle(httpUrl, STEP_TIMEOUT_MS * 4);
      return { count: r.count, ms: r.ms, perSecond: r.perSecond, window: fullWindow, statuses: r.statuses, latencyMs: r.latencyMs, cpu: phaseCpu, problems: phaseProblems };
    };
    const full = await storedPhase(
      'full report',
      'full',
      live,
      fullRounds,
      // Generous: this machine's floor is a few hundred 2,000-package reports per second.
      performance.now() + 60_000 + live.length * fullRounds * 40,
      (i, round) => {
        const a = live[i] as SimAgent;
        const v = (a.index + round) % VARIANTS;
        usedVariants.add(v);
        return storing(a, fullReport(template, variants[v] as Variant, a));
      },
    );
    const afterFullMb = procStatus(pid).rssMb;
    if (full.count < Math.min(MIN_FULL_REPORTS, live.length * fullRounds)) full.problems.push(`only ${full.count} full reports acked`);
    problems.push(...full.problems.map((p) => `full: ${p}`));

    // Phase 2a: full reports of package sets nobody sent before (one package's version
    // differs per report): every one is parsed, validated, hashed and stored whole.
    const newSetCount = Math.min(NEW_SET_REPORTS, live.length);
    progress(`fleet: preparing ${newSetCount} full reports of package sets new to the collector`);
    const v0packages = (variants[0] as Variant).packages;
    const newSetFrames = live.slice(0, newSetCount).map((a, k) => {
      const packages = v0packages.map((p, i) => (i === k % v0packages.length ? { ...p, version: `${p.version}+pwnew${k}` } : p));
      const inv: Inventory = { ...template, collectedAt: new Date().toISOString(), host: a.host, packages };
      const id = randomUUID();
      const hash = inventoryHash(inv);
      return { id, hash, data: Buffer.from(JSON.stringify({ type: 'report', id, hash, inventory: inv }), 'utf8') };
    });
    progress(`fleet: full reports of new package sets: ${newSetCount} agents x 1, ${fullWindow} in flight`);
    const newSets = await storedPhase('report of a new set', 'newSets', live.slice(0, newSetCount), 1, performance.now() + 60_000 + newSetCount * 40, (i) =>
      storing(live[i] as SimAgent, newSetFrames[i] as { id: string; hash: string; data: Buffer }),
    );
    newSetFrames.length = 0;
    problems.push(...newSets.problems.map((p) => `new sets: ${p}`));

    // Phase 2b: changed inventories whose package set the collector holds (every variant
    // was stored in phase 2), named by reference: what an agent sends first, and all it
    // sends when its new set came from the same image or patch as other hosts'.
    const refRounds = fullRounds * 3;
    progress(`fleet: reports naming a held package set: ${live.length} agents x ${refRounds}, ${fullWindow} in flight (${frameBytes.byReference} bytes each)`);
    const byRef = await storedPhase('report naming a held set', 'byReference', live, refRounds, performance.now() + 60_000 + live.length * refRounds * 10, (i, round) => {
      const a = live[i] as SimAgent;
      const v = (a.index + fullRounds + round) % VARIANTS;
      return storing(a, fullReport(template, variants[v] as Variant, a, true));
    });
    if (usedVariants.size < VARIANTS) byRef.problems.push(`phase 2 stored ${usedVariants.size} of ${VARIANTS} package sets, so some named sets may be unknown`);
    problems.push(...byRef.problems.map((p) => `by reference: ${p}`));
    for (const [phase, ms] of Object.entries(settleMs)) if (ms === null) problems.push(`${phase}: the collector's correlation queue did not drain`);

    // Phase 3: unchanged reports from every agent that has a stored inventory.
    const reported = live.filter((a) => a.hash !== null && a.link?.closed === null);
    const sameRounds = Math.max(1, Math.ceil(MIN_UNCHANGED_REPORTS / Math.max(1, reported.length)));
    const sameWindow = Math.min(UNCHANGED_WINDOW, reported.length);
    progress(`fleet: unchanged reports: ${reported.length} agents x ${sameRounds}, ${sameWindow} in flight`);
    cpu = cpuMeter(pid);
    const same = await drive(
      reported.map((a) => a.link as Link),
      sameRounds,
      sameWindow,
      performance.now() + 120_000,
      (i) => unchangedReport((reported[i] as SimAgent).hash as string),
      ackStatus,
    );
    const sameCpu = cpu();
    alive();
    const afterUnchangedMb = procStatus(pid).rssMb;
    const sameProblems = [...same.problems];
    if ((same.statuses.unchanged ?? 0) !== same.count) sameProblems.push(`acks were ${JSON.stringify(same.statuses)}: every report should be unchanged`);
    if (same.count < Math.min(MIN_UNCHANGED_REPORTS, reported.length * sameRounds)) sameProblems.push(`only ${same.count} unchanged reports acked`);
    problems.push(...sameProblems.map((p) => `unchanged: ${p}`));

    const peak = procStatus(pid).hwmMb;
    const metrics = await scrapeMetrics(httpUrl);
    const storedAcks = full.count + newSets.count + byRef.count;
    if (metrics.stored !== null && metrics.stored !== storedAcks) problems.push(`the collector counts ${metrics.stored} stored reports, the simulator ${storedAcks} acks`);
    if (metrics.unchanged !== null && metrics.unchanged !== same.count) problems.push(`the collector counts ${metrics.unchanged} unchanged reports, the simulator ${same.count} acks`);

    progress('fleet: closing the agents, stopping the collector, reading its store');
    for (const l of links) l.ws.terminate();
    links.length = 0;
    const exit = await c.stop(60_000);
    if (exit !== 'exit 0') problems.push(`the collector ended with ${exit} on SIGTERM`);
    const db = openDatabase(dbPath, { readonly: true });
    try {
      const inspect = new StoreInspection(new SqliteDatabase(db));
      const count = (table: CountedTable): Promise<number> => inspect.rows(table);
      const contents = new Set([...usedVariants].map((v) => variants[v]?.contentHash)).size + newSets.count;
      store = {
        agents: await count('agents'),
        hosts: await count('hosts'),
        reports: await count('reports'),
        maxReportsPerAgent: await inspect.maxReportsPerAgent(),
        contents: await count('inventory_contents'),
        expectedContents: contents,
        advisories: await count('advisories'),
        openFindings: await new FleetSummaryStore(new SqliteDatabase(db)).openFindings(),
        hostsWithFindings: await inspect.hostsWithOpenFindings(),
      };
    } finally {
      db.close();
    }
    if (store.agents !== enroll.count) problems.push(`store: ${store.agents} agents, ${enroll.count} enrollments acknowledged`);
    // Each agent keeps its newest REPORTS_PER_AGENT reports (issue 10): fewer than acked, never more per agent.
    if (store.reports > storedAcks || store.maxReportsPerAgent > REPORTS_PER_AGENT) {
      problems.push(`store: ${store.reports} reports (at most ${store.maxReportsPerAgent} for one agent), ${storedAcks} stored reports acknowledged, ${REPORTS_PER_AGENT} kept per agent`);
    }
    if (store.contents !== store.expectedContents) problems.push(`store: ${store.contents} inventory contents for ${store.expectedContents} distinct package sets: identical inventories are not stored once`);

    const profile = opts.cpuProfDir === null ? null : (readdirSync(opts.cpuProfDir).filter((f) => f.endsWith('.cpuprofile') && f.includes(`.${pid}.`))[0] ?? null);
    return {
      agents: n,
      packages: template.packages.length,
      variants: VARIANTS,
      frameBytes,
      collector: relative(ROOT, collectorJs),
      build: built,
      baselines: { keygenPerSecond, echoConnect: { count: echoBase.connect.count, ms: echoBase.connect.ms, perSecond: echoBase.connect.perSecond }, echo: echoBase.echo, jsonRoundTripPerSecond },
      enroll: { count: enroll.count, ms: enroll.ms, perSecond: enroll.perSecond, cpu: enrollCpu, problems: enrollProblems },
      connect: { count: connect.count, ms: connect.ms, perSecond: connect.perSecond, connected: live.length, cpu: connectCpu, problems: connectProblems },
      full,
      newSets,
      byReference: byRef,
      unchanged: { count: same.count, ms: same.ms, perSecond: same.perSecond, window: sameWindow, statuses: same.statuses, latencyMs: same.latencyMs, cpu: sameCpu, problems: sameProblems },
      correlationCatchUpMs: settleMs,
      rssMb: { idle: idleMb, connected: connectedMb, afterFull: afterFullMb, afterUnchanged: afterUnchangedMb, peak },
      metrics: { ...metrics, connected: m1.connected },
      store,
      collectorLog: { lines: c.lines, warnings: c.warnings, errors: c.errors, exit },
      cpuProfile: profile === null || opts.cpuProfDir === null ? null : join(opts.cpuProfDir, profile),
      problems,
    };
  } finally {
    for (const l of links) l.ws.terminate();
    if (child !== null) await child.stop(10_000);
    temp.remove();
  }
}
