/**
 * A test agent that speaks the wire protocol with a real ws client and real ed25519 keys,
 * and a collector on port 0 with a temporary database. Tests only; the real agent is
 * agent/daemon, which these tests do not wait for.
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { inventoryHash, packageSetHash } from '../../shared/inventory-hash.ts';
import { type CollectorMessage, CollectorMessageSchema, type Inventory, PROTOCOL_VERSION } from '../../shared/protocol.ts';
import { generateKeyPair, helloPayload, type KeyPair, signBytes } from '../../shared/signing.ts';
import { createLogger } from '../logger.ts';
import { type Collector, type CollectorOptions, createCollector } from '../server.ts';

export type Close = { code: number; reason: string };

export class TestAgent {
  readonly ws: WebSocket;
  readonly #queue: CollectorMessage[] = [];
  readonly #waiters: ((m: CollectorMessage | Close) => void)[] = [];
  readonly closed: Promise<Close>;
  #close: Close | undefined;
  /** Every frame the collector sent, as text (binary frames as `<binary>`). */
  readonly received: string[] = [];

  private constructor(ws: WebSocket) {
    this.ws = ws;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.#close = { code, reason: reason.toString('utf8') };
        for (const w of this.#waiters.splice(0)) w(this.#close);
        resolve(this.#close);
      });
    });
    ws.on('error', () => undefined);
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? '<binary>' : (data as Buffer).toString('utf8');
      this.received.push(text);
      // The collector's messages are checked like the real agent checks them: a collector
      // sending something off the contract fails the test here.
      const msg = CollectorMessageSchema.parse(JSON.parse(text));
      const w = this.#waiters.shift();
      if (w !== undefined) w(msg);
      else this.#queue.push(msg);
    });
  }

  /**
   * `localAddress`: the loopback address to connect from (127.0.0.2 looks like another
   * host to the collector). `zeroMask`: frames go out unmasked-in-effect, so a big Buffer
   * sent on many connections is never copied (ws skips masking for a zero key).
   */
  static connect(url: string, options: { autoPong?: boolean; maxPayload?: number; localAddress?: string; zeroMask?: boolean } = {}): Promise<TestAgent> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, {
        autoPong: options.autoPong ?? true,
        maxPayload: options.maxPayload ?? 64 * 1024 * 1024,
        perMessageDeflate: false,
        ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
        ...(options.zeroMask === true ? { generateMask: (mask: Buffer) => mask.fill(0) } : {}),
      });
      const agent = new TestAgent(ws);
      ws.once('open', () => {
        resolve(agent);
      });
      ws.once('unexpected-response', (_req, res) => {
        reject(new Error(`HTTP ${res.statusCode ?? '?'} instead of a WebSocket`));
      });
      ws.once('error', reject);
    });
  }

  /** The next message; rejects when the connection closes first or nothing comes in time. */
  next(timeoutMs = 5000): Promise<CollectorMessage> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#close !== undefined) return Promise.reject(new Error(`connection closed (${this.#close.code} ${this.#close.reason}) before a message came`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`no message within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.push((m) => {
        clearTimeout(timer);
        if ('type' in m) resolve(m);
        else reject(new Error(`connection closed (${m.code} ${m.reason}) before a message came`));
      });
    });
  }

  async expect<T extends CollectorMessage['type']>(type: T, timeoutMs = 5000): Promise<Extract<CollectorMessage, { type: T }>> {
    const m = await this.next(timeoutMs);
    if (m.type !== type) throw new Error(`expected ${type}, got ${JSON.stringify(m)}`);
    return m as Extract<CollectorMessage, { type: T }>;
  }

  send(msg: unknown): void {
    this.ws.send(JSON.stringify(msg));
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  /** The error message (if one came) and the close code of a refused connection. */
  async refusal(timeoutMs = 5000): Promise<{ error: { code: string; message: string } | null; close: Close }> {
    const timer = setTimeout(() => {
      this.ws.terminate();
    }, timeoutMs);
    const close = await this.closed;
    clearTimeout(timer);
    const errors = this.#queue.filter((m) => m.type === 'error');
    const last = errors[errors.length - 1];
    return { error: last === undefined ? null : { code: last.code, message: last.message }, close };
  }

  async challenge(): Promise<string> {
    return (await this.expect('challenge')).nonce;
  }

  /** Enrolls on this connection (challenge, enroll, enrolled, welcome). */
  async enroll(token: string, keys: KeyPair, opts: { hostname?: string; machineId?: string | null } = {}): Promise<{ agentId: string; collectorPublicKey: string }> {
    await this.challenge();
    this.send(enrollMessage(token, keys, opts));
    const enrolled = await this.expect('enrolled');
    await this.expect('welcome');
    return { agentId: enrolled.agentId, collectorPublicKey: enrolled.collectorPublicKey };
  }

  /** Proves the key on this connection; returns the hello it sent (for replay tests) and the welcome. */
  async hello(agentId: string, keys: KeyPair): Promise<{ sent: ReturnType<typeof helloMessage>; welcome: Extract<CollectorMessage, { type: 'welcome' }> }> {
    const nonce = await this.challenge();
    const sent = helloMessage(nonce, agentId, keys);
    this.send(sent);
    return { sent, welcome: await this.expect('welcome') };
  }

  /** Sends a report; null inventory with `hash` means unchanged. */
  sendReport(inventory: Inventory | null, hash = inventory === null ? '' : inventoryHash(inventory), id: string = randomUUID()): string {
    this.send({ type: 'report', id, hash, inventory });
    return id;
  }

  /** Sends a report that names its package set instead of carrying it (protocol 1.1). */
  async reportByReference(inventory: Inventory, packageSet = packageSetHash(inventory.packages), id: string = randomUUID()): Promise<Extract<CollectorMessage, { type: 'ack' }>> {
    this.send({ type: 'report', id, hash: inventoryHash(inventory), inventory: { ...inventory, packages: [] }, packageSet });
    const ack = await this.expect('ack');
    if (ack.id !== id) throw new Error(`ack for ${ack.id}, sent ${id}`);
    return ack;
  }

  async report(inventory: Inventory | null, hash?: string, id?: string): Promise<Extract<CollectorMessage, { type: 'ack' }>> {
    const sent = this.sendReport(inventory, hash, id);
    const ack = await this.expect('ack');
    if (ack.id !== sent) throw new Error(`ack for ${ack.id}, sent ${sent}`);
    return ack;
  }

  close(): Promise<Close> {
    if (this.#close === undefined) this.ws.close(1000);
    return this.closed;
  }
}

export function enrollMessage(token: string, keys: KeyPair, opts: { hostname?: string; machineId?: string | null; protocol?: string } = {}) {
  return {
    type: 'enroll' as const,
    protocol: opts.protocol ?? PROTOCOL_VERSION,
    agentVersion: '0.1.0',
    token,
    publicKey: keys.publicKey,
    hostname: opts.hostname ?? 'test-agent',
    machineId: opts.machineId ?? null,
  };
}

export function helloMessage(nonce: string, agentId: string, keys: KeyPair, protocol = PROTOCOL_VERSION) {
  return { type: 'hello' as const, protocol, agentVersion: '0.1.0', agentId, signature: signBytes(keys.privateKeyPem, helloPayload(nonce, agentId)) };
}

export function newKeys(): KeyPair {
  return generateKeyPair();
}

export interface TestCollector {
  collector: Collector;
  dir: string;
  dbPath: string;
  /** The collector's log lines (pino JSON). */
  logs: string[];
  /** A new enrolled agent, connected and authenticated. */
  agent(hostname?: string): Promise<{ client: TestAgent; agentId: string; keys: KeyPair }>;
}

/** A collector on 127.0.0.1:0 over a temporary database, closed and removed in t.after. */
export async function startCollector(t: { after: (fn: () => Promise<void>) => void }, options: Partial<CollectorOptions> = {}): Promise<TestCollector> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-gateway-'));
  const dbPath = join(dir, 'collector.db');
  const logs: string[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: {
      write(line: string) {
        logs.push(line);
      },
    },
  });
  const collector = await createCollector({ dbPath, listen: '127.0.0.1:0', logger, ...options });
  const clients: TestAgent[] = [];
  t.after(async () => {
    for (const c of clients) c.ws.terminate();
    await collector.close();
    await rm(dir, { recursive: true, force: true });
  });
  return {
    collector,
    dir,
    dbPath,
    logs,
    async agent(hostname = 'good-agent') {
      const { token } = collector.fleet.tokens.create({ uses: 1, ttlMs: 3600_000, createdBy: 'test' });
      const keys = newKeys();
      const client = await TestAgent.connect(collector.agentUrl);
      clients.push(client);
      const { agentId } = await client.enroll(token, keys, { hostname });
      return { client, agentId, keys };
    },
  };
}

