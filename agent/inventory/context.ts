/**
 * What every inventory source gets: the root to read (`/` or a mounted image), a way to
 * run commands (execFile only, argument arrays, timeout, maxBuffer) and a warning sink.
 * Sources never throw for a missing or unreadable input: they warn and return what they
 * have, so one broken source never costs the whole inventory.
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, lstat, open, readlink } from 'node:fs/promises';
import { isAbsolute, join, posix } from 'node:path';
import { CommandFailedError, errorMessage, InputTooLargeError, SourceUnavailableError } from '../../shared/errors.ts';
import { type InventoryWarning, LIMITS } from '../../shared/protocol.ts';

export interface CommandResult {
  stdout: string;
  stderr: string;
  /** Exit status; commands that exit non-zero are returned, not thrown (rpm -q does that). */
  status: number;
}

export interface RunOptions {
  timeoutMs?: number;
  maxBuffer?: number;
  env?: NodeJS.ProcessEnv;
}

/** Runs a program with an argument array; `null` when the program is not installed. */
export type CommandRunner = (file: string, args: readonly string[], options?: RunOptions) => Promise<CommandResult | null>;

export interface InventoryContext {
  /** Absolute path of the root file system being inventoried; `/` for this machine. */
  readonly root: string;
  readonly run: CommandRunner;
  warn(warning: InventoryWarning): void;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_BUFFER = 64 * 1024 * 1024;
/** Status files of real hosts are a few MB; 256 MiB is far past any real one. */
export const MAX_FILE_BYTES = 256 * 1024 * 1024;

const found = new Map<string, Promise<boolean>>();

/**
 * Whether `file` is an executable on PATH (or, with a slash, at that path). Most probes
 * (kcarectl, kpatch, needs-restarting) are absent on most hosts; a look at PATH costs
 * microseconds where a failed spawn costs milliseconds of fork.
 */
export function onPath(file: string, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const key = `${file}\u0000${env.PATH ?? ''}`;
  let p = found.get(key);
  if (p === undefined) {
    const candidates = file.includes('/') ? [file] : (env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').filter((d) => d !== '').map((d) => join(d, file));
    p = (async () => {
      for (const c of candidates) {
        try {
          await access(c, constants.X_OK);
          return true;
        } catch {
          // next directory
        }
      }
      return false;
    })();
    found.set(key, p);
  }
  return p;
}

export const runCommand: CommandRunner = async (file, args, options = {}) => {
  if (!(await onPath(file, options.env))) return null;
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        maxBuffer: options.maxBuffer ?? DEFAULT_MAX_BUFFER,
        env: options.env ?? { ...process.env, LC_ALL: 'C' },
        encoding: 'utf8',
        windowsHide: true,
      },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve({ stdout, stderr, status: 0 });
          return;
        }
        const e = error as NodeJS.ErrnoException & { code?: string | number; killed?: boolean; signal?: string };
        if (e.code === 'ENOENT') {
          resolve(null);
          return;
        }
        if (typeof e.code === 'number' && !e.killed) {
          resolve({ stdout, stderr, status: e.code });
          return;
        }
        const why = e.killed ? `killed (${e.signal ?? 'timeout'})` : (e.code ?? e.message);
        reject(new CommandFailedError(`${file} ${args.join(' ')}: ${why}`, { cause: error }));
      },
    );
  });
};

const MAX_SYMLINKS = 40;

/**
 * Resolves `path` inside `root` as the kernel would after chroot(root): absolute symlinks
 * restart at root and `..` never climbs above it. Container images and mounted roots are
 * full of absolute links (/etc/os-release -> /usr/lib/os-release) that would otherwise
 * point at the host's own files.
 */
