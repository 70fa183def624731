import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { collectInventory } from '../../agent/inventory/inventory.ts';
import { type AgentRefusal, AgentRefusedError, ProtocolError } from '../../shared/errors.ts';
import { inventoryHash, packageSetHash } from '../../shared/inventory-hash.ts';
import { type Inventory, PROTOCOL_VERSION } from '../../shared/protocol.ts';
import { dataPath } from '../../shared/testing/data.ts';
import { inventoryOf, rhel95Packages } from '../../shared/testing/correlate-fixtures.ts';
import { importFeedPath } from '../services/feeds/store-import.ts';
import { openDatabase, type Db } from '../store/db.ts';
import { connect } from 'node:net';
import { HTTP_HEADERS_TIMEOUT_MS } from '../server.ts';
import { asProtocolError, PRE_AUTH_MAX_PAYLOAD } from './gateway.ts';
import { enrollFrame, helloFrame, newKeys, TestAgent } from '../../shared/testing/fake-agent.ts';
import { floodIdleUpgrades } from '../../shared/testing/collector-process.ts';
import { startCollector, type TestCollector, variant } from '../../shared/testing/collector-harness.ts';
import { asyncAdvisories } from '../../shared/testing/store-fixtures.ts';

const run = promisify(execFile);

let thisHost: Inventory;
let installedCount: number;
before(async () => {
  thisHost = await collectInventory();
  // dpkg's own view of this machine: packages whose status is `installed` (not `rc` leftovers).
  const { stdout } = await run('dpkg-query', ['-W', '-f', '${db:Status-Status}\\t${binary:Package}\\n'], { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 });
  installedCount = stdout.split('\n').filter((l) => l.startsWith('installed\t')).length;
});