/** A real inventory with one package's version changed: a new content hash per `n`. */
export function variant(base: Inventory, n: number): Inventory {
  const packages = base.packages.map((p, i) => (i === n % base.packages.length ? { ...p, version: `${p.version}+pw${n}` } : p));
  return { ...base, packages };
}

export interface IdleFlood {
  /** Upgrades the collector accepted (101), and ones it answered otherwise (503), so far. */
  readonly stats: { upgraded: number; refused: number; open: number };
  /** Stops reopening and destroys every socket. */
  stop(): void;
}

/**
 * Idle WebSocket upgrades, as an attacker holds them: each socket completes the upgrade,
 * then sends nothing. A socket the collector closes is opened again at once; one answered
 * 503 tries again after `retryMs`. Sockets are spread over `addresses` (loopback ones:
 * each looks like another host to the collector).
 */
export function floodIdleUpgrades(url: string, options: { sockets: number; addresses: readonly string[]; retryMs?: number }): IdleFlood {
  const target = new URL(url);
  const port = Number(target.port);
  const request =
    `GET ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
  const stats = { upgraded: 0, refused: 0, open: 0 };
  const sockets = new Set<Socket>();
  let stopped = false;
  const open = (i: number): void => {
    if (stopped) return;
    const socket = connect({ host: target.hostname, port, localAddress: options.addresses[i % options.addresses.length] });
    sockets.add(socket);
    let upgraded = false;
    let head = '';
    socket.on('connect', () => {
      socket.write(request);
    });
    socket.on('data', (d: Buffer) => {
      if (upgraded || head.length > 64) return;
      head += d.toString('latin1');
      if (head.startsWith('HTTP/1.1 101')) {
        upgraded = true;
        stats.upgraded++;
        stats.open++;
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      sockets.delete(socket);
      if (upgraded) stats.open--;
      else stats.refused++;
      if (stopped) return;
      if (upgraded) setImmediate(open, i);
      else setTimeout(open, options.retryMs ?? 1000, i).unref();
    });
  };
  for (let i = 0; i < options.sockets; i++) open(i);
  return {
    stats,
    stop() {
      stopped = true;
      for (const s of sockets) s.destroy();
    },
  };
}

/** A collector as its own process (`serve`), so its memory is its own (/proc/PID/status). */
export interface ChildCollector {
  pid: number;
  url: string;
  agentUrl: string;
  /** SIGTERM, then SIGKILL if it has not exited within 10 s. */
  stop(): Promise<void>;
}

/**
 * Runs `node ENTRY... serve ARGS` (ENTRY: `['--import', 'tsx', 'collector/main.ts']` or a
 * built dist/collector.js) and resolves once it prints where it listens.
 */
export function serveInChild(entry: readonly string[], args: readonly string[], options: { cwd: string; timeoutMs?: number }): Promise<ChildCollector> {
  const child = spawn(process.execPath, [...entry, 'serve', ...args], { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PATCHWARDEN_LOG_LEVEL: 'warn', PATCHWARDEN_FEED_SYNC: 'off' } });
  // A test or bench that dies must not leave a collector running.
  const orphan = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', orphan);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      process.off('exit', orphan);
      resolve();
    });
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  let output = '';
  child.stderr.on('data', (d: Buffer) => (output += d.toString('utf8')));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`serve did not listen within ${options.timeoutMs ?? 60_000} ms: ${output}`));
    }, options.timeoutMs ?? 60_000);
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      const m = /^patchwarden-collector listening on (\S+) \(agents: (\S+)\)$/m.exec(buf);
      if (m === null || child.pid === undefined) return;
      clearTimeout(timer);
      child.stdout.resume();
      resolve({ pid: child.pid, url: m[1] ?? '', agentUrl: m[2] ?? '', stop });
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`serve exited before listening: ${output}${buf}`));
    });
  });
}

/** The process's resident set size now, in MiB (Linux). */
export function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m?.[1] === undefined) throw new Error(`no VmRSS for process ${pid}`);
  return Number(m[1]) / 1024;
}

/** A text frame of exactly `bytes` bytes that is a JSON object shaped like a hello with padding. */
export function paddedHelloFrame(bytes: number): Buffer {
  const head = '{"type":"hello","pad":"';
  const tail = '"}';
  if (bytes < head.length + tail.length) throw new RangeError(`a padded hello is at least ${head.length + tail.length} bytes`);
  const frame = Buffer.alloc(bytes, 'x');
  frame.write(head, 0, 'latin1');
  frame.write(tail, bytes - tail.length, 'latin1');
  return frame;
}

export interface PreAuthFlood {
  /** RSS right before the connections were opened, and the highest sampled until the last closed. */
  startMiB: number;
  peakMiB: number;
  /** How each connection ended: the error code it was sent (null: none) and its close code. */
  refusals: { code: string | null; closeCode: number }[];
  ms: number;
}

/**
 * `connections` unauthenticated connections to a collector in its own process, each sending
 * one `frameBytes` frame after its challenge (all at once); samples the collector's RSS
 * every `sampleMs` until every connection has closed.
 */
export async function preAuthFrameFlood(target: { pid: number; agentUrl: string }, options: { connections: number; frameBytes: number; sampleMs?: number; timeoutMs?: number }): Promise<PreAuthFlood> {
  const frame = paddedHelloFrame(options.frameBytes);
  const startMiB = rssMiB(target.pid);
  let peakMiB = startMiB;
  const sampler = setInterval(() => {
    try {
      peakMiB = Math.max(peakMiB, rssMiB(target.pid));
    } catch {
      // The collector died: the caller finds out from the refusals and its own checks.
    }
  }, options.sampleMs ?? 20);
  const started = performance.now();
  try {
    const clients = await Promise.all(Array.from({ length: options.connections }, () => TestAgent.connect(target.agentUrl, { zeroMask: true, maxPayload: 1 << 20 })));
    await Promise.all(clients.map((c) => c.challenge()));
    for (const c of clients) c.sendRaw(frame);
    const refusals = await Promise.all(
      clients.map(async (c) => {
        const r = await c.refusal(options.timeoutMs ?? 60_000);
        return { code: r.error?.code ?? null, closeCode: r.close.code };
      }),
    );
    peakMiB = Math.max(peakMiB, rssMiB(target.pid));
    return { startMiB, peakMiB, refusals, ms: performance.now() - started };
  } finally {
    clearInterval(sampler);
  }
}

/** A CLI command's stdout and stderr as one text (command functions take `{stdout, stderr}`). */
export function sink(): { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream; text: () => string } {
  let out = '';
  const w = { write: (s: string) => ((out += s), true) } as unknown as NodeJS.WritableStream;
  return { stdout: w, stderr: w, text: () => out };
}

/** Polls `probe` every 20 ms until it gives a value, failing after `ms`; how long it took comes back too. */
export async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  for (;;) {
    const value = await probe();
    const took = performance.now() - start;
    if (value !== undefined) return { value, ms: took };
    if (took > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
