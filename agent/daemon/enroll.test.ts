import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { publicKeyOfPem } from '../../shared/signing.ts';
import { DEFAULT_SPOOL_DIR, loadConfig } from './config.ts';
import { defaultSpoolDir, enroll, enrollTransport, type EnrollTransport } from './enroll.ts';
import { FakeCollector } from '../../shared/testing/fake-collector.ts';
import { tempDir } from '../../shared/testing/daemon-fixtures.ts';

async function collector(t: { after: (fn: () => unknown) => void }): Promise<FakeCollector> {
  const c = await FakeCollector.start();
  t.after(() => c.stop());
  return c;
}

describe('enroll', () => {
  it('writes the config and the key beside it, both 0600 under umask 022; the collector holds the public key of that private key', async (t) => {
    const umask = process.umask(0o022);
    t.after(() => process.umask(umask));
    const c = await collector(t);
    const dir = tempDir(t);
    const configPath = join(dir, 'etc', 'agent.json');
    const { config } = await enroll({ collectorUrl: c.url, token: c.createToken(), configPath });
    assert.equal(statSync(configPath).mode & 0o777, 0o600);
    assert.equal(statSync(config.keyFile).mode & 0o777, 0o600);
    assert.equal(config.keyFile, join(dir, 'etc', 'agent.key'));
    assert.equal(config.spoolDir, join(dir, 'etc', 'spool'));
    assert.deepEqual(await loadConfig(configPath), config);
    const record = c.agents.get(config.agentId);
    assert.ok(record, 'the collector knows the agent id written to the config');
    assert.equal(record.publicKey, publicKeyOfPem(readFileSync(config.keyFile, 'utf8')));
    assert.equal(config.collectorPublicKey, c.collectorKey.publicKey);
    assert.equal(record.hostname, hostname());
    assert.equal(record.machineId, readFileSync('/etc/machine-id', 'utf8').trim());
    assert.deepEqual(readdirSync(join(dir, 'etc')).sort(), ['agent.json', 'agent.key']);
  });

  it('a collector URL without a path gets /v1/agent', async (t) => {
    const c = await collector(t);
    const { config } = await enroll({ collectorUrl: `ws://127.0.0.1:${c.port}`, token: c.createToken(), configPath: join(tempDir(t), 'agent.json') });
    assert.equal(config.collectorUrl, c.url);
  });

  it("the default config path puts the spool in the agent unit's StateDirectory; any other path puts it beside the config", () => {
    assert.equal(defaultSpoolDir('/etc/patchwarden/agent.json'), DEFAULT_SPOOL_DIR);
    assert.equal(DEFAULT_SPOOL_DIR, '/var/lib/patchwarden-agent/spool');
    assert.match(readFileSync(join(import.meta.dirname, '..', '..', 'systemd', 'patchwarden-agent.service'), 'utf8'), /^StateDirectory=patchwarden-agent$/m);
    assert.equal(defaultSpoolDir('/srv/pw/agent.json'), '/srv/pw/spool');
  });

  it('a token used past its limit: PW_ERR_TOKEN_REFUSED with close 4004, nothing written', async (t) => {
    const c = await collector(t);
    const token = c.createToken(1);
    await enroll({ collectorUrl: c.url, token, configPath: join(tempDir(t), 'agent.json') });
    const dir = tempDir(t);
    await assert.rejects(enroll({ collectorUrl: c.url, token, configPath: join(dir, 'agent.json') }), (err: Error & { code?: string; closeCode?: number }) => {
      assert.equal(err.code, 'PW_ERR_TOKEN_REFUSED');
      assert.equal(err.closeCode, 4004);
      assert.match(err.message, /token is used up/);
      return true;
    });
    assert.deepEqual(readdirSync(dir), []);
    assert.equal(c.agents.size, 1);
  });

  const local: [string, (dir: string) => { token?: string; configPath?: string; identity?: { hostname: string; machineId: string | null }; caFile?: string }, string, RegExp][] = [
    ['a token with a space', () => ({ token: 'abc def ghi jkl mno' }), 'PW_ERR_USAGE', /not one/],
    ['a token shorter than 16 characters', () => ({ token: 'short' }), 'PW_ERR_USAGE', /not one/],
    ['a config directory that is a file', (dir) => (writeFileSync(join(dir, 'file'), 'x'), { configPath: join(dir, 'file', 'agent.json') }), 'PW_ERR_USAGE', /cannot write the agent config/],
    ['a CA file that does not exist', (dir) => ({ caFile: join(dir, 'nope.pem') }), 'PW_ERR_CONNECT', /cannot read the CA file/],
    ['a host name carrying shell', () => ({ identity: { hostname: 'web-1;rm -rf /', machineId: null } }), 'PW_ERR_MALFORMED_INPUT', /hostname "web-1;rm -rf \/": not a valid host name/],
    ['a host name carrying HTML', () => ({ identity: { hostname: '<script>alert(1)</script>', machineId: null } }), 'PW_ERR_MALFORMED_INPUT', /not a valid host name/],
    ['a 300-character host name', () => ({ identity: { hostname: 'a'.repeat(300), machineId: null } }), 'PW_ERR_MALFORMED_INPUT', /hostname/],
  ];
  for (const [name, make, code, pattern] of local) {
    it(`${name}: ${code} before the collector is contacted, so the token is not spent`, async (t) => {
      const c = await collector(t);
      const dir = tempDir(t);
      const token = c.createToken(1);
      const opts = make(dir);
      await assert.rejects(enroll({ collectorUrl: c.url, token, configPath: join(dir, 'agent.json'), ...opts }), { code, message: pattern });
      assert.equal(c.attempts.length, 0, 'no connection was made');
      await enroll({ collectorUrl: c.url, token, configPath: join(tempDir(t), 'agent.json') });
    });
  }

  it('an existing enrollment is refused without --force (naming its agent id) and replaced with it', async (t) => {
    const c = await collector(t);
    const configPath = join(tempDir(t), 'agent.json');
    const first = await enroll({ collectorUrl: c.url, token: c.createToken(), configPath });
    await assert.rejects(enroll({ collectorUrl: c.url, token: c.createToken(), configPath }), {
      code: 'PW_ERR_USAGE',
      message: new RegExp(`already enrolls this host as agent ${first.config.agentId}; pass --force`),
    });
    assert.equal(c.attempts.length, 1);
    const second = await enroll({ collectorUrl: c.url, token: c.createToken(), configPath, force: true });
    assert.notEqual(second.config.agentId, first.config.agentId);
    assert.equal((await loadConfig(configPath)).agentId, second.config.agentId);
  });

  const network: [string, (c: FakeCollector) => string, RegExp][] = [
    ['nothing listening', () => 'ws://127.0.0.1:1/v1/agent', /cannot connect to the collector .*ECONNREFUSED/],
    ['a wrong path (HTTP 404)', (c) => `ws://127.0.0.1:${c.port}/v2/agents`, /HTTP 404 Not Found instead of a WebSocket/],
    ['a collector that is starting (HTTP 503)', (c) => ((c.unavailable = true), c.url), /HTTP 503 Service Unavailable/],
  ];
  for (const [name, url, pattern] of network) {
    it(`${name}: PW_ERR_CONNECT, nothing written`, async (t) => {
      const c = await collector(t);
      const dir = tempDir(t);
      await assert.rejects(enroll({ collectorUrl: url(c), token: c.createToken(), configPath: join(dir, 'agent.json') }), { code: 'PW_ERR_CONNECT', message: pattern });
      assert.deepEqual(readdirSync(dir), []);
    });
  }
});