function counts(db: Db): Record<string, number> {
  const out: Record<string, number> = {};
  for (const table of ['agents', 'reports', 'inventory_contents', 'hosts', 'enrollment_tokens']) {
    out[table] = (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  }
  out.usesLeft = (db.prepare('SELECT coalesce(sum(uses_left), 0) AS n FROM enrollment_tokens').get() as { n: number }).n;
  return out;
}

/** A good agent does its whole job on the same collector: enroll, report, ack. */
async function stillServes(tc: TestCollector): Promise<void> {
  const { client, agentId } = await tc.agent();
  const ack = await client.report(thisHost);
  assert.equal(ack.status, 'stored');
  assert.equal((await tc.collector.store.hosts.get(agentId))?.packageCount, thisHost.packages.length);
  await client.close();
}

// The store refuses with reasons (AgentRefusedError); the wire keeps the codes and close
// codes it had when the store threw protocol errors itself. The refusal tables below prove
// each end to end; this one names every reason, so a new one cannot go unmapped.
describe('asProtocolError: store refusals on the wire', () => {
  const rows: { reason: AgentRefusal; code: string; closeCode: number }[] = [
    { reason: 'not-enrolled', code: 'PW_ERR_UNAUTHENTICATED', closeCode: 4001 },
    { reason: 'revoked', code: 'PW_ERR_AGENT_REVOKED', closeCode: 4003 },
    { reason: 'inventory-unknown', code: 'PW_ERR_INVENTORY_UNKNOWN', closeCode: 4000 },
    { reason: 'already-enrolled', code: 'PW_ERR_ALREADY_ENROLLED', closeCode: 4004 },
  ];
  for (const r of rows) {
    it(`${r.reason}: ${r.code}, close ${r.closeCode}, the store's message`, () => {
      const refusal = new AgentRefusedError(r.reason, `refused: ${r.reason}`);
      const err = asProtocolError(refusal);
      assert.ok(err instanceof ProtocolError);
      assert.deepEqual({ code: err.code, closeCode: err.closeCode, message: err.message, cause: err.cause }, { code: r.code, closeCode: r.closeCode, message: `refused: ${r.reason}`, cause: refusal });
    });
  }

  it('a protocol error passes as it is; any other error is the collector\'s own (undefined)', () => {
    const own = new ProtocolError('x', 'PW_ERR_PROTOCOL', 4000);
    assert.equal(asProtocolError(own), own);
    assert.equal(asProtocolError(new Error('disk I/O error')), undefined);
  });
});

describe('gateway: the good path', () => {
  it("enrolls, reports this machine's real inventory, acks it, and the host has dpkg-query's package count", async (t) => {
    const tc = await startCollector(t);
    const store = tc.collector.store;
    const { token } = await store.tokens.create({ uses: 1, ttlMs: 3600_000, createdBy: 'test' });
    const keys = newKeys();
    const client = await TestAgent.connect(tc.collector.agentUrl);
    const nonce = await client.challenge();
    assert.match(nonce, /^[A-Za-z0-9_-]{43}$/);
    client.send(enrollFrame(token, keys, { hostname: thisHost.host.hostname, machineId: thisHost.host.machineId }));
    const enrolled = await client.expect('enrolled');
    assert.equal(enrolled.collectorPublicKey, tc.collector.publicKey);
    const welcome = await client.expect('welcome');
    assert.deepEqual(welcome, { type: 'welcome', agentId: enrolled.agentId, heartbeatSeconds: 30, inventoryHash: null });

    const hash = inventoryHash(thisHost);
    const reportId = randomUUID();
    assert.deepEqual(await client.report(thisHost, hash, reportId), { type: 'ack', id: reportId, status: 'stored' });
    const host = await store.hosts.get(enrolled.agentId);
    assert.equal(host?.packageCount, installedCount);
    assert.equal(host.hostname, thisHost.host.hostname);
    assert.equal(host.connected, true);
    assert.deepEqual(await store.reports.latestInventory(enrolled.agentId), thisHost);
    assert.equal((await store.agents.get(enrolled.agentId))?.lastInventoryHash, hash);
    await client.close();
    // The close is recorded by the server after the client sees it.
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await store.agents.get(enrolled.agentId))?.connected, false);

    // Reconnect with hello: the welcome names the stored hash, so the agent sends only that.
    const again = await TestAgent.connect(tc.collector.agentUrl);
    const { welcome: w2 } = await again.hello(enrolled.agentId, keys);
    assert.equal(w2.inventoryHash, hash);
    assert.equal((await again.report(null, hash)).status, 'unchanged');
    assert.equal((await again.report(thisHost, hash, reportId)).status, 'duplicate');
    assert.equal(tc.collector.sqlite!.db.prepare('SELECT count(*) AS n FROM reports').pluck().get(), 1);
    await again.close();
  });

  it('correlates a new inventory after the ack: real RHEL 9.5 rpms against the real AlmaLinux 9 OSV feed', async (t) => {
    // The feed goes into the database before the collector starts, as `feed import` would.
    const dir = await mkdtemp(join(tmpdir(), 'pw-gw-feed-'));
    const keyDb = openDatabase(join(dir, 'collector.db'));
    await importFeedPath(asyncAdvisories(keyDb), dataPath('osv', 'almalinux9.osv.jsonl.gz'), { name: 'almalinux9' });
    keyDb.close();
    const tc = await startCollector(t, { dbPath: join(dir, 'collector.db') });
    t.after(() => rm(dir, { recursive: true, force: true }));
    const { client, agentId } = await tc.agent('rhel-1');
    const rhel = inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages());
    rhel.host.hostname = 'rhel-1';
    assert.equal((await client.report(rhel)).status, 'stored');
    await tc.collector.findings.drained();
    const expected = await tc.collector.findings.findings(agentId, rhel);
    assert.ok(expected !== undefined);
    const open = expected.findings.filter((f) => ['open', 'unfixed', 'fixed-pending-reboot'].includes(f.status)).length;
    assert.ok(open > 0, 'the 2024 RHEL image has open findings in the 2026 feed');
    const host = await tc.collector.store.hosts.get(agentId);
    assert.equal(host?.openFindings, open);
    assert.equal(host.overdueFindings, expected.findings.filter((f) => f.overdue).length);
    assert.equal((await tc.collector.store.history.history(agentId)).size, expected.findings.length);
    await client.close();
  });

  it('one connection per agent: a second hello closes the first (1000), the agent stays connected', async (t) => {
    const tc = await startCollector(t);
    const { client: first, agentId, keys } = await tc.agent();
    const second = await TestAgent.connect(tc.collector.agentUrl);
    await second.hello(agentId, keys);
    const closed = await first.closed;
    assert.equal(closed.code, 1000);
    assert.equal(closed.reason, 'replaced by a newer connection');
    assert.equal((await tc.collector.store.agents.get(agentId))?.connected, true);
    assert.equal(tc.collector.gateway.connectedAgents, 1);
    assert.equal((await second.report(thisHost)).status, 'stored');
    await second.close();
  });

  it('an agent that answers no ping is terminated after two heartbeats and marked disconnected', async (t) => {
    const tc = await startCollector(t, { gateway: { heartbeatSeconds: 1 } });
    const { token } = await tc.collector.store.tokens.create({ uses: 1, ttlMs: 3600_000, createdBy: 'test' });
    const silent = await TestAgent.connect(tc.collector.agentUrl, { autoPong: false });
    const { agentId } = await silent.enroll(token, newKeys());
    const started = Date.now();
    const closed = await silent.closed;
    const ms = Date.now() - started;
    assert.equal(closed.code, 1006, 'terminated, no close frame');
    assert.ok(ms >= 1500 && ms < 4500, `terminated after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal((await tc.collector.store.agents.get(agentId))?.connected, false);
    // One that answers stays.
    const { client } = await tc.agent();
    await new Promise((r) => setTimeout(r, 3500));
    assert.equal((await client.report(thisHost)).status, 'stored');
    await client.close();
  });

  it('an agent revoked while connected is refused at its next report (4003) and its report is not stored', async (t) => {
    const tc = await startCollector(t);
    const { client, agentId } = await tc.agent();
    await tc.collector.store.agents.revoke(agentId, 'test');
    client.sendReport(thisHost);
    const r = await client.refusal();
    assert.deepEqual([r.error?.code, r.close.code], ['PW_ERR_AGENT_REVOKED', 4003]);
    assert.equal(await tc.collector.store.hosts.get(agentId), undefined);
    await stillServes(tc);
  });

  it('gateway.disconnect ends a connected agent with the given code', async (t) => {
    const tc = await startCollector(t);
    const { client, agentId } = await tc.agent();
    assert.equal(tc.collector.gateway.disconnect(agentId, new ProtocolError('revoked', 'PW_ERR_AGENT_REVOKED', 4003)), true);
    const r = await client.refusal();
    assert.deepEqual([r.error?.code, r.close.code], ['PW_ERR_AGENT_REVOKED', 4003]);
    assert.equal(tc.collector.gateway.disconnect(agentId, new ProtocolError('x', 'PW_ERR_AGENT_REVOKED', 4003)), false);
  });

  it('past maxPendingHandshakes strangers get 503 at the upgrade; agents get in again once they are gone', async (t) => {
    const tc = await startCollector(t, { gateway: { maxPendingHandshakes: 2, handshakeTimeoutMs: 500, closeGraceMs: 200 } });
    const idle = [await TestAgent.connect(tc.collector.agentUrl), await TestAgent.connect(tc.collector.agentUrl)];
    await assert.rejects(TestAgent.connect(tc.collector.agentUrl), /HTTP 503/);
    assert.equal(tc.collector.gateway.stats.refused['handshakes-full'], 1);
    for (const c of idle) assert.equal((await c.refusal()).close.code, 4008);
    await new Promise((r) => setTimeout(r, 50));
    await stillServes(tc);
  });

  it('an upgrade on another path is answered 404 and the collector goes on', async (t) => {
    const tc = await startCollector(t);
    await assert.rejects(TestAgent.connect(tc.collector.url.replace('http', 'ws') + '/v1/other'), /HTTP 404/);
    await stillServes(tc);
  });

  it('logs are JSON lines and never contain the enrollment token', async (t) => {
    const tc = await startCollector(t);
    const { token } = await tc.collector.store.tokens.create({ uses: 1, ttlMs: 3600_000, createdBy: 'test' });
    const client = await TestAgent.connect(tc.collector.agentUrl);
    await client.enroll(token, newKeys());
    // A refused enroll with a token that was used up, logged as a warning.
    const again = await TestAgent.connect(tc.collector.agentUrl);
    await again.challenge();
    again.send(enrollFrame(token, newKeys()));
    await again.refusal();
    await client.close();
    assert.ok(tc.logs.length > 3);
    for (const line of tc.logs) {
      const entry = JSON.parse(line) as { msg?: string };
      assert.equal(typeof entry.msg, 'string');
      assert.equal(line.includes(token), false, `token in ${line}`);
    }
    assert.ok(tc.logs.some((l) => l.includes('PW_ERR_TOKEN_REFUSED')));
  });
});

interface BadCase {
  name: string;
  /** Sets up (helper agents, tokens) and returns the client to refuse and the bad frame to send. */
  setup: (tc: TestCollector) => Promise<{ client: TestAgent; bad: () => void }>;
  code: string | null;
  closeCode: number;
  /** What the error message must say, where the code alone does not show which check refused the frame. */
  message?: RegExp;
}

const HOSTILE = ["'; DROP TABLE agents;--", '<script>alert(1)</script>', '$(reboot)'];

function withPackageName(name: string): Inventory {
  const inv = structuredClone(thisHost);
  inv.packages[0]!.name = name;
  return inv;
}

function withHostname(name: string): Inventory {
  const inv = structuredClone(thisHost);
  inv.host.hostname = name;
  return inv;
}

function withKernelRelease(release: string): Inventory {
  const inv = structuredClone(thisHost);
  inv.kernel.release = release;
  return inv;
}

/** A well-formed result but for its message (its instruction unknown: the schema refuses it before that matters). */
function resultFrame(message: string): string {
  const at = new Date().toISOString();
  const result = { instructionId: randomUUID(), status: 'failed', code: 'PW_ERR_COMMAND_FAILED', message, dryRun: false, startedAt: at, finishedAt: at, commands: [], changes: [], rebootRequired: null };
  return JSON.stringify({ type: 'result', id: randomUUID(), result });
}

/** A fresh connection that has read its challenge. */
async function challenged(tc: TestCollector): Promise<{ client: TestAgent; nonce: string }> {
  const client = await TestAgent.connect(tc.collector.agentUrl);
  return { client, nonce: await client.challenge() };
}

/** An agent enrolled on this collector that is not connected (for hello cases). */
async function enrolledOffline(tc: TestCollector) {
  const { client, agentId, keys } = await tc.agent('offline');
  await client.close();
  return { agentId, keys };
}

/** The bad frame goes on a fresh, unauthenticated connection. */
function raw(frame: (nonce: string) => string | Buffer, binary = false): BadCase['setup'] {
  return async (tc) => {
    const { client, nonce } = await challenged(tc);
    return {
      client,
      bad: () => {
        client.sendRaw(frame(nonce), binary);
      },
    };
  };
}

/** The bad report goes on an enrolled, authenticated connection. */
function authenticatedReport(send: (client: TestAgent) => void): BadCase['setup'] {
  return async (tc) => {
    const { client } = await tc.agent();
    return {
      client,
      bad: () => {
        send(client);
      },
    };
  };
}

const badCases: BadCase[] = [
  { name: 'malformed JSON', setup: raw(() => '{"type":"hello",'), code: 'PW_ERR_PROTOCOL', closeCode: 4000 },
  { name: 'a JSON number, not an object', setup: raw(() => '42'), code: 'PW_ERR_PROTOCOL', closeCode: 4000 },
  { name: 'JSON null', setup: raw(() => 'null'), code: 'PW_ERR_PROTOCOL', closeCode: 4000 },
  {
    name: 'wrong types: agentId 42, signature true',
    setup: raw(() => JSON.stringify({ type: 'hello', protocol: PROTOCOL_VERSION, agentVersion: '0.1.0', agentId: 42, signature: true })),
    code: 'PW_ERR_PROTOCOL',
    closeCode: 4000,
  },
  { name: 'unknown message type instruction', setup: raw(() => JSON.stringify({ type: 'instruction', id: randomUUID() })), code: 'PW_ERR_PROTOCOL', closeCode: 4000 },
  {
    name: 'an extra field on a correctly signed hello',
    setup: async (tc) => {
      const { agentId, keys } = await enrolledOffline(tc);
      const { client, nonce } = await challenged(tc);
      return {
        client,
        bad: () => {
          client.send({ ...helloFrame(nonce, agentId, keys), admin: true });
        },
      };
    },
    code: 'PW_ERR_PROTOCOL',
    closeCode: 4000,
  },
  { name: 'a binary frame', setup: raw(() => Buffer.from('{"type":"hello"}'), true), code: 'PW_ERR_PROTOCOL', closeCode: 4000 },
  { name: 'a frame over the pre-auth limit (4 KiB + 1) before hello', setup: raw(() => `"${'x'.repeat(PRE_AUTH_MAX_PAYLOAD - 1)}"`), code: 'PW_ERR_INPUT_TOO_LARGE', closeCode: 1009 },
  { name: 'a frame over maxPayload (1 MiB + 1) after hello', setup: authenticatedReport((c) => { c.sendRaw(`"${'x'.repeat(1024 * 1024 - 1)}"`); }), code: 'PW_ERR_INPUT_TOO_LARGE', closeCode: 1009 },
  { name: 'a report before hello', setup: raw(() => JSON.stringify({ type: 'report', id: randomUUID(), hash: inventoryHash(thisHost), inventory: null })), code: 'PW_ERR_UNAUTHENTICATED', closeCode: 4001 },
  { name: 'a full report before hello (over the pre-auth limit)', setup: raw(() => JSON.stringify({ type: 'report', id: randomUUID(), hash: inventoryHash(thisHost), inventory: thisHost })), code: 'PW_ERR_INPUT_TOO_LARGE', closeCode: 1009 },
  {
    name: 'a hello signed with the wrong key',
    setup: async (tc) => {
      const { agentId } = await enrolledOffline(tc);
      return raw((nonce) => JSON.stringify(helloFrame(nonce, agentId, newKeys())))(tc);
    },
    code: 'PW_ERR_UNAUTHENTICATED',
    closeCode: 4001,
  },
  { name: 'a hello for an agent id that was never enrolled', setup: raw((nonce) => JSON.stringify(helloFrame(nonce, randomUUID(), newKeys()))), code: 'PW_ERR_UNAUTHENTICATED', closeCode: 4001 },
  {
    name: "a hello signed with the agent's own key but naming another agent's id",
    setup: async (tc) => {
      const mine = await enrolledOffline(tc);
      const other = await enrolledOffline(tc);
      return raw((nonce) => JSON.stringify({ ...helloFrame(nonce, mine.agentId, mine.keys), agentId: other.agentId }))(tc);
    },
    code: 'PW_ERR_UNAUTHENTICATED',
    closeCode: 4001,
  },
  {
    name: 'a hello captured on one connection, replayed on a new one',
    setup: async (tc) => {
      const { agentId, keys } = await enrolledOffline(tc);
      const first = await TestAgent.connect(tc.collector.agentUrl);
      const { sent } = await first.hello(agentId, keys);
      await first.close();
      return raw(() => JSON.stringify(sent))(tc);
    },
    code: 'PW_ERR_UNAUTHENTICATED',
    closeCode: 4001,
  },
  {
    name: 'a revoked agent with a valid signature',
    setup: async (tc) => {
      const { agentId, keys } = await enrolledOffline(tc);
      await tc.collector.store.agents.revoke(agentId, 'test');
      return raw((nonce) => JSON.stringify(helloFrame(nonce, agentId, keys)))(tc);
    },
    code: 'PW_ERR_AGENT_REVOKED',
    closeCode: 4003,
  },
  {
    name: 'protocol 2.0.0',
    setup: async (tc) => {
      const { agentId, keys } = await enrolledOffline(tc);
      return raw((nonce) => JSON.stringify(helloFrame(nonce, agentId, keys, '2.0.0')))(tc);
    },
    code: 'PW_ERR_PROTOCOL_VERSION',
    closeCode: 4005,
  },
  {
    name: 'an enrollment token used past its limit (uses 1, second enroll)',
    setup: async (tc) => {
      const { token } = await tc.collector.store.tokens.create({ uses: 1, ttlMs: 3600_000, createdBy: 'test' });
      const first = await TestAgent.connect(tc.collector.agentUrl);
      await first.enroll(token, newKeys());
      await first.close();
      return raw(() => JSON.stringify(enrollFrame(token, newKeys())))(tc);
    },
    code: 'PW_ERR_TOKEN_REFUSED',
    closeCode: 4004,
  },
  {
    name: 'an expired enrollment token',
    setup: async (tc) => {
      const { token } = await tc.collector.store.tokens.create({ uses: 5, ttlMs: 3600_000, createdBy: 'test' }, new Date(Date.now() - 2 * 3600_000));
      return raw(() => JSON.stringify(enrollFrame(token, newKeys())))(tc);
    },
    code: 'PW_ERR_TOKEN_REFUSED',
    closeCode: 4004,
  },
  { name: 'an unknown enrollment token', setup: raw(() => JSON.stringify(enrollFrame('u'.repeat(43), newKeys()))), code: 'PW_ERR_TOKEN_REFUSED', closeCode: 4004 },
  {
    name: 'enrolling a public key that is enrolled already',
    setup: async (tc) => {
      const keys = newKeys();
      const { token } = await tc.collector.store.tokens.create({ uses: 2, ttlMs: 3600_000, createdBy: 'test' });
      const first = await TestAgent.connect(tc.collector.agentUrl);
      await first.enroll(token, keys);
      await first.close();
      return raw(() => JSON.stringify(enrollFrame(token, keys)))(tc);
    },
    code: 'PW_ERR_ALREADY_ENROLLED',
    closeCode: 4004,
  },
  {
    name: 'no hello within the handshake timeout',
    setup: async (tc) => ({ client: (await challenged(tc)).client, bad: () => undefined }),
    code: 'PW_ERR_HANDSHAKE_TIMEOUT',
    closeCode: 4008,
  },
  ...HOSTILE.flatMap((h): BadCase[] => [
    {
      name: `enroll with hostname ${h}`,
      setup: async (tc) => {
        const { token } = await tc.collector.store.tokens.create({ uses: 1, ttlMs: 3600_000, createdBy: 'test' });
        return raw(() => JSON.stringify(enrollFrame(token, newKeys(), { hostname: h })))(tc);
      },
      code: 'PW_ERR_PROTOCOL',
      closeCode: 4000,
    },
    { name: `a report with package name ${h}`, setup: authenticatedReport((c) => c.sendReport(withPackageName(h))), code: 'PW_ERR_PROTOCOL', closeCode: 4000 },
    { name: `a report with inventory hostname ${h}`, setup: authenticatedReport((c) => c.sendReport(withHostname(h))), code: 'PW_ERR_PROTOCOL', closeCode: 4000 },
    {
      name: `a hello with agent id ${h}`,
      setup: raw(() => JSON.stringify({ type: 'hello', protocol: PROTOCOL_VERSION, agentVersion: h, agentId: h, signature: 'A'.repeat(86) })),
      code: 'PW_ERR_PROTOCOL',
      closeCode: 4000,
    },
  ]),
  // U+0000, which PostgreSQL's text cannot hold, in each wire field with a column of its own (shared/text.ts).
  {
    name: 'enroll with U+0000 in its agent version',
    setup: async (tc) => {
      const { token } = await tc.collector.store.tokens.create({ uses: 1, ttlMs: 3600_000, createdBy: 'test' });
      return raw(() => JSON.stringify({ ...enrollFrame(token, newKeys()), agentVersion: '0.1.0\u0000' }))(tc);
    },
    code: 'PW_ERR_PROTOCOL',
    closeCode: 4000,
    message: /agentVersion: must not contain U\+0000/,
  },
  {
    name: 'hello with U+0000 in its agent version',
    setup: async (tc) => {
      const { agentId, keys } = await enrolledOffline(tc);
      return raw((nonce) => JSON.stringify({ ...helloFrame(nonce, agentId, keys), agentVersion: '0.1.0\u0000' }))(tc);
    },
    code: 'PW_ERR_PROTOCOL',
    closeCode: 4000,
    message: /agentVersion: must not contain U\+0000/,
  },
  {
    name: 'a report with U+0000 in its kernel release',
    setup: authenticatedReport((c) => c.sendReport(withKernelRelease('6.1.0-18-amd64\u0000'))),
    code: 'PW_ERR_PROTOCOL',
    closeCode: 4000,
    message: /inventory\.kernel\.release: must not contain U\+0000/,
  },
  {
    name: 'a result with U+0000 in its message',
    setup: authenticatedReport((c) => {
      c.sendRaw(resultFrame('apt-get failed: \u0000'));
    }),
    code: 'PW_ERR_PROTOCOL',
    closeCode: 4000,
    message: /result\.message: must not contain U\+0000/,
  },
  { name: 'a report whose hash is not the hash of its inventory', setup: authenticatedReport((c) => c.sendReport(thisHost, 'f'.repeat(64))), code: 'PW_ERR_PROTOCOL', closeCode: 4000 },
  { name: 'an unchanged report naming a hash the collector does not have', setup: authenticatedReport((c) => c.sendReport(null, 'e'.repeat(64))), code: 'PW_ERR_INVENTORY_UNKNOWN', closeCode: 4000 },
  {
    name: 'a second hello on an authenticated connection',
    setup: async (tc) => {
      const { client, agentId, keys } = await tc.agent();
      return {
        client,
        bad: () => {
          client.send(helloFrame('n'.repeat(43), agentId, keys));
        },
      };
    },
    code: 'PW_ERR_PROTOCOL',
    closeCode: 4000,
  },
];

describe('gateway: packages by reference', () => {
  it('a package set the collector does not hold is answered packages-unknown and nothing is stored; sent in full, it is stored', async (t) => {
    const tc = await startCollector(t);
    const { client, agentId } = await tc.agent();
    const before = counts(tc.collector.sqlite!.db);
    const id = randomUUID();
    assert.deepEqual(await client.reportByReference(thisHost, undefined, id), { type: 'ack', id, status: 'packages-unknown' });
    assert.deepEqual(counts(tc.collector.sqlite!.db), before);
    assert.equal(await tc.collector.store.hosts.get(agentId), undefined);
    // The same report id, now with its packages: stored (not a duplicate: nothing was stored before).
    assert.equal((await client.report(thisHost, undefined, id)).status, 'stored');
    assert.deepEqual(await tc.collector.store.reports.latestInventory(agentId), thisHost);
  });

  it('a second host with the same packages names the set: stored with the first host\'s packages, one copy in the store', async (t) => {
    const tc = await startCollector(t);
    const a = await tc.agent('image-a');
    assert.equal((await a.client.report(thisHost)).status, 'stored');
    const b = await tc.agent('image-b');
    const other: Inventory = { ...thisHost, host: { ...thisHost.host, hostname: 'image-b', machineId: 'b'.repeat(32), bootId: randomUUID() } };
    assert.equal((await b.client.reportByReference(other)).status, 'stored');
    assert.deepEqual(await tc.collector.store.reports.latestInventory(b.agentId), other);
    assert.equal((await tc.collector.store.hosts.get(b.agentId))?.packageCount, installedCount);
    assert.equal(counts(tc.collector.sqlite!.db).inventory_contents, 1);
    // Unchanged afterwards, by hash only, as before.
    assert.equal((await b.client.report(null, inventoryHash(other))).status, 'unchanged');
  });

  it('a full report of a set the collector holds is stored from the held copy (only the rest of the frame is parsed)', async (t) => {
    const tc = await startCollector(t);
    const a = await tc.agent('image-a');
    assert.equal((await a.client.report(thisHost)).status, 'stored');
    assert.equal(tc.collector.gateway.stats.heldSetFrames, 0);
    const b = await tc.agent('image-b');
    const other: Inventory = { ...thisHost, host: { ...thisHost.host, hostname: 'image-b', machineId: 'b'.repeat(32), bootId: randomUUID() } };
    assert.equal((await b.client.report(other)).status, 'stored');
    assert.equal(tc.collector.gateway.stats.heldSetFrames, 1);
    assert.deepEqual(await tc.collector.store.reports.latestInventory(b.agentId), other);
    // A lie about anything outside the packages is still caught by the hash.
    const c = await tc.agent('image-c');
    c.client.sendRaw(JSON.stringify({ type: 'report', id: randomUUID(), hash: inventoryHash(other), inventory: { ...other, warnings: [{ code: 'PW_X', message: 'changed' }] } }));
    const { error } = await c.client.refusal();
    assert.equal(error?.code, 'PW_ERR_PROTOCOL');
  });

  it('refused: a held set followed by a second packages key (PW_ERR_PROTOCOL, nothing stored)', async (t) => {
    const tc = await startCollector(t);
    const seed = await tc.agent('seed');
    assert.equal((await seed.client.report(thisHost)).status, 'stored');
    const { client } = await tc.agent();
    const before = counts(tc.collector.sqlite!.db);
    const frame = JSON.stringify({ type: 'report', id: randomUUID(), hash: inventoryHash(thisHost), inventory: thisHost });
    client.sendRaw(`${frame.slice(0, -2)},"packages":${JSON.stringify(thisHost.packages.slice(0, 1))}}}`);
    const { error, close } = await client.refusal();
    assert.equal(error?.code, 'PW_ERR_PROTOCOL');
    assert.equal(close.code, 4000);
    assert.deepEqual(counts(tc.collector.sqlite!.db), before);
    await stillServes(tc);
  });

  const refusals: { name: string; message: (inv: Inventory) => unknown }[] = [
    {
      name: 'packageSet beside a non-empty package list',
      message: (inv) => ({ type: 'report', id: randomUUID(), hash: inventoryHash(inv), inventory: inv, packageSet: packageSetHash(inv.packages) }),
    },
    { name: 'packageSet without an inventory', message: (inv) => ({ type: 'report', id: randomUUID(), hash: inventoryHash(inv), inventory: null, packageSet: packageSetHash(inv.packages) }) },
    {
      name: 'a hash that is not of the inventory with the named set (another host\'s set)',
      message: (inv) => ({ type: 'report', id: randomUUID(), hash: inventoryHash(inv), inventory: { ...inv, packages: [] }, packageSet: packageSetHash(variant(inv, 1).packages) }),
    },
    { name: 'a packageSet that is not a sha256', message: (inv) => ({ type: 'report', id: randomUUID(), hash: inventoryHash(inv), inventory: { ...inv, packages: [] }, packageSet: "x' OR 1=1 --" }) },
  ];
  for (const c of refusals) {
    it(`refused: ${c.name} (PW_ERR_PROTOCOL, close 4000, nothing stored)`, async (t) => {
      const tc = await startCollector(t);
      const seed = await tc.agent('seed');
      // Both sets held, so only the mismatch itself can be what is refused.
      assert.equal((await seed.client.report(thisHost)).status, 'stored');
      assert.equal((await seed.client.report(variant(thisHost, 1))).status, 'stored');
      const { client } = await tc.agent();
      const before = counts(tc.collector.sqlite!.db);
      client.send(c.message(thisHost));
      const { error, close } = await client.refusal();
      assert.equal(error?.code, 'PW_ERR_PROTOCOL');
      assert.equal(close.code, 4000);
      assert.deepEqual(counts(tc.collector.sqlite!.db), before);
      await stillServes(tc);
    });
  }
});

describe('gateway: a flood of idle upgrades does not lock out enrolled agents', () => {
  // The flood: 1,100 upgrades that never send a frame, each opened again as soon as
  // the collector closes it (or, after 503, a second later), against the default limits
  // and deadlines (with shorter ones the table has gaps each time a wave times out).
  const floods = [
    { name: 'from one address', addresses: ['127.0.0.2'] },
    { name: 'from 100 addresses, 11 sockets each', addresses: Array.from({ length: 100 }, (_, i) => `127.0.1.${i + 1}`) },
  ];
  for (const f of floods) {
    it(`1,100 idle upgrades ${f.name}: 10 of 10 hellos by an enrolled agent from 127.0.0.1 succeed`, async (t) => {
      const tc = await startCollector(t, { gateway: { closeGraceMs: 200 } });
      const { client: first, agentId, keys } = await tc.agent();
      await first.close();
      const flood = floodIdleUpgrades(tc.collector.agentUrl, { sockets: 1100, addresses: f.addresses });
      t.after(() => {
        flood.stop();
      });
      const deadline = Date.now() + 20_000;
      // Every flood socket has had its first answer (101 or 503): the table is as full as the flood can make it.
      while (flood.stats.upgraded + flood.stats.refused < 1100 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.ok(flood.stats.upgraded + flood.stats.refused >= 1100, `only ${flood.stats.upgraded + flood.stats.refused} flood sockets were answered in 20 s`);
      const pending = tc.collector.gateway.pendingHandshakes;
      const results: string[] = [];
      for (let i = 0; i < 10; i++) {
        try {
          const c = await TestAgent.connect(tc.collector.agentUrl, { localAddress: '127.0.0.1' });
          await c.hello(agentId, keys);
          await c.close();
          results.push('welcome');
        } catch (err) {
          results.push((err as Error).message);
        }
        await new Promise((r) => setTimeout(r, 150));
      }
      flood.stop();
      const stats = tc.collector.gateway.stats.refused;
      t.diagnostic(`flood: ${pending} pending when the hellos began; ${flood.stats.upgraded} upgraded, ${flood.stats.refused} refused; collector: ${JSON.stringify(stats)}`);
      assert.deepEqual(results, Array<string>(10).fill('welcome'));
    });
  }
});

describe('gateway: an upgrade request whose headers never finish', () => {
  it(`is closed within HTTP_HEADERS_TIMEOUT_MS (${HTTP_HEADERS_TIMEOUT_MS} ms) and a second, not at Node's 60 s`, async (t) => {
    const tc = await startCollector(t);
    const url = new URL(tc.collector.agentUrl);
    const socket = connect({ host: url.hostname, port: Number(url.port), localAddress: '127.0.0.2' });
    t.after(() => socket.destroy());
    socket.on('error', () => undefined);
    // Read (and drop) the 408, so the collector's FIN is seen.
    socket.resume();
    const started = Date.now();
    socket.write(`GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\n`);
    const closed = new Promise<number>((resolve) => {
      socket.once('close', () => {
        resolve(Date.now() - started);
      });
    });
    const ms = await Promise.race([closed, new Promise<number>((r) => setTimeout(r, HTTP_HEADERS_TIMEOUT_MS + 5000, Infinity))]);
    assert.ok(ms >= HTTP_HEADERS_TIMEOUT_MS - 100 && ms <= HTTP_HEADERS_TIMEOUT_MS + 2000, `closed after ${ms} ms`);
    await stillServes(tc);
  });
});

