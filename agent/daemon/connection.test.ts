/**
 * CollectorConnection against a real ws server that sends exactly the frames each case
 * needs: every way a collector (or something pretending to be one) can misbehave.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { type WebSocket, WebSocketServer } from 'ws';
import { PROTOCOL_VERSION } from '../../shared/protocol.ts';
import { AGENT_MAX_PAYLOAD, CollectorConnection } from './connection.ts';

const NONCE = 'A'.repeat(43);
const ACK_ID = '0b7c7d53-5f0e-4c8e-9a55-2f3d1c9b7a10';

interface Scripted {
  url: string;
  /** The close code the server received from the agent (null: the TCP connection just ended). */
  closeCode: Promise<number | null>;
}

async function scripted(t: { after: (fn: () => unknown) => void }, script: (ws: WebSocket) => void): Promise<Scripted> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/v1/agent' });
  await once(wss, 'listening');
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => {
          resolve();
        });
      }),
  );
  const closeCode = new Promise<number | null>((resolve) => {
    wss.on('connection', (ws) => {
      ws.on('error', () => undefined);
      ws.on('close', (code) => {
        resolve(code === 1005 || code === 1006 ? null : code);
      });
      script(ws);
    });
  });
  return { url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/v1/agent`, closeCode };
}


describe('CollectorConnection', () => {
  it('valid messages arrive in order, validated, whether next() waits or they were queued', async (t) => {
    const s = await scripted(t, (ws) => {
      ws.send(JSON.stringify({ type: 'challenge', protocol: PROTOCOL_VERSION, nonce: NONCE }));
      ws.send(JSON.stringify({ type: 'ack', id: ACK_ID, status: 'stored' }));
    });
    const conn = await CollectorConnection.open({ url: s.url });
    t.after(() => {
      conn.close();
    });
    assert.deepEqual(await conn.next(2000), { type: 'challenge', protocol: PROTOCOL_VERSION, nonce: NONCE });
    assert.deepEqual(await conn.next(2000), { type: 'ack', id: ACK_ID, status: 'stored' });
  });

  const hostile: [string, (ws: WebSocket) => void, string, number][] = [
    ['a frame that is not JSON', (ws) => { ws.send('{"type":"challenge",'); }, 'PW_ERR_MALFORMED_INPUT', 4000],
    ['a binary frame', (ws) => { ws.send(Buffer.from([0, 1, 2, 3])); }, 'PW_ERR_MALFORMED_INPUT', 4000],
    ['an unknown message type', (ws) => { ws.send(JSON.stringify({ type: 'instruction', kind: 'reboot' })); }, 'PW_ERR_MALFORMED_INPUT', 4000],
    ['an extra field on a strict message', (ws) => { ws.send(JSON.stringify({ type: 'ack', id: ACK_ID, status: 'stored', sql: "'; DROP TABLE x;--" })); }, 'PW_ERR_MALFORMED_INPUT', 4000],
    ['a wrong type (nonce as a number)', (ws) => { ws.send(JSON.stringify({ type: 'challenge', protocol: PROTOCOL_VERSION, nonce: 42 })); }, 'PW_ERR_MALFORMED_INPUT', 4000],
    ['a JSON array', (ws) => { ws.send('[]'); }, 'PW_ERR_MALFORMED_INPUT', 4000],
    [`a frame over the agent's ${AGENT_MAX_PAYLOAD}-byte limit`, (ws) => { ws.send('x'.repeat(AGENT_MAX_PAYLOAD + 1)); }, 'PW_ERR_INPUT_TOO_LARGE', 1009],
  ];
  for (const [name, send, code, closeCode] of hostile) {
    it(`${name}: ${code}, the agent closes with ${closeCode}`, async (t) => {
      const s = await scripted(t, send);
      const conn = await CollectorConnection.open({ url: s.url });
      await assert.rejects(conn.next(5000), { code });
      assert.equal(await s.closeCode, closeCode);
      // Every later call fails the same way instead of hanging.
      await assert.rejects(conn.next(5000), { code });
      await assert.rejects(conn.send({ type: 'report', id: ACK_ID, hash: '0'.repeat(64), inventory: null }));
    });
  }

  const refusals: [string, (ws: WebSocket) => void, string, number, boolean][] = [
    [
      'error then close 4003 (revoked)',
      (ws) => {
        ws.send(JSON.stringify({ type: 'error', code: 'PW_ERR_AGENT_REVOKED', message: 'agent x was revoked at 2026-11-26T00:00:00Z' }));
        ws.close(4003, 'PW_ERR_AGENT_REVOKED');
      },
      'PW_ERR_AGENT_REVOKED',
      4003,
      true,
    ],
    ['a bare close 4001 (no error message)', (ws) => { ws.close(4001, ''); }, 'PW_ERR_UNAUTHENTICATED', 4001, true],
    ['a bare close 4004', (ws) => { ws.close(4004, ''); }, 'PW_ERR_TOKEN_REFUSED', 4004, true],
    ['close 1011 with the store down', (ws) => {
        ws.send(JSON.stringify({ type: 'error', code: 'PW_ERR_STORE', message: 'send it again later' }));
        ws.close(1011, 'PW_ERR_STORE');
      }, 'PW_ERR_STORE', 1011, true],
    ['close 1001 (collector shutting down)', (ws) => { ws.close(1001, 'collector shutting down'); }, 'PW_ERR_CONNECTION_CLOSED', 1001, true],
    ['the TCP connection dropped', (ws) => { ws.terminate(); }, 'PW_ERR_CONNECTION_CLOSED', 1006, false],
  ];
  for (const [name, act, code, closeCode, byCollector] of refusals) {
    it(`${name}: ${code} with close code ${closeCode}`, async (t) => {
      const s = await scripted(t, act);
      const conn = await CollectorConnection.open({ url: s.url });
      await assert.rejects(conn.next(5000), (err: Error & { code?: string; closeCode?: number }) => {
        assert.equal(err.code, code);
        assert.equal(err.closeCode, closeCode);
        return true;
      });
      assert.equal(conn.endedByCollector, byCollector);
      const ended = await conn.closed;
      assert.equal(ended.code, code);
    });
  }

  it('an error message without a close: the agent closes after 2 s with the collector\'s code', async (t) => {
    const s = await scripted(t, (ws) => { ws.send(JSON.stringify({ type: 'error', code: 'PW_ERR_PROTOCOL', message: 'step out of order' })); });
    const conn = await CollectorConnection.open({ url: s.url });
    const started = Date.now();
    await assert.rejects(conn.next(10_000), { code: 'PW_ERR_PROTOCOL', message: /step out of order/ });
    assert.ok(Date.now() - started >= 1900);
    assert.equal(await s.closeCode, 4000);
  });

  it('silence past the timeout: PW_ERR_TIMEOUT, the agent closes with 4008', async (t) => {
    const s = await scripted(t, () => undefined);
    const conn = await CollectorConnection.open({ url: s.url });
    await assert.rejects(conn.next(150), { code: 'PW_ERR_TIMEOUT', closeCode: 4008 });
    assert.equal(await s.closeCode, 4008);
  });

  it('pings from the collector are answered (by ws) and count as signs of life', async (t) => {
    let pong: Promise<unknown> = Promise.resolve();
    const s = await scripted(t, (ws) => {
      pong = once(ws, 'pong');
      setTimeout(() => {
        ws.ping();
      }, 100);
    });
    const conn = await CollectorConnection.open({ url: s.url });
    t.after(() => {
      conn.close();
    });
    const before = conn.lastHeard;
    await new Promise((r) => setTimeout(r, 50));
    await pong;
    assert.ok(conn.lastHeard > before);
  });
});
