/**
 * End to end: the REAL collector (createCollector: gateway, SQLite store, HTTP API) on
 * port 0 with a temporary database, an enrollment token made through its Fleet, and
 * this agent enrolled and run against it with this machine's real inventory. The host
 * must show up through the API with exactly dpkg-query's package count, survive a
 * collector restart with its spool, and stop when revoked through the API.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { type Collector, createCollector } from '../../collector/server.ts';
import { createLogger as createCollectorLogger } from '../../collector/logger.ts';
import { inventoryHash } from '../../shared/inventory-hash.ts';
import type { Inventory } from '../../shared/protocol.ts';
import { collectInventory } from '../inventory/inventory.ts';
import { Agent, type AgentExit } from './agent.ts';
import { loadConfig, loadPrivateKey } from './config.ts';
import { readCaFile } from './connection.ts';
import { enroll } from './enroll.ts';
import { createLogger } from './log.ts';
import { logSink, tempDir } from '../../shared/testing/daemon-fixtures.ts';
import { needs, TOOLS } from '../../shared/testing/system-tools.ts';

/** `dpkg-query -W` rows whose package is installed (status abbreviation `?i`). */
function dpkgInstalledCount(): number {
  const out = execFileSync('dpkg-query', ['-W', '-f=${db:Status-Abbrev}\\n'], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l[1] === 'i').length;
}

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

interface ApiHost {
  id: string;
  hostname: string;
  packageCount: number;
  connected: boolean;
}

