/**
 * The guard every bench and test needs around what it runs apart from itself (a collector,
 * the scale bench's agent workers, the ws echo server) and around its temporary
 * directory: a run that dies of an uncaught exception or process.exit must not leave a
 * process holding sockets and ports, or a directory of databases behind. Node runs 'exit'
 * listeners on those paths (not on a signal: a caller that wants Ctrl-C covered turns it
 * into process.exit, as bench-scale.ts does). Tests and benches only.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Runs `fn` when this process exits unless the returned function is called first. One
 * 'exit' listener serves them all: a bench owning a dozen children and directories (the
 * scale bench: seven workers, three replicas, a cluster) passed Node's ten-listener warning.
 */
export function atExit(fn: () => void): () => void {
  if (exitHooks.size === 0) process.once('exit', runExitHooks);
  exitHooks.add(fn);
  return () => {
    exitHooks.delete(fn);
    if (exitHooks.size === 0) process.off('exit', runExitHooks);
  };
}

const exitHooks = new Set<() => void>();

function runExitHooks(): void {
  const hooks = [...exitHooks];
  exitHooks.clear();
  for (const fn of hooks) {
    try {
      fn();
    } catch {
      // Each hook is best effort on the way out; the others still run.
    }
  }
}

/** A child process killed with SIGKILL if this process exits first. */
export class OwnedChild {
  readonly proc: ChildProcess;
  /** How it ended: `exit N`, `signal SIGX`, or `spawn failed: ...`. */
  readonly exited: Promise<string>;
  #exit: string | null = null;

  constructor(proc: ChildProcess) {
    this.proc = proc;
    const forget = atExit(() => {
      proc.kill('SIGKILL');
    });
    this.exited = new Promise((resolve) => {
      const ended = (how: string): void => {
        if (this.#exit !== null) return;
        forget();
        this.#exit = how;
        resolve(how);
      };
      proc.once('exit', (code, signal) => {
        ended(signal === null ? `exit ${code ?? '?'}` : `signal ${signal}`);
      });
      // Without a pid it never started and no 'exit' follows; with one, an 'error' is a
      // failed kill or IPC send, for the caller to handle, and 'exit' still comes.
      proc.on('error', (err) => {
        if (proc.pid === undefined) ended(`spawn failed: ${err.message}`);
      });
    });
  }

  /** How it ended, or null while it runs. */
  get exit(): string | null {
    return this.#exit;
  }

  /** `ask` it to end (SIGTERM unless told), SIGKILL after `graceMs`; resolves with how it ended. */
  async stop(graceMs: number, ask: () => void = () => this.proc.kill('SIGTERM')): Promise<string> {
    if (this.#exit !== null) return this.#exit;
    ask();
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }
}

/** A new directory under the system's temporary one, removed with everything in it by remove() or when this process exits. */
export function ownedTempDir(prefix: string): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  const removeDir = (): void => {
    rmSync(path, { recursive: true, force: true });
  };
  const forget = atExit(removeDir);
  return {
    path,
    remove: () => {
      forget();
      removeDir();
    },
  };
}
