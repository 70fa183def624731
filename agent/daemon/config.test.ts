import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { generateKeyPair, publicKeyOfPem, signBytes, verifyBytes } from '../../shared/signing.ts';
import { type AgentConfigInput, defaultKeyFile, loadConfig, loadPrivateKey, normalizeCollectorUrl, saveConfig, savePrivateKey } from './config.ts';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'pw-config-'));
  t.after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

const collectorKey = generateKeyPair().publicKey;

function sample(dir: string): AgentConfigInput {
  return {
    collectorUrl: 'wss://collector.example:8443/v1/agent',
    agentId: '0b7c7d53-5f0e-4c8e-9a55-2f3d1c9b7a10',
    collectorPublicKey: collectorKey,
    keyFile: join(dir, 'agent.key'),
    spoolDir: join(dir, 'spool'),
    spoolMaxBytes: 1024 * 1024,
    intervalSeconds: 900,
  };
}

describe('normalizeCollectorUrl', () => {
  const good: [string, string][] = [
    ['wss://collector.example:8443', 'wss://collector.example:8443/v1/agent'],
    ['wss://collector.example:8443/', 'wss://collector.example:8443/v1/agent'],
    ['ws://127.0.0.1:9000/v1/agent', 'ws://127.0.0.1:9000/v1/agent'],
    ['https://collector.example/pw/v1/agent', 'wss://collector.example/pw/v1/agent'],
    ['http://[::1]:8080', 'ws://[::1]:8080/v1/agent'],
  ];
  for (const [input, want] of good) {
    it(`${input} -> ${want}`, () => {
      assert.equal(normalizeCollectorUrl(input), want);
    });
  }
  const bad: [string, RegExp][] = [
    ['collector.example:8443', /must start with wss:\/\/ or ws:\/\//],
    ['ftp://collector.example', /must start with wss:\/\//],
    ['not a url', /is not a URL/],
    ['wss://user:secret@collector.example', /must not carry credentials/],
  ];
  for (const [input, pattern] of bad) {
    it(`${input} is refused with PW_ERR_USAGE`, () => {
      assert.throws(() => normalizeCollectorUrl(input), { code: 'PW_ERR_USAGE', message: pattern });
    });
  }
});

describe('saveConfig + loadConfig', () => {
  it('round trip: the loaded config is deep-equal and frozen', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'agent.json');
    await saveConfig(file, sample(dir));
    const loaded = await loadConfig(file);
    assert.deepEqual(loaded, sample(dir));
    assert.ok(Object.isFrozen(loaded));
    assert.throws(() => {
      (loaded as { agentId: string }).agentId = 'x';
    }, TypeError);
    assert.equal(statSync(file).mode & 0o777, 0o600);
  });

  it('relative paths are relative to the config file, not to the working directory', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'agent.json');
    writeFileSync(file, JSON.stringify({ ...sample(dir), keyFile: 'agent.key', spoolDir: './spool', caFile: '../ca.pem' }));
    const loaded = await loadConfig(file);
    assert.equal(loaded.keyFile, join(dir, 'agent.key'));
    assert.equal(loaded.spoolDir, join(dir, 'spool'));
    assert.equal(loaded.caFile, join(dir, '..', 'ca.pem'));
  });

  it('defaultKeyFile is agent.key beside the config', () => {
    assert.equal(defaultKeyFile('/etc/patchwarden/agent.json'), '/etc/patchwarden/agent.key');
  });

  const bad: [string, (dir: string) => string | Buffer | null, RegExp][] = [
    ['a missing file says to enroll first', () => null, /cannot open the agent config .*ENOENT.*patchwarden-agent enroll/],
    ['an empty file', () => '', /is not JSON/],
    ['truncated JSON', (dir) => JSON.stringify(sample(dir)).slice(0, 60), /is not JSON/],
    ['binary garbage', () => Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2, 0xff, 0xfe]), /is not JSON/],
    ['a JSON array', () => '[]', /is invalid: \(top level\)/],
    ['an extra field', (dir) => JSON.stringify({ ...sample(dir), token: 'x' }), /is invalid: .*token/],
    ['a missing agentId', (dir) => JSON.stringify({ ...sample(dir), agentId: undefined }), /is invalid: agentId/],
    ['an http collector URL', (dir) => JSON.stringify({ ...sample(dir), collectorUrl: 'http://x' }), /collectorUrl: must start with ws/],
    ['a spool bound under 64 KiB', (dir) => JSON.stringify({ ...sample(dir), spoolMaxBytes: 10 }), /spoolMaxBytes/],
    ['a zero interval', (dir) => JSON.stringify({ ...sample(dir), intervalSeconds: 0 }), /intervalSeconds/],
    ['a collector key that is not 32 bytes of base64url', (dir) => JSON.stringify({ ...sample(dir), collectorPublicKey: 'abc' }), /collectorPublicKey/],
    ['a 1 MiB file', () => ' '.repeat(1024 * 1024), /larger than 65536 bytes/],
  ];
  for (const [name, contents, pattern] of bad) {
    it(`${name}: PW_ERR_USAGE naming the file`, async (t) => {
      const dir = tempDir(t);
      const file = join(dir, 'agent.json');
      const c = contents(dir);
      if (c !== null) writeFileSync(file, c);
      await assert.rejects(loadConfig(file), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'PW_ERR_USAGE');
        assert.match(err.message, pattern);
        assert.ok(err.message.includes(file), err.message);
        return true;
      });
    });
  }

  it('saveConfig refuses an invalid config and writes nothing', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'agent.json');
    await assert.rejects(saveConfig(file, { ...sample(dir), agentId: 'nope' }), { code: 'PW_ERR_USAGE' });
    assert.throws(() => statSync(file), { code: 'ENOENT' });
  });
});

describe('savePrivateKey + loadPrivateKey', () => {
  it('written with mode 0600 and loaded back as the same ed25519 key', async (t) => {
    const dir = tempDir(t);
    const pair = generateKeyPair();
    const file = join(dir, 'agent.key');
    await savePrivateKey(file, pair.privateKeyPem);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const { key, looseMode } = await loadPrivateKey(file);
    assert.equal(looseMode, null);
    const data = Buffer.from('nonce');
    assert.ok(verifyBytes(pair.publicKey, data, signBytes(key, data)));
    assert.equal(publicKeyOfPem(pair.privateKeyPem), pair.publicKey);
  });

  it('a key readable by others is loaded and reported as loose', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'agent.key');
    writeFileSync(file, generateKeyPair().privateKeyPem);
    chmodSync(file, 0o644);
    assert.equal((await loadPrivateKey(file)).looseMode, 0o644);
  });

  const bad: [string, () => string, RegExp][] = [
    ['an RSA key', () => generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), /is rsa, not ed25519/],
    ['a public key', () => generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString(), /not a PEM private key/],
    ['garbage', () => 'hello', /not a PEM private key/],
    ['a truncated PEM', () => generateKeyPair().privateKeyPem.slice(0, 50), /not a PEM private key/],
  ];
  for (const [name, contents, pattern] of bad) {
    it(`${name} is refused with PW_ERR_USAGE`, async (t) => {
      const dir = tempDir(t);
      const file = join(dir, 'agent.key');
      writeFileSync(file, contents(), { mode: 0o600 });
      await assert.rejects(loadPrivateKey(file), { code: 'PW_ERR_USAGE', message: pattern });
    });
  }
});
