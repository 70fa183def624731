import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it, type TestContext } from 'node:test';
import { collectInventory } from '../agent/inventory/inventory.ts';
import type { Inventory } from '../shared/protocol.ts';
import { newKeys, TestAgent } from '../shared/testing/fake-agent.ts';
import { startCollector } from '../shared/testing/collector-harness.ts';
import { captureLogger } from '../shared/testing/capture-logger.ts';
import { createCollector, isLoopback, parseListen } from './server.ts';

let thisHost: Inventory;
before(async () => {
  thisHost = await collectInventory();
});

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-server-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}


describe('parseListen', () => {
  const ok: [string, { host: string; port: number }][] = [
    ['127.0.0.1:8443', { host: '127.0.0.1', port: 8443 }],
    ['0.0.0.0:0', { host: '0.0.0.0', port: 0 }],
    ['[::1]:8443', { host: '::1', port: 8443 }],
    ['[::]:443', { host: '::', port: 443 }],
    ['collector.example.org:8443', { host: 'collector.example.org', port: 8443 }],
  ];
  for (const [text, want] of ok) {
    it(`${text} -> ${want.host} ${want.port}`, () => {
      assert.deepEqual(parseListen(text), want);
    });
  }
  for (const text of ['8443', '127.0.0.1', '127.0.0.1:65536', '::1:8443', '127.0.0.1:http', '$(reboot):80', '']) {
    it(`${JSON.stringify(text)} is refused with PW_ERR_USAGE`, () => {
      assert.throws(() => parseListen(text), { code: 'PW_ERR_USAGE' });
    });
  }
});

describe('isLoopback', () => {
  const table: [string, boolean][] = [
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['::1', true],
    ['localhost', true],
    ['0.0.0.0', false],
    ['::', false],
    ['10.0.0.1', false],
    ['127.0.0.1.example.org', false],
  ];
  for (const [host, want] of table) {
    it(`${host} -> ${want}`, () => {
      assert.equal(isLoopback(host), want);
    });
  }
});

describe('createCollector', () => {
  it('serves /healthz, /metrics and the gateway on one port; reports show in the metrics', async (t) => {
    const tc = await startCollector(t);
    const health = await fetch(`${tc.collector.url}/healthz`);
    assert.equal(health.status, 200);
    const body = (await health.json()) as { status: string; db: boolean };
    assert.deepEqual([body.status, body.db], ['ok', true]);
    const { client } = await tc.agent();
    assert.equal((await client.report(thisHost)).status, 'stored');
    assert.equal((await client.report(thisHost)).status, 'unchanged');
    const metrics = await (await fetch(`${tc.collector.url}/metrics`)).text();
    assert.match(metrics, /^patchwarden_reports_total\{status="stored"\} 1$/m);
    assert.match(metrics, /^patchwarden_reports_total\{status="unchanged"\} 1$/m);
    assert.match(metrics, /^patchwarden_report_ingest_seconds_count 2$/m);
    // The connection this process holds, beside the store's count of connected agents.
    assert.match(metrics, /^patchwarden_agent_connections 1$/m);
    assert.match(metrics, /^patchwarden_agents_connected 1$/m);
    await client.close();
  });

  it('warns at start about a database others can read (one an older collector made 0644)', async (t) => {
    const dir = await tempDir(t);
    const dbPath = join(dir, 'c.db');
    const first = await createCollector({ dbPath, listen: '127.0.0.1:0', logger: captureLogger().logger });
    await first.close();
    await chmod(dbPath, 0o644);
    const { lines, logger } = captureLogger();
    const again = await createCollector({ dbPath, listen: '127.0.0.1:0', logger });
    t.after(() => again.close());
    const warning = lines.map((l) => JSON.parse(l) as { level: number; msg: string; mode?: string }).find((l) => /can be read by other users/.test(l.msg));
    assert.ok(warning, lines.join('\n'));
    assert.equal(warning.level, 40);
    assert.equal(warning.mode, '644');
    assert.match(warning.msg, /chmod 600 it and its -wal and -shm files/);
  });

  it('correlates every reported host again at start (counts a killed collector left stale are rebuilt)', async (t) => {
    const dir = await tempDir(t);
    const dbPath = join(dir, 'c.db');
    const first = await createCollector({ dbPath, listen: '127.0.0.1:0', logger: captureLogger().logger });
    const { token } = await first.store.tokens.create({ uses: 1, ttlMs: 60_000, createdBy: 'test' });
    const client = await TestAgent.connect(first.agentUrl);
    const { agentId } = await client.enroll(token, newKeys());
    await client.report(thisHost);
    await client.close();
    await first.findings.drained();
    const real = await first.store.hosts.get(agentId);
    await first.store.hosts.setFindingCounts(agentId, 999, 999);
    await first.close();

    const second = await createCollector({ dbPath, listen: '127.0.0.1:0', logger: captureLogger().logger });
    t.after(() => second.close());
    await second.findings.drained();
    assert.deepEqual([(await second.store.hosts.get(agentId))?.openFindings, (await second.store.hosts.get(agentId))?.overdueFindings], [real?.openFindings, real?.overdueFindings]);
    assert.equal((await second.store.agents.get(agentId))?.connected, false);
  });

  it('a port in use is PW_ERR_USAGE and leaves nothing open', async (t) => {
    const tc = await startCollector(t);
    const port = new URL(tc.collector.url).port;
    const dir = await tempDir(t);
    await assert.rejects(createCollector({ dbPath: join(dir, 'c.db'), listen: `127.0.0.1:${port}`, logger: captureLogger().logger }), { code: 'PW_ERR_USAGE', message: /cannot listen on 127\.0\.0\.1/ });
  });

  it('an in-memory database needs keyFile', async () => {
    await assert.rejects(createCollector({ dbPath: ':memory:', listen: '127.0.0.1:0' }), { code: 'PW_ERR_USAGE' });
  });
});
