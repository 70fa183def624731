/**
 * A throwaway PostgreSQL cluster for tests and benches (issue 12): Debian's `postgresql`
 * package's binaries, `initdb` in a fresh temporary directory, the server listening on
 * 127.0.0.1 on a free port and on a unix socket in that directory. PostgreSQL refuses to
 * run as root, so a root process (CI) runs it as the `postgres` user through `runuser`,
 * and gives that user the directory. Callers skip with `{ skip: needs(TOOLS.postgres) }`
 * (system-tools.ts). Tests only.
 *
 * The server is spawned directly, not through pg_ctl: its pid is then ours to signal, and a
 * crash (`kill()`) is a real SIGKILL of the postmaster and its backends, which the "restarted
 * under load" fault tests need.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { POSTGRES_USER, postgresBinDir, userIds } from './system-tools.ts';
import { atExit } from './owned-child.ts';

const run = promisify(execFile);

export interface StartOptions {
  /**
   * fsync on, as a production server runs (a bench comparing engines must pay for durability
   * on both sides). Off by default: tests need speed, not safety from a crash of the machine.
   * synchronous_commit stays on either way: a commit returns once its WAL is written to the
   * OS, so a killed server (kill(), the fault tests) loses nothing acknowledged; with it off
   * a SIGKILL lost the last commits.
   */
  durable?: boolean;
  /** More `-c name=value` server settings. */
  settings?: Readonly<Record<string, string>>;
  /** How long start-up (initdb, then the server accepting connections) may take. */
  timeoutMs?: number;
}