describe('enrolling over cleartext', () => {
  const table: [string, EnrollTransport][] = [
    ['wss://collector.example:8443/v1/agent', 'tls'],
    ['wss://10.0.0.5:8443/v1/agent', 'tls'],
    ['ws://127.0.0.1:8443/v1/agent', 'loopback'],
    ['ws://127.10.20.30:8443/v1/agent', 'loopback'],
    ['ws://localhost:8443/v1/agent', 'loopback'],
    ['ws://LOCALHOST:8443/v1/agent', 'loopback'],
    ['ws://[::1]:8443/v1/agent', 'loopback'],
    ['ws://[0:0:0:0:0:0:0:1]:8443/v1/agent', 'loopback'],
    ['ws://[::ffff:127.0.0.1]:8443/v1/agent', 'loopback'],
    ['ws://2130706433:8443/v1/agent', 'loopback'], // 127.0.0.1 as one number: WHATWG URL reads it so, and so does the connect
    ['ws://10.0.0.5:8443/v1/agent', 'cleartext'],
    ['ws://192.0.2.10:8443/v1/agent', 'cleartext'],
    ['ws://collector.example:8443/v1/agent', 'cleartext'],
    ['ws://0.0.0.0:8443/v1/agent', 'cleartext'],
    ['ws://[::]:8443/v1/agent', 'cleartext'],
    ['ws://[2001:db8::1]:8443/v1/agent', 'cleartext'],
    ['ws://localhost.example.com:8443/v1/agent', 'cleartext'],
    ['ws://127.0.0.1.example.com:8443/v1/agent', 'cleartext'],
    ['ws://[::ffff:10.0.0.5]:8443/v1/agent', 'cleartext'],
  ];
  for (const [url, want] of table) {
    it(`${url} -> ${want}`, () => {
      assert.equal(enrollTransport(url), want);
    });
  }

  // 0.0.0.0 is not a loopback address, yet Linux connects it to this host: a real
  // collector on 127.0.0.1 stands in for a remote one without leaving the machine.
  it('ws:// to a host that is not loopback: PW_ERR_CLEARTEXT_REFUSED before the collector is contacted, nothing written', async (t) => {
    const c = await collector(t);
    const dir = tempDir(t);
    await assert.rejects(enroll({ collectorUrl: `ws://0.0.0.0:${c.port}/v1/agent`, token: c.createToken(), configPath: join(dir, 'agent.json') }), {
      code: 'PW_ERR_CLEARTEXT_REFUSED',
      message: /refusing to enroll over ws:\/\/ to 0\.0\.0\.0:\d+: the enrollment token and the collector key .* in cleartext .*--insecure-cleartext/,
    });
    assert.equal(c.attempts.length, 0, 'no connection was made');
    assert.deepEqual(readdirSync(dir), []);
  });

  it('with insecureCleartext it enrolls, after a loud warning', async (t) => {
    const c = await collector(t);
    const warnings: string[] = [];
    const { config } = await enroll({
      collectorUrl: `ws://0.0.0.0:${c.port}/v1/agent`,
      token: c.createToken(),
      configPath: join(tempDir(t), 'agent.json'),
      insecureCleartext: true,
      warn: (m) => warnings.push(m),
    });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /^WARNING: --insecure-cleartext: .*cleartext \(ws:\/\/\).*run commands on this host as root/);
    assert.ok(c.agents.has(config.agentId));
  });

  it('loopback ws:// and wss:// need no flag and print no warning', async (t) => {
    const c = await collector(t);
    const warnings: string[] = [];
    await enroll({ collectorUrl: c.url, token: c.createToken(), configPath: join(tempDir(t), 'agent.json'), warn: (m) => warnings.push(m) });
    assert.deepEqual(warnings, []);
  });
});
