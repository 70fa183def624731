/**
 * A collector replica in a process of its own, on a PostgreSQL store, so a test can
 * SIGKILL it as a machine's crash would (no close, no goodbye to the database or the
 * agents) while the other replicas run in the test's own process. Tests only.
 *
 *   const victim = await replicaInChild({ url, keyFile, replicaLeaseMs: 1500 });
 *   ... victim.agentUrl, victim.replica ...
 *   await victim.kill();
 *
 * Run as a script it is the child: it serves until killed (SIGTERM closes it cleanly).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { OwnedChild } from './owned-child.ts';

export interface ReplicaChildOptions {
  /** The PostgreSQL store's URL. */
  url: string;
  /** The collector's signing key, shared by every replica (made by the first). */
  keyFile: string;
  replicaLeaseMs?: number;
}

export interface ReplicaChild {
  pid: number;
  agentUrl: string;
  /** Its replica id (`host:pid:random`): what it writes into `agents.connected_by`. */
  replica: string;
  /** SIGKILL, and the process gone. */
  kill(): Promise<void>;
  /** SIGTERM: a clean close. */
  stop(): Promise<void>;
}

const READY = /^replica ready (\S+) (\S+)$/m;

export function replicaInChild(options: ReplicaChildOptions, timeoutMs = 60_000): Promise<ReplicaChild> {
  const root = join(import.meta.dirname, '..', '..');
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'replica-child.ts'), JSON.stringify(options)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const owned = new OwnedChild(child);
  let output = '';
  child.stderr.on('data', (d: Buffer) => (output += d.toString('utf8')));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the replica did not start within ${timeoutMs} ms: ${output}`));
    }, timeoutMs);
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      const m = READY.exec(buf);
      if (m === null || child.pid === undefined) return;
      clearTimeout(timer);
      resolve({
        pid: child.pid,
        agentUrl: m[1] ?? '',
        replica: m[2] ?? '',
        kill: async () => {
          await owned.stop(0, () => child.kill('SIGKILL'));
        },
        stop: async () => {
          await owned.stop(10_000);
        },
      });
    });
    void owned.exited.then((how) => {
      clearTimeout(timer);
      reject(new Error(`the replica ended (${how}) before it served: ${output}${buf}`));
    });
  });
}

async function main(): Promise<void> {
  const { parseConfig } = await import('../../collector/config.ts');
  const { createLogger } = await import('../../collector/logger.ts');
  const { createCollector } = await import('../../collector/server.ts');
  const options = JSON.parse(process.argv[2] ?? '{}') as ReplicaChildOptions;
  const collector = await createCollector({
    dbPath: join(process.cwd(), 'unused.db'),
    listen: '127.0.0.1:0',
    config: parseConfig({ feedSync: false, keyFile: options.keyFile, store: { kind: 'postgres', url: options.url, maxConnections: 4 } }),
    logger: createLogger({ level: 'silent' }),
    ...(options.replicaLeaseMs === undefined ? {} : { replicaLeaseMs: options.replicaLeaseMs }),
  });
  process.once('SIGTERM', () => {
    void collector.close().then(() => process.exit(0));
  });
  process.stdout.write(`replica ready ${collector.agentUrl} ${collector.duties.replica}\n`);
}

if (process.argv[1] === import.meta.filename) await main();
