import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { collectInventory } from '../../agent/inventory/inventory.ts';
import { inventoryHash } from '../../shared/inventory-hash.ts';
import { DEFAULT_MAX_MESSAGE_BYTES, EnrollMessageSchema, type Inventory, PROTOCOL_VERSION } from '../../shared/protocol.ts';
import { openDatabase } from '../store/db.ts';
import { storeOn } from '../store/store.ts';
import { assertFrameLimitSupported, frameLimitOf, setFrameLimit } from './frame-limit.ts';
import { PRE_AUTH_MAX_PAYLOAD } from './gateway.ts';
import { helloFrame, newKeys, TestAgent } from '../../shared/testing/fake-agent.ts';
import { paddedHelloFrame, preAuthFrameFlood, serveInChild } from '../../shared/testing/collector-process.ts';
import { startCollector } from '../../shared/testing/collector-harness.ts';

const root = join(import.meta.dirname, '..', '..');

let thisHost: Inventory;
before(async () => {
  thisHost = await collectInventory();
});

describe('frame-limit: the per-connection limit on ws internals', () => {
  it('the installed ws has the Receiver field the limit is set on', () => {
    assert.doesNotThrow(assertFrameLimitSupported);
  });

  it('reads and sets the limit on a real connection; nonsense limits throw', async (t) => {
    const tc = await startCollector(t);
    const client = await TestAgent.connect(tc.collector.agentUrl, { maxPayload: 5000 });
    t.after(() => client.close());
    assert.equal(frameLimitOf(client.ws), 5000);
    setFrameLimit(client.ws, 1234);
    assert.equal(frameLimitOf(client.ws), 1234);
    for (const bad of [0, -1, 1.5, Number.NaN]) assert.throws(() => { setFrameLimit(client.ws, bad); }, RangeError);
  });
});

/** The largest enroll the schema accepts, every free-text character escaped in JSON. */
function largestEnroll(): string {
  const msg = {
    type: 'enroll',
    protocol: `1.0.0-${'a'.repeat(58)}`,
    agentVersion: '\u0001'.repeat(64),
    token: 't'.repeat(256),
    publicKey: 'A'.repeat(43),
    hostname: `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`,
    machineId: 'f'.repeat(32),
  };
  assert.equal(EnrollMessageSchema.safeParse(msg).success, true, 'the message must be one the schema accepts');
  return JSON.stringify(msg);
}

interface FrameCase {
  name: string;
  /** Sends on a connection that has read its challenge. */
  send: (client: TestAgent, nonce: string, agent: { agentId: string; keys: ReturnType<typeof newKeys> }) => void;
  /** The code of the error message that must come (refused), or `welcome`/`ack` for a frame that must pass. */
  expect: { code: string; closeCode: number } | 'ack';
}

const frameCases: FrameCase[] = [
  { name: `a ${PRE_AUTH_MAX_PAYLOAD}-byte frame before hello passes the size check (refused as not a hello)`, send: (c) => { c.sendRaw(paddedHelloFrame(PRE_AUTH_MAX_PAYLOAD)); }, expect: { code: 'PW_ERR_PROTOCOL', closeCode: 4000 } },
  { name: `a ${PRE_AUTH_MAX_PAYLOAD + 1}-byte frame before hello is refused at its header`, send: (c) => { c.sendRaw(paddedHelloFrame(PRE_AUTH_MAX_PAYLOAD + 1)); }, expect: { code: 'PW_ERR_INPUT_TOO_LARGE', closeCode: 1009 } },
  {
    name: 'three 2 KiB fragments of one message before hello are refused (fragments add up)',
    send: (c) => {
      const part = Buffer.alloc(2048, 'x');
      c.ws.send(part, { binary: false, fin: false });
      c.ws.send(part, { binary: false, fin: false });
      c.ws.send(part, { binary: false, fin: true });
    },
    expect: { code: 'PW_ERR_INPUT_TOO_LARGE', closeCode: 1009 },
  },
  { name: 'the largest enroll the schema accepts fits (refused for its unknown token, not its size)', send: (c) => { c.sendRaw(largestEnroll()); }, expect: { code: 'PW_ERR_TOKEN_REFUSED', closeCode: 4004 } },
  {
    // Frames are handled one after the other (the hello's store lookups are asynchronous):
    // a report right behind the hello is answered after the welcome, in order.
    name: 'a small report sent right behind the hello, before the welcome, is handled after it',
    send: (c, nonce, a) => {
      const small = { ...thisHost, packages: thisHost.packages.slice(0, 3) };
      c.send(helloFrame(nonce, a.agentId, a.keys));
      c.send({ type: 'report', id: '7f1c8f43-5d3c-4b8e-9a51-1c1b2f0e4a10', hash: inventoryHash(small), inventory: small });
    },
    expect: 'ack',
  },
  {
    // The limit is raised once the hello is verified, which takes the store's answer; a
    // frame whose header ws reads before then is held to the limit for strangers. Agents
    // send reports after the welcome (agent/daemon/agent.ts), so only a peer that skips it meets this.
    name: 'a large report sent right behind the hello, before the welcome, is held to the limit for strangers',
    send: (c, nonce, a) => {
      c.send(helloFrame(nonce, a.agentId, a.keys));
      c.send({ type: 'report', id: '7f1c8f43-5d3c-4b8e-9a51-1c1b2f0e4a10', hash: inventoryHash(thisHost), inventory: thisHost });
    },
    expect: { code: 'PW_ERR_INPUT_TOO_LARGE', closeCode: 1009 },
  },
];