describe('gateway: bad input is refused with a stable code and close code, nothing is stored, the next agent is served', () => {
  // One collector for every case: each bad client must leave it serving the next one.
  let tc: TestCollector;
  const cleanups: (() => Promise<void>)[] = [];
  before(async () => {
    tc = await startCollector({ after: (fn) => cleanups.push(fn) }, { gateway: { maxPayload: 1024 * 1024, handshakeTimeoutMs: 800, closeGraceMs: 500 } });
  });
  after(async () => {
    for (const fn of cleanups) await fn();
  });

  for (const c of badCases) {
    it(`${c.name}: ${c.code ?? 'no error message'}, close ${c.closeCode}`, async () => {
      const { client, bad } = await c.setup(tc);
      const before = counts(tc.collector.sqlite!.db);
      bad();
      const r = await client.refusal(5000);
      assert.equal(r.close.code, c.closeCode, JSON.stringify(r));
      assert.equal(r.error?.code ?? null, c.code);
      if (r.error !== null) assert.equal(r.close.reason, c.code);
      if (c.message !== undefined) assert.match(r.error?.message ?? '', c.message);
      assert.deepEqual(counts(tc.collector.sqlite!.db), before, 'the refused frame stored nothing, and used no token');
      const dump = ['agents', 'hosts', 'reports', 'inventory_contents'].map((table) => JSON.stringify(tc.collector.sqlite!.db.prepare(`SELECT * FROM ${table}`).all())).join('');
      for (const h of HOSTILE) assert.equal(dump.includes(h), false, `${h} reached the store`);
      await stillServes(tc);
    });
  }

  it('counted every refusal by its code', () => {
    const refused = tc.collector.gateway.stats.refused;
    assert.equal(refused.PW_ERR_PROTOCOL, badCases.filter((c) => c.code === 'PW_ERR_PROTOCOL').length, JSON.stringify(refused));
    assert.equal(refused.PW_ERR_INPUT_TOO_LARGE, 3);
    assert.equal(refused.WS_ERR_UNSUPPORTED_MESSAGE_LENGTH, undefined, 'a frame over a limit is refused with our code, not only ws\'s');
    assert.equal(refused.PW_ERR_UNAUTHENTICATED, 5);
  });
});


