/**
 * Refused authentication over real sockets: the dashboard login and the API from several
 * loopback addresses (127.0.0.2 and .3 are as real a source as 127.0.0.1 on Linux), so the
 * per-address limit, the log lines and the counters are what a real peer would meet.
 */
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { getRequestListener } from '@hono/node-server';
import { AUTH_FAILURE_BURST, AUTH_FAILURE_REFILL_MS, AuthFailureLimiter } from './auth-limiter.ts';
import { type Fixture, makeFixture } from '../../shared/testing/http-fixture.ts';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function send(port: number, from: string, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, localAddress: from, method, path, headers: { ...headers, ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }) }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        chunks.push(c);
      });
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const WRONG = 'pwa_' + 'x'.repeat(43);

describe('refused authentication: logged without the secret, counted, and limited per source address', () => {
  let fx: Fixture;
  let port = 0;
  let close = (): void => undefined;
  const clock = { ms: Date.now() };

  before(async () => {
    fx = await makeFixture({ feeds: false, authLimiter: new AuthFailureLimiter({ now: () => clock.ms }) });
    const listener = getRequestListener(fx.app.fetch);
    const server = createServer((req, res) => {
      void listener(req, res);
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    port = (server.address() as AddressInfo).port;
    close = () => {
      server.closeAllConnections();
      server.close();
    };
  });
  after(() => {
    close();
    fx.close();
  });

  const origin = () => `http://127.0.0.1:${port}`;
  const login = (from: string, token: string) =>
    send(port, from, 'POST', '/login', { 'content-type': 'application/x-www-form-urlencoded', origin: origin() }, `token=${encodeURIComponent(token)}&next=%2F`);
  const audit = (action: string) => fx.db.prepare<[string], { actor: string; target: string | null; detail: string | null }>('SELECT actor, target, detail FROM audit WHERE action = ? ORDER BY id').all(action);
  const logs = () => fx.logs.map((l) => JSON.parse(l) as Record<string, unknown>);

  it(`300 failed logins from one address: ${AUTH_FAILURE_BURST} answered 401, the rest 429 with Retry-After, and a right token from another address still logs in`, async () => {
    const started = Date.now();
    const statuses = new Map<number, number>();
    let retryAfter: unknown;
    for (let i = 0; i < 300; i++) {
      // Half look like our tokens, half are free text: both are guesses.
      const r = await login('127.0.0.2', i % 2 === 0 ? WRONG : `guess-${i}`);
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      if (r.status === 429) {
        retryAfter = r.headers['retry-after'];
        assert.match(r.body, /Too many failed logins from your address/);
      }
    }
    assert.deepEqual(Object.fromEntries(statuses), { 401: AUTH_FAILURE_BURST, 429: 300 - AUTH_FAILURE_BURST });
    assert.equal(retryAfter, String(AUTH_FAILURE_REFILL_MS / 1000));
    const elsewhere = await login('127.0.0.1', fx.bearer.viewer);
    assert.equal(elsewhere.status, 303, 'another address is not locked out');
    assert.match(String(elsewhere.headers['set-cookie']), /pw_session=/);
    assert.deepEqual(audit('dashboard.login').map((a) => [a.actor, a.detail]), [['api:viewer', '{"source":"127.0.0.1"}']], 'a login is audited with its source');
    const locked = await login('127.0.0.2', fx.bearer.viewer);
    assert.equal(locked.status, 429, 'while limited, a right token is not even looked at: a lucky guess cannot be told');
    assert.ok(Date.now() - started < 30_000);
  });

  it('each refusal is one log line with its reason and source, never the token', () => {
    const refused = logs().filter((l) => l.msg === 'authentication refused' && l.source === '127.0.0.2');
    assert.equal(refused.length, AUTH_FAILURE_BURST);
    assert.deepEqual(new Set(refused.map((l) => l.reason)), new Set(['unknown', 'malformed']));
    for (const l of refused) assert.equal(l.code, 'PW_ERR_UNAUTHENTICATED');
    const all = fx.logs.join('\n');
    assert.ok(!all.includes(WRONG) && !all.includes('guess-') && !all.includes(fx.bearer.viewer), 'no token, right or wrong, in the log');
    const lock = logs().filter((l) => l.code === 'PW_ERR_RATE_LIMITED');
    assert.deepEqual(lock.map((l) => [l.source, l.via]), [['127.0.0.2', 'login']], 'the lockout is logged once');
  });

  it('counts refusals by reason (no address label) and audits the lockout once', async () => {
    const m = fx.metrics.authRefusedTotal;
    assert.equal(m.get({ reason: 'unknown' }) + m.get({ reason: 'malformed' }), AUTH_FAILURE_BURST);
    assert.equal(m.get({ reason: 'rate-limited' }), 300 - AUTH_FAILURE_BURST + 1);
    assert.doesNotMatch(await fx.metrics.registry.render(), /127\.0\.0\./);
    assert.deepEqual(audit('auth.rate-limited').map((a) => [a.actor, a.target]), [['anonymous', 'source:127.0.0.2']]);
  });

  it('the API shares the limit: bad bearer tokens from one address get 429 PW_ERR_RATE_LIMITED with Retry-After', async () => {
    const answers: Answer[] = [];
    for (let i = 0; i < AUTH_FAILURE_BURST + 2; i++) answers.push(await send(port, '127.0.0.3', 'GET', '/api/v1/whoami', { authorization: `Bearer ${WRONG}` }));
    assert.deepEqual(answers.map((a) => a.status), [...new Array<number>(AUTH_FAILURE_BURST).fill(401), 429, 429]);
    const last = answers.at(-1);
    assert.ok(last !== undefined);
    assert.equal(last.headers['retry-after'], String(AUTH_FAILURE_REFILL_MS / 1000));
    assert.equal((JSON.parse(last.body) as { error: { code: string } }).error.code, 'PW_ERR_RATE_LIMITED');
    const ok = await send(port, '127.0.0.1', 'GET', '/api/v1/whoami', { authorization: `Bearer ${fx.bearer.admin}` });
    assert.equal(ok.status, 200);
  });

  it('the allowance refills: one more try after Retry-After', async () => {
    clock.ms += AUTH_FAILURE_REFILL_MS;
    const r = await send(port, '127.0.0.3', 'GET', '/api/v1/whoami', { authorization: `Bearer ${fx.bearer.viewer}` });
    assert.equal(r.status, 200);
  });

  it('a revoked token used again is audited under its name', async () => {
    const r = await send(port, '127.0.0.4', 'GET', '/api/v1/whoami', { authorization: `Bearer ${fx.bearer.revoked}` });
    assert.equal(r.status, 401);
    const [row, ...more] = audit('auth.refused');
    assert.ok(row !== undefined && more.length === 0);
    assert.equal(row.actor, 'api:gone');
    assert.match(row.detail ?? '', /"reason":"revoked","source":"127.0.0.4","via":"api"/);
    assert.ok(logs().some((l) => l.reason === 'revoked' && l.tokenName === 'gone' && l.source === '127.0.0.4'));
  });

  it('a 403 is logged, counted and audited with the token that asked', async () => {
    const r = await send(port, '127.0.0.5', 'GET', '/api/v1/audit', { authorization: `Bearer ${fx.bearer.viewer}` });
    assert.equal(r.status, 403);
    const rows = audit('api.forbidden');
    assert.deepEqual(rows.map((a) => [a.actor, a.target]), [['api:viewer', 'route:GET /api/v1/audit']]);
    assert.match(rows[0]?.detail ?? '', /"code":"PW_ERR_FORBIDDEN","source":"127.0.0.5"/);
    assert.ok(logs().some((l) => l.code === 'PW_ERR_FORBIDDEN' && l.actor === 'api:viewer' && l.source === '127.0.0.5' && l.route === '/api/v1/audit'));
    assert.equal(fx.metrics.authRefusedTotal.get({ reason: 'forbidden' }), 1);
  });

  it('a cross-site login post (403, nobody named) is logged and counted, not audited', async () => {
    const r = await send(port, '127.0.0.6', 'POST', '/login', { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example' }, 'token=x');
    assert.equal(r.status, 403);
    assert.ok(logs().some((l) => l.reason === 'forbidden' && l.source === '127.0.0.6' && l.actor === null));
    assert.equal(audit('api.forbidden').length, 1);
  });
});
