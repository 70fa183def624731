/**
 * The one way a handler runs a command: an argument array (never a shell), a fixed
 * environment, a timeout, and only the tail of the output kept.
 *
 * `spawn` rather than `execFile`: execFile buffers stdout and stderr apart (so their order
 * is lost) and kills the child once `maxBuffer` is passed, and an `apt-get upgrade` of a
 * kernel prints megabytes. Here both streams feed one bounded tail as they arrive. Same
 * safety: no shell, arguments passed as given.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { OUTPUT_TAIL_BYTES } from '../../../shared/instructions.ts';
import { resolveInRoot } from '../../inventory/context.ts';
import type { CommandRecord, HandlerContext } from '../handler.ts';

/** /snap/bin: Ubuntu ships canonical-livepatch as a snap. */
export const HANDLER_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin';

/**
 * The whole environment of a handler's command: nothing is inherited, so no secret in the
 * agent's environment (a token, a proxy password) reaches a maintainer script.
 */
export const HANDLER_ENV: Readonly<Record<string, string>> = Object.freeze({
  PATH: HANDLER_PATH,
  LC_ALL: 'C',
  LANG: 'C',
  // debconf, apt-listchanges and needrestart all prompt on a terminal or with their
  // defaults; each has its own switch. needrestart's `l` lists and restarts nothing:
  // restarts and reboots are the collector's decision, not a side effect of a patch.
  DEBIAN_FRONTEND: 'noninteractive',
  APT_LISTCHANGES_FRONTEND: 'none',
  NEEDRESTART_MODE: 'l',
  TERM: 'dumb',
});

/**
 * The only variables taken from the agent's own environment: the proxy a site sets on the
 * agent's unit (`Environment=https_proxy=…`) is how apt, dnf, zypper and apk reach their
 * mirrors there. Nothing else is passed on.
 */
export const PROXY_VARIABLES = Object.freeze(['http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY']);

/** HANDLER_ENV plus the proxy variables the agent was started with. */
export function handlerEnv(from: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = { ...HANDLER_ENV };
  for (const name of PROXY_VARIABLES) {
    const value = from[name];
    if (value !== undefined && value !== '') env[name] = value;
  }
  return env;
}

/** After the timeout's SIGTERM, how long a command gets to stop before SIGKILL (dpkg finishing the package it is unpacking). */
export const KILL_GRACE_MS = 10_000;

export interface CommandRun {
  /** What the result reports. `argv` is what really ran, `chroot ROOT` included. */
  record: CommandRecord;
  timedOut: boolean;
  /** Stopped (or never started) because ctx.signal was aborted. */
  aborted: boolean;
  /** The program does not exist (in the root, for a chroot). */
  notFound: boolean;
}

export interface RunOptions {
  /** Bytes of output kept; default OUTPUT_TAIL_BYTES. */
  tailBytes?: number;
  /** Grace between SIGTERM and SIGKILL; default KILL_GRACE_MS. */
  killGraceMs?: number;
}

/** The last `limit` bytes of a stream of chunks, holding at most about 2 * limit at once. */
class Tail {
  private chunks: Buffer[] = [];
  private held = 0;
  total = 0;
  constructor(private readonly limit: number) {}
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.held += chunk.length;
    this.total += chunk.length;
    if (this.held > 2 * this.limit) this.compact();
  }
  private compact(): void {
    const all = Buffer.concat(this.chunks, this.held);
    const kept = all.subarray(Math.max(0, all.length - this.limit));
    this.chunks = [Buffer.from(kept)];
    this.held = kept.length;
  }
  text(): string {
    this.compact();
    const body = (this.chunks[0] ?? Buffer.alloc(0)).toString('utf8');
    const dropped = this.total - this.held;
    return dropped > 0 ? `[${dropped} earlier bytes not kept]\n${body}` : body;
  }
}