export async function resolveInRoot(root: string, path: string): Promise<string> {
  if (root === '/') return path;
  const pending = path.split('/').filter((p) => p !== '' && p !== '.');
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '..') {
      done.pop();
      continue;
    }
    const candidate = join(root, ...done, part);
    let isLink = false;
    try {
      isLink = (await lstat(candidate)).isSymbolicLink();
    } catch {
      // Missing component: the open() that follows reports it with the real path.
      done.push(part, ...pending.filter((p) => p !== '.'));
      break;
    }
    if (!isLink) {
      done.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS) throw new SourceUnavailableError(`too many symbolic links resolving ${path} in ${root}`);
    const target = await readlink(candidate);
    if (isAbsolute(target)) done.length = 0;
    pending.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'));
  }
  return join(root, ...done);
}

/** The path inside the inventoried root, for messages. */
export function displayPath(ctx: InventoryContext, path: string): string {
  return ctx.root === '/' ? path : posix.join(ctx.root, path);
}

/**
 * Reads a file inside the root, refusing files over `maxBytes` (a huge or endless file,
 * /dev/zero linked in by a hostile image). `null` when it does not exist.
 */
export async function readRootFile(ctx: InventoryContext, path: string, maxBytes = MAX_FILE_BYTES): Promise<Buffer | null> {
  const real = await resolveInRoot(ctx.root, path);
  let handle;
  try {
    handle = await open(real, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw new SourceUnavailableError(`cannot open ${displayPath(ctx, path)}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const info = await handle.stat();
    if (!info.isFile() && !info.isCharacterDevice()) {
      throw new SourceUnavailableError(`${displayPath(ctx, path)} is not a regular file`);
    }
    // /proc files report size 0 and files can grow while read, so read until EOF up to the
    // limit whatever stat says; size the first read from stat to avoid copying.
    const chunks: Buffer[] = [];
    let total = 0;
    let want = info.size > 0 ? Math.min(info.size + 1, maxBytes + 1) : 64 * 1024;
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(want, maxBytes + 1 - total));
      const { bytesRead } = await handle.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > maxBytes) throw new InputTooLargeError(`${displayPath(ctx, path)} is larger than ${maxBytes} bytes`);
      chunks.push(buf.subarray(0, bytesRead));
      want = 1 << 20;
    }
    return Buffer.concat(chunks, total);
  } catch (err) {
    if (err instanceof SourceUnavailableError || err instanceof InputTooLargeError) throw err;
    throw new SourceUnavailableError(`cannot read ${displayPath(ctx, path)}: ${(err as Error).message}`, { cause: err });
  } finally {
    await handle.close();
  }
}

/**
 * A package database file: its bytes, `null` when the root has none, or `'unreadable'`
 * (warned with `code`) when it exists and cannot be read: the host still uses that
 * package manager, so the caller reports no packages rather than a different format.
 */
export async function readDatabaseFile(ctx: InventoryContext, path: string, source: string, code: string): Promise<Buffer | null | 'unreadable'> {
  try {
    return await readRootFile(ctx, path);
  } catch (err) {
    ctx.warn({ source, code, message: errorMessage(err).slice(0, LIMITS.text) });
    return 'unreadable';
  }
}

/** A context that collects warnings in an array; used by the inventory and by tests. */
export function createContext(root: string, options: { run?: CommandRunner } = {}): InventoryContext & { warnings: InventoryWarning[] } {
  const warnings: InventoryWarning[] = [];
  return {
    root,
    run: options.run ?? runCommand,
    warnings,
    warn(w) {
      warnings.push(w);
    },
  };
}

/**
 * Counts the entries a parser skips and, when asked, turns them into ONE warning with the
 * count and the first reason: a database with 10,000 bad records must not make 10,000
 * warnings.
 */
export function skipCounter(): { onSkip: (reason: string) => void; warnIfAny: (ctx: InventoryContext, w: { source: string; code: string; what: string }) => void } {
  let skipped = 0;
  let first = '';
  return {
    onSkip: (reason) => {
      if (skipped++ === 0) first = reason;
    },
    warnIfAny: (ctx, w) => {
      if (skipped === 0) return;
      ctx.warn({ source: w.source, code: w.code, message: `skipped ${skipped} ${w.what}, for example ${first}`.slice(0, 4096) });
    },
  };
}
