/**
 * A real collector (createCollector) on 127.0.0.1:0 over a temporary database, with enrolled
 * test agents on demand; and the small waits and sinks the collector's tests share.
 * Tests only.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Inventory } from '../protocol.ts';
import type { KeyPair } from '../signing.ts';
import { createLogger } from '../../collector/logger.ts';
import { type Collector, type CollectorOptions, createCollector } from '../../collector/server.ts';
import { newKeys, TestAgent } from './fake-agent.ts';

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
      const { token } = await collector.store.tokens.create({ uses: 1, ttlMs: 3600_000, createdBy: 'test' });
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