describe('agent against the real collector', () => {
  it("enroll + run: the host appears through the API with dpkg-query's package count; restart, spool and revocation", async (t) => {
    const dir = tempDir(t, 'pw-e2e-');
    const dbPath = join(dir, 'collector.db');
    const quiet = createCollectorLogger({ level: 'silent' });
    let collector: Collector = await createCollector({ dbPath, listen: '127.0.0.1:0', logger: quiet });
    t.after(() => collector.close());
    const port = new URL(collector.url).port;
    const { token } = await collector.store.tokens.create({ uses: 1, ttlMs: 3_600_000, createdBy: 'e2e-test' });
    const apiToken = (await collector.store.apiTokens.create({ name: 'e2e', role: 'admin', createdBy: 'e2e-test' })).token;
    const api = async (path: string, init: RequestInit = {}): Promise<{ status: number; body: unknown }> => {
      const res = await fetch(`${collector.url}/api/v1${path}`, { ...init, headers: { authorization: `Bearer ${apiToken}` } });
      return { status: res.status, body: await res.json() };
    };
    const apiHosts = async (): Promise<ApiHost[]> => ((await api('/hosts')).body as { items: ApiHost[] }).items;

    const configPath = join(dir, 'agent', 'agent.json');
    const { config: enrolled } = await enroll({ collectorUrl: collector.agentUrl, token, configPath });
    assert.equal(enrolled.collectorPublicKey, collector.publicKey, 'the collector key is pinned at enrollment');
    await assert.rejects(enroll({ collectorUrl: collector.agentUrl, token, configPath: join(dir, 'other', 'agent.json') }), { code: 'PW_ERR_TOKEN_REFUSED', closeCode: 4004 });

    const config = await loadConfig(configPath);
    const { key } = await loadPrivateKey(config.keyFile);
    const real = await collectInventory();
    // The real inventory, or (while the collector is away) the host after removing packages.
    let removed = 0;
    const collect = async (): Promise<Inventory> => {
      const inv = await collectInventory();
      return { ...inv, packages: inv.packages.slice(removed) };
    };
    const sink = logSink();
    const agent = await Agent.create({ config, key, log: createLogger({ destination: sink }), collect, watch: [], backoff: { baseMs: 50, capMs: 400 } });
    t.after(() => agent.stop());
    const acks: { status: string; full: boolean; hash: string }[] = [];
    agent.on('acked', (a) => acks.push(a));
    const run = agent.run();

    await until('the first ack', () => acks.length >= 1);
    const installed = dpkgInstalledCount();
    assert.equal((await api('/hosts')).status, 200);
    const hosts = await apiHosts();
    const host = hosts.find((h) => h.id === config.agentId);
    assert.ok(host, JSON.stringify(hosts));
    assert.equal(host.packageCount, installed);
    assert.equal(host.packageCount, real.packages.length);
    assert.equal(host.connected, true);
    assert.equal((await api(`/hosts/${config.agentId}`)).status, 200);
    assert.deepEqual([acks[0]!.full, acks[0]!.status, acks[0]!.hash], [true, 'stored', inventoryHash(real)]);

    // Unchanged: only the hash crosses the wire.
    agent.checkNow();
    await until('the hash-only ack', () => acks.length >= 2);
    assert.deepEqual([acks[1]!.full, acks[1]!.status], [false, 'unchanged']);

    // The collector goes away; the host changes twice meanwhile; both changes are spooled.
    const disconnected = once(agent, 'disconnected');
    await collector.close();
    await disconnected;
    for (const n of [1, 2]) {
      removed = n;
      agent.checkNow(`change ${n}`);
      await agent.checksIdle();
    }
    assert.equal(readdirSync(config.spoolDir).length, 2);
    collector = await createCollector({ dbPath, listen: `127.0.0.1:${port}`, logger: quiet });
    await until('the spool delivered', () => agent.spool.size === 0 && acks.length >= 5);
    assert.deepEqual(
      acks.slice(2, 5).map((a) => [a.full, a.status]),
      [
        [true, 'stored'],
        [true, 'stored'],
        [false, 'unchanged'],
      ],
    );
    await until('the API to show the newest inventory', async () => {
      const h = (await apiHosts()).find((x) => x.id === config.agentId);
      return h?.packageCount === installed - 2;
    });

    // Revoked through the API: the gateway closes with 4003 and the agent stops for good.
    const revoked = await api(`/agents/${config.agentId}/revoke`, { method: 'POST' });
    assert.equal(revoked.status, 200);
    const exit: AgentExit = await run;
    assert.equal(exit.reason, 'revoked');
    assert.equal(exit.error.code, 'PW_ERR_AGENT_REVOKED');
    assert.equal(exit.error.closeCode, 4003);
  });

  it('wss with a private CA: refused without caFile (PW_ERR_CONNECT, nothing written), enrolled and reporting with it', { skip: needs(TOOLS.openssl) }, async (t) => {
    const dir = tempDir(t, 'pw-e2e-tls-');
    const ssl = (args: string[]): void => {
      execFileSync('openssl', args, { cwd: dir, stdio: 'ignore', timeout: 30_000 });
    };
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    ssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=patchwarden test CA']);
    ssl(['req', ...ec, '-keyout', 'other-ca.key', '-x509', '-out', 'other-ca.pem', '-days', '1', '-subj', '/CN=another CA']);
    ssl(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
    writeFileSync(join(dir, 'san.cnf'), 'subjectAltName=IP:127.0.0.1\n');
    ssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '1', '-extfile', 'san.cnf']);
    const collector = await createCollector({
      dbPath: join(dir, 'collector.db'),
      listen: '127.0.0.1:0',
      logger: createCollectorLogger({ level: 'silent' }),
      tls: { cert: readFileSync(join(dir, 'server.pem')), key: readFileSync(join(dir, 'server.key')) },
    });
    t.after(() => collector.close());
    assert.match(collector.agentUrl, /^wss:\/\/127\.0\.0\.1:\d+\/v1\/agent$/);
    const { token } = await collector.store.tokens.create({ uses: 1, ttlMs: 3_600_000, createdBy: 'e2e-test' });

    for (const caFile of [undefined, join(dir, 'other-ca.pem')]) {
      const configPath = join(dir, caFile === undefined ? 'no-ca' : 'wrong-ca', 'agent.json');
      await assert.rejects(enroll({ collectorUrl: collector.agentUrl, token, configPath, ...(caFile === undefined ? {} : { caFile }) }), {
        code: 'PW_ERR_CONNECT',
        message: /self-signed certificate|unable to (verify|get local issuer)/,
      });
      assert.deepEqual(readdirSync(join(configPath, '..')), []);
    }

    const configPath = join(dir, 'agent', 'agent.json');
    await enroll({ collectorUrl: collector.agentUrl, token, configPath, caFile: join(dir, 'ca.pem') });
    const config = await loadConfig(configPath);
    assert.equal(config.caFile, join(dir, 'ca.pem'));
    const { key } = await loadPrivateKey(config.keyFile);
    const ca = await readCaFile(config.caFile);
    const agent = await Agent.create({ config, key, log: createLogger({ level: 'silent' }), watch: [], ...(ca === undefined ? {} : { ca }) });
    t.after(() => agent.stop());
    const acked = once(agent, 'acked');
    void agent.run();
    const [ack] = (await acked) as [{ full: boolean; status: string }];
    assert.deepEqual([ack.full, ack.status], [true, 'stored']);
    assert.equal((await collector.store.hosts.get(config.agentId))?.packageCount, dpkgInstalledCount());
  });
});
