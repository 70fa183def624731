/**
 * The daemon against a real WebSocket collector (fake-collector.ts) on 127.0.0.1, enrolled
 * for real, reporting this host's real inventory (or one the test sets). Tests only.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Inventory } from '../protocol.ts';
import { Agent, type AgentExit, type AgentOptions } from '../../agent/daemon/agent.ts';
import { loadConfig, loadPrivateKey } from '../../agent/daemon/config.ts';
import { enroll } from '../../agent/daemon/enroll.ts';
import { createLogger } from '../../agent/daemon/log.ts';
import { FakeCollector } from './fake-collector.ts';
import { hostInventory, logSink, tempDir } from './daemon-fixtures.ts';

export async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Until the collector has `n` reports and the agent has processed their acks (an event could fire before a listener is on). */
export function delivered(s: { collector: FakeCollector; agent: Agent }, n: number): Promise<void> {
  return until(`${n} reports acked`, () => s.collector.reports.length >= n && s.agent.spool.size === 0);
}

export interface Setup {
  collector: FakeCollector;
  agent: Agent;
  run: Promise<AgentExit>;
  sink: ReturnType<typeof logSink>;
  configPath: string;
  spoolDir: string;
  setInventory: (i: Inventory) => void;
  newAgent: (extra?: Partial<AgentOptions>) => Promise<{ agent: Agent; run: Promise<AgentExit> }>;
}

export async function setup(
  t: { after: (fn: () => unknown) => void },
  opts: { spoolMaxBytes?: number; intervalSeconds?: number; agent?: Partial<AgentOptions>; start?: boolean; heartbeatSeconds?: number } = {},
): Promise<Setup> {
  const collector = await FakeCollector.start({ heartbeatSeconds: opts.heartbeatSeconds ?? 30 });
  t.after(() => collector.stop());
  const dir = tempDir(t);
  const configPath = join(dir, 'agent.json');
  await enroll({
    collectorUrl: collector.url,
    token: collector.createToken(),
    configPath,
    ...(opts.spoolMaxBytes === undefined ? {} : { spoolMaxBytes: opts.spoolMaxBytes }),
    ...(opts.intervalSeconds === undefined ? {} : { intervalSeconds: opts.intervalSeconds }),
  });
  const config = await loadConfig(configPath);
  const { key } = await loadPrivateKey(config.keyFile);
  const sink = logSink();
  let current = await hostInventory();
  const newAgent = async (extra: Partial<AgentOptions> = {}, start = true): Promise<{ agent: Agent; run: Promise<AgentExit> }> => {
    const agent = await Agent.create({
      config,
      key,
      log: createLogger({ destination: sink }),
      collect: () => Promise.resolve({ ...current, collectedAt: new Date().toISOString() }),
      backoff: { baseMs: 20, capMs: 200, stableMs: 60_000 },
      watch: [],
      handshakeTimeoutMs: 3000,
      ...opts.agent,
      ...extra,
    });
    t.after(() => agent.stop());
    return { agent, run: start ? agent.run() : Promise.resolve({ reason: 'stopped' }) };
  };
  // start: false leaves the first agent idle, for tests that set the collector up first and then call newAgent().
  const { agent, run } = await newAgent({}, opts.start !== false);
  return {
    collector,
    agent,
    run,
    sink,
    configPath,
    spoolDir: config.spoolDir,
    setInventory: (i) => {
      current = i;
    },
    newAgent,
  };
}