describe('frame-limit: frames before and after authentication (in-process collector)', () => {
  for (const c of frameCases) {
    it(c.name, async (t) => {
      const tc = await startCollector(t, { gateway: { handshakeTimeoutMs: 2000, closeGraceMs: 300 } });
      const { client: first, agentId, keys } = await tc.agent();
      await first.close();
      const client = await TestAgent.connect(tc.collector.agentUrl);
      const nonce = await client.challenge();
      c.send(client, nonce, { agentId, keys });
      if (c.expect === 'ack') {
        await client.expect('welcome');
        assert.equal((await client.expect('ack')).status, 'stored');
        await client.close();
        return;
      }
      const r = await client.refusal();
      assert.deepEqual({ code: r.error?.code, closeCode: r.close.code }, c.expect, JSON.stringify(r));
      assert.equal(r.close.reason, c.expect.code);
    });
  }
  it('the largest valid enroll is far under the limit, a hello further still', () => {
    const enroll = Buffer.byteLength(largestEnroll());
    assert.ok(enroll > 1000 && enroll < PRE_AUTH_MAX_PAYLOAD / 2, `${enroll} bytes`);
    const hello = Buffer.byteLength(JSON.stringify(helloFrame('n'.repeat(43), '7f1c8f43-5d3c-4b8e-9a51-1c1b2f0e4a10', newKeys(), PROTOCOL_VERSION)));
    assert.ok(hello < 400, `${hello} bytes`);
  });
});

describe('frame-limit: a flood of oversize frames before hello (collector in its own process)', () => {
  it('64 unauthenticated connections sending a 32 MiB frame each keep its RSS within 50 MiB of its start; agents and /healthz are still served', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pw-frame-flood-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const dbPath = join(dir, 'collector.db');
    const db = openDatabase(dbPath);
    const { token } = await storeOn(db).async.tokens.create({ uses: 1, ttlMs: 3600_000, createdBy: 'test' });
    db.close();
    const child = await serveInChild(['--import', 'tsx', 'collector/main.ts'], ['--db', dbPath, '--listen', '127.0.0.1:0'], { cwd: root });
    t.after(() => child.stop());

    // Warm: the code paths of a connection, an enroll and a report are loaded before the start is read.
    const keys = newKeys();
    const agent = await TestAgent.connect(child.agentUrl);
    const { agentId } = await agent.enroll(token, keys);
    assert.equal((await agent.report(thisHost)).status, 'stored');
    await agent.close();
    await new Promise((r) => setTimeout(r, 500));

    const flood = await preAuthFrameFlood(child, { connections: 64, frameBytes: DEFAULT_MAX_MESSAGE_BYTES });
    t.diagnostic(`RSS ${flood.startMiB.toFixed(0)} MiB at the start, ${flood.peakMiB.toFixed(0)} MiB at the peak; all 64 refused in ${flood.ms.toFixed(0)} ms`);
    assert.deepEqual(
      flood.refusals.filter((r) => r.code !== 'PW_ERR_INPUT_TOO_LARGE' || r.closeCode !== 1009),
      [],
      'each oversize frame is refused at its header: error PW_ERR_INPUT_TOO_LARGE, close 1009',
    );
    assert.ok(flood.peakMiB - flood.startMiB <= 50, `RSS grew ${(flood.peakMiB - flood.startMiB).toFixed(0)} MiB (${flood.startMiB.toFixed(0)} -> ${flood.peakMiB.toFixed(0)})`);

    const again = await TestAgent.connect(child.agentUrl);
    await again.hello(agentId, keys);
    await again.close();
    const started = performance.now();
    const health = await fetch(`${child.url}/healthz`);
    assert.equal(health.status, 200);
    assert.ok(performance.now() - started < 1000);
  });
});
