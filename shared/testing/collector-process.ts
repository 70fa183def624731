/**
 * A collector in its own process (`serve`), so its memory is its own, and the hostile loads
 * measured against it: idle upgrades held open, oversized frames before authentication.
 * Tests and benches only.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { TestAgent } from './fake-agent.ts';
import { OwnedChild } from './owned-child.ts';

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
  /** What it wrote since it started: stderr, and its log on stdout after the line saying where it listens (PATCHWARDEN_LOG_LEVEL=warn); the last 64 KiB. */
  output(): string;
  /** Its first error-level log lines (pino level 50 and up), kept apart: a bench's warnings would push them out of output(). */
  errors(): string[];
}

/** Error-level lines kept per collector. */
const KEPT_ERRORS = 20;

/**
 * Runs `node ENTRY... serve ARGS` (ENTRY: `['--import', 'tsx', 'collector/main.ts']` or a
 * built dist/collector.js) and resolves once it prints where it listens.
 */
export function serveInChild(entry: readonly string[], args: readonly string[], options: { cwd: string; timeoutMs?: number }): Promise<ChildCollector> {
  const child = spawn(process.execPath, [...entry, 'serve', ...args], { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PATCHWARDEN_LOG_LEVEL: 'warn', PATCHWARDEN_FEED_SYNC: 'off' } });
  const owned = new OwnedChild(child);
  const exited = owned.exited;
  const stop = async (): Promise<void> => {
    await owned.stop(10_000);
  };
  let output = '';
  const errors: string[] = [];
  let partial = '';
  const keep = (d: Buffer): void => {
    const text = d.toString('utf8');
    output = (output + text).slice(-65_536);
    if (errors.length >= KEPT_ERRORS) return;
    const lines = (partial + text).split('\n');
    partial = (lines.pop() ?? '').slice(-65_536);
    for (const line of lines) if (errors.length < KEPT_ERRORS && /"level":(5|6)\d/.test(line)) errors.push(line.slice(0, 4000));
  };
  child.stderr.on('data', keep);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`serve did not listen within ${options.timeoutMs ?? 60_000} ms: ${output}`));
    }, options.timeoutMs ?? 60_000);
    let buf = '';
    let listening = false;
    child.stdout.on('data', (d: Buffer) => {
      if (listening) {
        keep(d);
        return;
      }
      buf += d.toString('utf8');
      const m = /^patchwarden-collector listening on (\S+) \(agents: (\S+)\)$/m.exec(buf);
      if (m === null || child.pid === undefined) return;
      clearTimeout(timer);
      listening = true;
      resolve({ pid: child.pid, url: m[1] ?? '', agentUrl: m[2] ?? '', stop, output: () => output, errors: () => [...errors] });
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