export interface Postgres {
  /** `postgres://postgres@127.0.0.1:PORT/postgres`: superuser, trust authentication. */
  readonly url: string;
  /** The unix socket's directory (also the cluster's temporary directory): `host=` for libpq and pg. */
  readonly socketDir: string;
  readonly port: number;
  /** Fast shutdown (SIGINT), waits for the server to exit, removes the temporary directory. Idempotent. */
  stop(): Promise<void>;
  /** Fast shutdown and start again on the same port and data: connections are cut, data stays. */
  restart(): Promise<void>;
  /**
   * SIGKILL to the postmaster and every backend, as an OOM kill or a crash would: nothing is
   * flushed or checkpointed; `start()` then runs crash recovery from the WAL.
   */
  kill(): Promise<void>;
  /** Starts the server again after `kill()` or a stop of the server alone (restart uses it). */
  start(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 60_000;

/** A port free on 127.0.0.1 now (the kernel picks it); PostgreSQL binds it a moment later. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => {
        if (typeof addr === 'object' && addr !== null) resolve(addr.port);
        else reject(new Error('no port'));
      });
    });
  });
}

/** The postmaster's pid, from the first line of postmaster.pid; undefined when it is not running. */
function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Pids whose parent is `ppid`, from /proc (the backends of a postmaster). */
function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // Field 4 is the parent pid; the command (field 2) is in parentheses and may hold spaces.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === ppid) out.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** Alive and not a zombie (a container's pid 1 may never reap the orphans). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** Runs a PostgreSQL binary as ourselves, or as the postgres user when we are root. */
function asOwner(binary: string, args: readonly string[]): { file: string; args: string[] } {
  return process.getuid?.() === 0 ? { file: 'runuser', args: ['-u', POSTGRES_USER, '--', binary, ...args] } : { file: binary, args: [...args] };
}

/**
 * Makes a cluster and starts it. Throws when PostgreSQL is not installed: check
 * `needs(TOOLS.postgres)` first. Call `stop()` (in `t.after`) to remove it.
 */
export async function startPostgres(options: StartOptions = {}): Promise<Postgres> {
  const bin = postgresBinDir();
  if (bin === null) throw new Error('PostgreSQL is not installed: apt-get install postgresql');
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const dir = mkdtempSync(join(tmpdir(), 'pw-pg-'));
  const dataDir = join(dir, 'data');
  let server: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let stderrTail = '';
  let removed = false;

  // A test process that dies without stop() would leave a server running: quit it on the way out.
  const onExit = (): void => {
    const pid = postmasterPid(dataDir);
    if (pid !== undefined) signal(pid, 'SIGQUIT');
  };
  const forgetExit = atExit(onExit);

  try {
    if (process.getuid?.() === 0) {
      const ids = userIds(POSTGRES_USER);
      if (ids === null) throw new Error(`no ${POSTGRES_USER} user to run PostgreSQL as (root may not): apt-get install postgresql`);
      // mkdtemp made it 0700 root: the server writes its data and socket here.
      chownSync(dir, ids.uid, ids.gid);
    }
    const init = asOwner(join(bin, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']);
    await run(init.file, init.args, { cwd: dir, timeout: timeoutMs, env: { ...process.env, LC_ALL: 'C' } });
  } catch (err) {
    forgetExit();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  // The port is free when asked, and may be taken before PostgreSQL binds it (another test
  // process asking at the same moment): start-up then fails with "Address already in use",
  // and is tried again on another port (below).
  let port = await freePort();
  const durable = options.durable ?? false;
  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    port: String(port),
    unix_socket_directories: dir,
    fsync: durable ? 'on' : 'off',
    synchronous_commit: 'on',
    full_page_writes: durable ? 'on' : 'off',
    // Enough for a bench's pool and a few replicas; the default 100 is fine too but costs shared memory.
    max_connections: '100',
    ...options.settings,
  };
  const argsFor = (): string[] => ['-D', dataDir, ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
  let serverArgs = argsFor();
  let url = `postgres://postgres@127.0.0.1:${port}/postgres`;

  const start = async (): Promise<void> => {
    if (server !== undefined) throw new Error('PostgreSQL is already running');
    const cmd = asOwner(join(bin, 'postgres'), serverArgs);
    const child = spawn(cmd.file, cmd.args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    server = child;
    stderrTail = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-4000);
    });
    const state = { gone: false };
    exited = new Promise((resolve) => {
      // A spawn failure ('error') ends the server as an exit does.
      const gone = (): void => {
        state.gone = true;
        if (server === child) server = undefined;
        resolve();
      };
      child.once('exit', gone);
      child.once('error', gone);
    });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (state.gone) throw new Error(`PostgreSQL exited during start-up: ${stderrTail.trim()}`);
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
      try {
        await client.connect();
        await client.query('SELECT 1');
        return;
      } catch (err) {
        if (Date.now() > deadline) {
          await shutdown('SIGKILL');
          throw new Error(`PostgreSQL did not accept connections within ${timeoutMs} ms (${(err as Error).message}): ${stderrTail.trim()}`);
        }
      } finally {
        await client.end().catch(() => undefined);
      }
      await sleep(50);
    }
  };

  /** SIGINT: fast shutdown (backends cut, a checkpoint). SIGKILL: the postmaster and its backends, no warning. */
  const shutdown = async (how: 'SIGINT' | 'SIGKILL'): Promise<void> => {
    if (server === undefined) return;
    const pid = postmasterPid(dataDir) ?? server.pid;
    if (pid === undefined) return;
    // Read before the kill: orphaned backends get another parent.
    const backends = how === 'SIGKILL' ? childrenOf(pid) : [];
    if (how === 'SIGKILL') {
      signal(pid, 'SIGKILL');
      for (const b of backends) signal(b, 'SIGKILL');
    } else {
      signal(pid, 'SIGINT');
    }
    const timer = setTimeout(() => {
      signal(pid, 'SIGKILL');
      for (const b of childrenOf(pid)) signal(b, 'SIGKILL');
    }, 30_000);
    try {
      await exited;
    } finally {
      clearTimeout(timer);
    }
    if (how === 'SIGKILL') {
      // Backends die a moment after the postmaster; a new postmaster refuses to start while
      // any is still attached to the old shared memory.
      const deadline = Date.now() + 10_000;
      while (backends.some(running) && Date.now() < deadline) await sleep(20);
    }
  };

  try {
    for (let attempt = 1; ; attempt++) {
      try {
        await start();
        break;
      } catch (err) {
        if (attempt >= 5 || !/Address already in use/.test((err as Error).message)) throw err;
        port = await freePort();
        settings.port = String(port);
        serverArgs = argsFor();
        url = `postgres://postgres@127.0.0.1:${port}/postgres`;
      }
    }
  } catch (err) {
    forgetExit();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  return {
    url,
    socketDir: dir,
    port,
    start,
    async stop() {
      if (removed) return;
      await shutdown('SIGINT');
      removed = true;
      forgetExit();
      rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await shutdown('SIGINT');
      await start();
    },
    async kill() {
      await shutdown('SIGKILL');
    },
  };
}
