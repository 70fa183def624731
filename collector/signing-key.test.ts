import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { publicKeyOfPem } from '../shared/signing.ts';
import { captureLogger } from '../shared/testing/capture-logger.ts';
import { collectorKeyPath, KEY_FILE, loadOrCreateKey, readCollectorKey } from './signing-key.ts';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-key-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe('collectorKeyPath', () => {
  it('is collector.key beside the SQLite file unless a keyFile is named', () => {
    assert.equal(collectorKeyPath({ dbPath: '/var/lib/patchwarden/collector.db' }), `/var/lib/patchwarden/${KEY_FILE}`);
    assert.equal(collectorKeyPath({ dbPath: '/var/lib/patchwarden/collector.db', keyFile: '/etc/patchwarden/k.pem' }), '/etc/patchwarden/k.pem');
    assert.equal(collectorKeyPath({ keyFile: '/etc/patchwarden/k.pem' }), '/etc/patchwarden/k.pem');
  });
  it('asks for a keyFile when there is no file to sit beside', () => {
    assert.throws(() => collectorKeyPath({ dbPath: ':memory:' }), { code: 'PW_ERR_USAGE' });
    assert.throws(() => collectorKeyPath({}), { code: 'PW_ERR_USAGE' });
  });
});

describe('readCollectorKey', () => {
  it('reads the key serve made and never makes one', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, KEY_FILE);
    assert.throws(() => readCollectorKey(path), { code: 'PW_ERR_SOURCE_UNAVAILABLE' });
    await assert.rejects(stat(path), { code: 'ENOENT' });
    const { made, ...key } = loadOrCreateKey(path, captureLogger().logger);
    assert.equal(made, true);
    assert.deepEqual(readCollectorKey(path), key);
  });
  it('refuses a file that is not an ed25519 key', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, KEY_FILE);
    await writeFile(path, 'hello\n', { mode: 0o600 });
    assert.throws(() => readCollectorKey(path), { code: 'PW_ERR_SOURCE_UNAVAILABLE' });
  });
});

describe('loadOrCreateKey', () => {
  it('makes an ed25519 key with mode 0600 at first start and reads the same key after', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'collector.key');
    const { logger } = captureLogger();
    const first = loadOrCreateKey(path, logger);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal(publicKeyOfPem(await readFile(path, 'utf8')), first.publicKey);
    assert.equal(first.made, true);
    const again = loadOrCreateKey(path, logger);
    assert.deepEqual([again.publicKey, again.made], [first.publicKey, false]);
  });

  it('warns when the key can be read by others', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'collector.key');
    const { logger, lines } = captureLogger();
    loadOrCreateKey(path, logger);
    await chmod(path, 0o644);
    loadOrCreateKey(path, logger);
    assert.ok(lines.some((l) => l.includes('chmod 600')), lines.join(''));
  });

  const bad: [string, string][] = [
    ['not PEM', 'hello\n'],
    ['an RSA-looking PEM with garbage', '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'],
    ['empty', ''],
  ];
  for (const [name, content] of bad) {
    it(`a key file that is ${name} is refused with PW_ERR_USAGE and left alone`, async (t) => {
      const dir = await tempDir(t);
      const path = join(dir, 'collector.key');
      await writeFile(path, content, { mode: 0o600 });
      assert.throws(() => loadOrCreateKey(path, captureLogger().logger), { code: 'PW_ERR_USAGE' });
      assert.equal(await readFile(path, 'utf8'), content);
    });
  }
});
