/**
 * An agent that lists several collectors of one fleet (issue 12 §3): two REAL collectors
 * (createCollector) serving the same store, the agent enrolled through one with both in its
 * config. One unreachable at start, then the one serving it closed: each time it is served
 * by the other within about a second (a rotation delay, not a grown backoff), and its
 * report is acknowledged there.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { tokenCommand } from '../../collector/commands/token.ts';
import { createLogger as createCollectorLogger } from '../../collector/logger.ts';
import { type Collector, createCollector } from '../../collector/server.ts';
import { runCaptured } from '../../shared/testing/capture.ts';
import { hostInventory, logSink, tempDir } from '../../shared/testing/daemon-fixtures.ts';
import { Agent } from './agent.ts';
import { loadConfig, loadPrivateKey } from './config.ts';
import { enroll } from './enroll.ts';
import { createLogger } from './log.ts';

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A loopback port nothing listens on: taken, then let go. */
async function deadPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function enrollmentToken(dbPath: string): Promise<string> {
  const r = await runCaptured(tokenCommand, ['create', '--db', dbPath, '--uses', '1', '--ttl', '1h']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

describe('an agent listing several collectors of one fleet', () => {
  it('is served by another collector within a second when one is unreachable or goes away', async (t) => {
    const dir = tempDir(t, 'pw-failover-');
    const dbPath = join(dir, 'collector.db');
    const quiet = createCollectorLogger({ level: 'silent' });
    const first: Collector = await createCollector({ dbPath, listen: '127.0.0.1:0', logger: quiet });
    t.after(() => first.close());
    const second: Collector = await createCollector({ dbPath, listen: '127.0.0.1:0', logger: quiet });
    t.after(() => second.close());
    const dead = `ws://127.0.0.1:${await deadPort()}/v1/agent`;

    const configPath = join(dir, 'agent', 'agent.json');
    await enroll({ collectorUrl: first.agentUrl, collectorUrls: [dead, second.agentUrl], token: await enrollmentToken(dbPath), configPath });
    const config = await loadConfig(configPath);
    assert.deepEqual(config.collectorUrls, [dead, second.agentUrl]);
    const { key } = await loadPrivateKey(config.keyFile);
    const inventory = await hostInventory();
    // A backoff that would show: a grown window would be seconds, a rotation is under 200 ms.
    const agent = await Agent.create({
      config,
      key,
      log: createLogger({ destination: logSink() }),
      collect: () => Promise.resolve({ ...inventory, collectedAt: new Date().toISOString() }),
      watch: [],
      backoff: { baseMs: 200, capMs: 60_000, stableMs: 60_000 },
      handshakeTimeoutMs: 3000,
    });
    t.after(() => agent.stop());
    const served: string[] = [];
    const retries: { delayMs: number; windowMs: number }[] = [];
    let acks = 0;
    agent.on('connected', (w) => served.push(w.collector));
    agent.on('retry', (r) => retries.push(r));
    agent.on('acked', () => acks++);
    void agent.run();

    await until('served and acknowledged', () => served.length >= 1 && acks >= 1);
    const live = [first.agentUrl, second.agentUrl];
    assert.ok(live.includes(served[0] as string), `served by ${served[0]}`);
    // Wherever it started, no retry waited for more than a rotation.
    for (const r of retries) assert.equal(r.windowMs, 200);

    // The collector serving it goes away: the other one serves it, passing over the dead one quickly.
    const serving = served[0] === first.agentUrl ? first : second;
    const other = serving === first ? second : first;
    const ackedBefore = acks;
    const gone = performance.now();
    await serving.close();
    await until('served by the other collector', () => served.length >= 2);
    const tookMs = performance.now() - gone;
    assert.equal(served[1], other.agentUrl);
    assert.ok(retries.length >= 1, 'the lost connection was retried');
    for (const r of retries) assert.equal(r.windowMs, 200, 'moving on never waited for a grown backoff');
    assert.ok(tookMs < 3000, `served again after ${Math.round(tookMs)} ms`);
    agent.checkNow('after failover');
    await until('a report acknowledged by the other collector', () => acks > ackedBefore);
    const host = await other.store.hosts.get(config.agentId);
    assert.equal(host?.packageCount, inventory.packages.length);
  });

  it('refuses a ws:// collector that is not loopback among the extra ones, before the token is spent', async (t) => {
    const dir = tempDir(t, 'pw-failover-');
    await assert.rejects(
      enroll({ collectorUrl: 'ws://127.0.0.1:1/v1/agent', collectorUrls: ['ws://collector-2.example:8443'], token: 'x'.repeat(43), configPath: join(dir, 'agent.json') }),
      { code: 'PW_ERR_CLEARTEXT_REFUSED' },
    );
    const many = Array.from({ length: 16 }, (_, i) => `wss://c${i}.example:8443`);
    await assert.rejects(enroll({ collectorUrl: 'wss://c.example:8443', collectorUrls: many, token: 'x'.repeat(43), configPath: join(dir, 'agent.json') }), {
      code: 'PW_ERR_USAGE',
    });
  });
});