describe('gateway: throughput over loopback (one agent, sequential acks)', () => {
  it('full reports with new content, full reports with shared content, unchanged reports', async (t) => {
    const tc = await startCollector(t);
    const { client } = await tc.agent('bench');
    const measure = async (n: number, make: (i: number) => Inventory | null, hashOf: (i: number) => string, expect: string) => {
      const started = process.hrtime.bigint();
      for (let i = 0; i < n; i++) {
        const inv = make(i);
        const ack = await client.report(inv, inv === null ? hashOf(i) : inventoryHash(inv));
        assert.equal(ack.status, expect);
      }
      return n / (Number(process.hrtime.bigint() - started) / 1e9);
    };
    const n = 150;
    const fresh = await measure(n, (i) => variant(thisHost, i), () => '', 'stored');
    const shared = await measure(n, (i) => ({ ...thisHost, agentVersion: `0.1.${i}` }), () => '', 'stored');
    const lastHash = inventoryHash({ ...thisHost, agentVersion: `0.1.${n - 1}` });
    const unchanged = await measure(2000, () => null, () => lastHash, 'unchanged');
    const contents = tc.collector.sqlite!.db.prepare('SELECT count(*) FROM inventory_contents').pluck().get();
    // The agent keeps the inventories its newest REPORTS_PER_AGENT reports name: all the shared one.
    assert.equal(contents, 1, 'shared-content reports stored their packages once, and the older inventories were let go');
    t.diagnostic(`${thisHost.packages.length}-package reports, one agent, ack before the next: new content ${fresh.toFixed(0)}/s, shared content ${shared.toFixed(0)}/s, unchanged ${unchanged.toFixed(0)}/s`);
    await client.close();
  });

  it('50 agents at once, each 100 unchanged reports pipelined', async (t) => {
    const tc = await startCollector(t);
    const agents = await Promise.all(Array.from({ length: 50 }, (_, i) => tc.agent(`host-${i}`)));
    const hash = inventoryHash(thisHost);
    await Promise.all(agents.map(({ client }) => client.report(thisHost, hash)));
    const started = process.hrtime.bigint();
    await Promise.all(
      agents.map(async ({ client }) => {
        for (let i = 0; i < 100; i++) client.sendReport(null, hash);
        for (let i = 0; i < 100; i++) assert.equal((await client.expect('ack')).status, 'unchanged');
      }),
    );
    const perSecond = 5000 / (Number(process.hrtime.bigint() - started) / 1e9);
    assert.equal(tc.collector.gateway.stats.reports.unchanged, 5000);
    assert.equal(tc.collector.sqlite!.db.prepare('SELECT count(*) FROM inventory_contents').pluck().get(), 1, '50 hosts, one content');
    t.diagnostic(`50 agents, 5000 unchanged reports: ${perSecond.toFixed(0)}/s (test client in the same process)`);
    for (const { client } of agents) await client.close();
  });
});

describe('gateway over TLS', () => {
  it('serves wss with a certificate and key (openssl self-signed), the agent trusting that CA', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pw-tls-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await run(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')],
      { timeout: 30_000 },
    );
    const cert = await readFile(join(dir, 'cert.pem'));
    const tc = await startCollector(t, { tls: { cert, key: await readFile(join(dir, 'key.pem')) } });
    assert.match(tc.collector.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(tc.collector.agentUrl, /^wss:\/\/127\.0\.0\.1:\d+\/v1\/agent$/);
    const ws = new WebSocket(tc.collector.agentUrl, { ca: cert });
    const first = await new Promise<string>((resolve, reject) => {
      ws.once('message', (d: Buffer) => {
        resolve(d.toString('utf8'));
      });
      ws.once('error', reject);
    });
    assert.equal((JSON.parse(first) as { type: string }).type, 'challenge');
    ws.terminate();
    // Without the CA the agent refuses the collector.
    const untrusted = new WebSocket(tc.collector.agentUrl);
    await assert.rejects(
      new Promise((_resolve, reject) => {
        untrusted.once('error', reject);
      }),
      /self-signed|certificate/,
    );
  });
});