/** `chroot ROOT` in front of the command when the handler works on another root. */
export function commandArgv(argv: readonly string[], root: string): string[] {
  return root === '/' ? [...argv] : ['chroot', root, ...argv];
}

/**
 * Runs one command and never throws: a missing program, a non-zero exit, a timeout and an
 * abort all come back as a CommandRun for the handler to judge.
 */
export function runCommand(argv: readonly string[], ctx: Pick<HandlerContext, 'root' | 'timeoutMs' | 'signal'>, options: RunOptions = {}): Promise<CommandRun> {
  const full = commandArgv(argv, ctx.root);
  const [file, ...args] = full as [string, ...string[]];
  const tail = new Tail(options.tailBytes ?? OUTPUT_TAIL_BYTES);
  const started = process.hrtime.bigint();
  const done = (exitCode: number | null, signal: string | null, flags: Omit<CommandRun, 'record'>): CommandRun => ({
    record: { argv: full, exitCode, signal, durationMs: Number(process.hrtime.bigint() - started) / 1e6, outputTail: tail.text() },
    ...flags,
  });
  if (ctx.signal.aborted) {
    tail.push(Buffer.from('not started: the agent is shutting down\n'));
    return Promise.resolve(done(null, null, { timedOut: false, aborted: true, notFound: false }));
  }
  return new Promise((resolve) => {
    let timedOut = false;
    let aborted = false;
    let killTimer: NodeJS.Timeout | undefined;
    // Its own process group, so a timeout stops apt-get's dpkg and maintainer scripts too,
    // not only the process we started.
    const child = spawn(file, args, { env: handlerEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true, windowsHide: true });
    const stop = (): void => {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      signalGroup(child.pid, 'SIGTERM');
      killTimer ??= setTimeout(() => {
        if (child.pid !== undefined) signalGroup(child.pid, 'SIGKILL');
      }, options.killGraceMs ?? KILL_GRACE_MS);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      tail.push(Buffer.from(`\n[patchwarden: timed out after ${ctx.timeoutMs} ms, sent SIGTERM]\n`));
      stop();
    }, ctx.timeoutMs);
    const onAbort = (): void => {
      aborted = true;
      tail.push(Buffer.from('\n[patchwarden: the agent is shutting down, sent SIGTERM]\n'));
      stop();
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (c: Buffer) => {
      tail.push(c);
    });
    child.stderr.on('data', (c: Buffer) => {
      tail.push(c);
    });
    let spawnError: NodeJS.ErrnoException | null = null;
    child.on('error', (err: NodeJS.ErrnoException) => {
      spawnError = err;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      ctx.signal.removeEventListener('abort', onAbort);
      // The group may outlive its leader (a daemon a maintainer script started); a timed-out
      // or aborted command leaves nothing behind.
      if ((timedOut || aborted) && child.pid !== undefined) signalGroup(child.pid, 'SIGKILL');
      const err = spawnError;
      if (err !== null) {
        tail.push(Buffer.from(`${file}: ${err.message}\n`));
        resolve(done(null, null, { timedOut, aborted, notFound: err.code === 'ENOENT' }));
        return;
      }
      // chroot exits 127 when the command does not exist inside the root, and says so.
      const notFound = ctx.root !== '/' && code === 127 && /chroot: failed to run command/.test(tail.text());
      resolve(done(code, signal, { timedOut, aborted, notFound }));
    });
  });
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already.
  }
}

/**
 * Whether `name` is an executable file in HANDLER_PATH inside `root`, following symlinks
 * as they resolve inside it (/usr/bin/yum -> dnf-3). Used to pick a handler without
 * spawning anything.
 */
export async function findProgram(root: string, name: string): Promise<string | null> {
  for (const dir of HANDLER_PATH.split(':')) {
    const inside = join(dir, name);
    try {
      const real = await resolveInRoot(root, inside);
      if (!(await stat(real)).isFile()) continue;
      await access(real, constants.X_OK);
      return inside;
    } catch {
      // not in this directory
    }
  }
  return null;
}
