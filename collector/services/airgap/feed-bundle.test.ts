/**
 * Feed bundles across the gap, through the CLI as an operator runs it: real feeds from
 * ../shared/data imported into an online collector's database, `feed export`, then `feed
 * import --trust KEY` into an offline collector's. The offline store must end up holding
 * exactly what the online one does; tampered, untrusted, stale and hostile bundles store
 * nothing.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, after, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { encodeSignedFile } from '../../../shared/signed-file.ts';
import { generateKeyPair } from '../../../shared/signing.ts';
import { type Captured, runCaptured } from '../../../shared/testing/capture.ts';
import { dataPath } from '../../../shared/testing/data.ts';
import { feedCommand } from '../../commands/feed.ts';
import { createLogger } from '../../logger.ts';
import { KEY_FILE, loadOrCreateKey } from '../../signing-key.ts';
import { openDatabase } from '../../store/db.ts';
import { asyncAdvisories, dumpStoreFile } from '../../../shared/testing/store-fixtures.ts';
import { gzipBomb } from '../../../shared/testing/feed-fixtures.ts';
import { mkfifo } from '../../../shared/testing/fifo.ts';
import { feedSigner } from './feed-bundle.ts';

const ALMA9 = dataPath('osv', 'almalinux9.osv.jsonl.gz');
const ALPINE = dataPath('alpine-secdb', 'v3.21-main.json.gz');
const KEV = dataPath('kev', 'known_exploited_vulnerabilities.json.gz');

let dir = '';
let online = '';
let onlineKey = { publicKey: '', privateKeyPem: '' };
let bundle = '';
let exported: Captured;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-bundle-'));
  const onlineDir = await mkdtemp(join(dir, 'online-'));
  online = join(onlineDir, 'c.db');
  onlineKey = loadOrCreateKey(join(onlineDir, KEY_FILE), createLogger({ destination: { write: () => undefined } }));
  const imported = await runCaptured(feedCommand, ['import', '--db', online, ALMA9, ALPINE, KEV]);
  assert.equal(imported.code, 0, imported.stderr);
  bundle = join(dir, 'feeds.pwfeeds');
  exported = await runCaptured(feedCommand, ['export', '--db', online, '--out', bundle]);
});
after(() => rm(dir, { recursive: true, force: true }));

const dump = dumpStoreFile;

let n = 0;
async function offline(): Promise<string> {
  const db = join(await mkdtemp(join(dir, 'offline-')), `c${++n}.db`);
  openDatabase(db).close();
  return db;
}

/** A bundle signed with the online key whose body is the given JSON lines. */
async function handMade(lines: unknown[] | Buffer, name: string, createdAt = new Date()): Promise<string> {
  const body = Buffer.isBuffer(lines) ? lines : gzipSync(Buffer.from(lines.map((l) => JSON.stringify(l)).join('\n') + '\n'));
  const file = join(dir, name);
  await writeFile(file, encodeSignedFile({ kind: 'feeds', signer: feedSigner(onlineKey.publicKey), createdAt, body, key: onlineKey.privateKeyPem }));
  return file;
}

describe('feed bundles (feed export -> feed import --trust)', () => {
  it('export names every feed with its counts, the file and the key to trust', () => {
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /^almalinux9\.osv\.jsonl\.gz: \d{3,} advisories, 0 KEV entries\n/m);
    assert.match(exported.stdout, /^known_exploited_vulnerabilities\.json\.gz: 0 advisories, \d{3,} KEV entries\n/m);
    assert.match(exported.stdout, new RegExp(`wrote ${bundle} \\(\\d+ bytes\\), signed by this collector's key ${onlineKey.publicKey}\\n`));
    assert.match(exported.stdout, new RegExp(`feed import --trust=${onlineKey.publicKey} feeds\\.pwfeeds\\n$`));
  });

  it('the offline store holds exactly what the online one does; a second import changes nothing', async () => {
    const db = await offline();
    const r = await runCaptured(feedCommand, ['import', '--db', db, `--trust=${onlineKey.publicKey}`, bundle]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${bundle}: feed bundle made \\S+ by ${feedSigner(onlineKey.publicKey)}\\n  almalinux9\\.osv\\.jsonl\\.gz: \\d+ added, 0 updated, 0 unchanged`));
    const want = dump(online);
    assert.ok(want.advisories > 1000 && want.kev > 1000, JSON.stringify(want));
    assert.deepEqual(dump(db), want);
    const again = await runCaptured(feedCommand, ['import', '--db', db, `--trust=${onlineKey.publicKey}`, bundle]);
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stdout, / [1-9]\d* (added|updated)/);
    assert.deepEqual(dump(db), want);
    const conn = openDatabase(db, { readonly: true });
    const feeds = await asyncAdvisories(conn).feeds();
    conn.close();
    assert.ok(feeds.every((f) => f.location?.startsWith('bundle feeds.pwfeeds (') === true && f.lastError === null), JSON.stringify(feeds));
  });

  it('--feed exports only the feeds named', async () => {
    const file = join(dir, 'alpine.pwfeeds');
    const r = await runCaptured(feedCommand, ['export', '--db', online, '--out', file, '--feed', 'v3.21-main.json.gz']);
    assert.equal(r.code, 0, r.stderr);
    const db = await offline();
    assert.equal((await runCaptured(feedCommand, ['import', '--db', db, `--trust=${onlineKey.publicKey}`, file])).code, 0);
    const conn = openDatabase(db, { readonly: true });
    assert.deepEqual((await asyncAdvisories(conn).feeds()).map((f) => f.source), ['v3.21-main.json.gz']);
    conn.close();
  });

  const refusals: [string, () => Promise<{ file: string; trust: string[] }>, RegExp][] = [
    ['no --trust', () => Promise.resolve({ file: bundle, trust: [] }), /signed by collector-\S+, whom this collector does not know: name the exporting collector's public key with --trust=KEY \(feed export prints it\) \(PW_ERR_FILE_FOREIGN\)/],
    ['another collector’s key trusted', () => Promise.resolve({ file: bundle, trust: [generateKeyPair().publicKey] }), /whom this collector does not know.*\(PW_ERR_FILE_FOREIGN\)/],
    ['one byte changed', async () => {
      const bytes = await readFile(bundle);
      bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0xff;
      const file = join(dir, 'tampered.pwfeeds');
      await writeFile(file, bytes);
      return { file, trust: [onlineKey.publicKey] };
    }, /the bundle's body does not match its signed sha256 \(PW_ERR_FILE_TAMPERED\)/],
    ['cut short', async () => {
      const bytes = await readFile(bundle);
      const file = join(dir, 'short.pwfeeds');
      await writeFile(file, bytes.subarray(0, bytes.length - 1000));
      return { file, trust: [onlineKey.publicKey] };
    }, /the bundle is cut short.*\(PW_ERR_FILE_TRUNCATED\)/],
    ['a signed advisory with a shell command for a package name', async () => ({
      file: await handMade([{ feed: { source: 'evil', kind: 'osv' } }, { advisory: { source: 'osv', id: 'ALSA-2024:1', aliases: [], summary: null, severity: 'high', published: null, modified: null, withdrawn: null, affected: [{ ecosystem: 'AlmaLinux:9', package: '$(reboot)', ranges: [], versions: [], notAffected: false }] } }], 'evil.pwfeeds'),
      trust: [onlineKey.publicKey],
    }), /line 2 of the bundle is not a feed, advisory or KEV entry.*\(PW_ERR_MALFORMED_INPUT\)/],
    ['a record before any feed line', async () => ({ file: await handMade([{ kev: { cve: 'CVE-2024-1234', dateAdded: '2024-01-01', dueDate: '2024-01-22', vendorProject: 'x', product: 'y', knownRansomwareCampaignUse: null } }], 'orphan.pwfeeds'), trust: [onlineKey.publicKey] }), /line 1: a record before any feed line \(PW_ERR_MALFORMED_INPUT\)/],
    ['a signed body of 1 MiB of gzip\'d newlines (1 GiB inflated)', async () => ({ file: await handMade(gzipBomb(1 << 20), 'bomb.pwfeeds'), trust: [onlineKey.publicKey] }), /the bundle: inflates more than 100:1 .*\(PW_ERR_INFLATE_LIMIT\)/],
    ['a FIFO named like a bundle', async () => ({ file: await mkfifo(join(dir, `fifo-${process.pid}.pwfeeds`)), trust: [onlineKey.publicKey] }), /is neither a regular file nor a directory.*\(PW_ERR_NOT_REGULAR_FILE\)/],
    ['a feed name with a path in it', async () => ({ file: await handMade([{ feed: { source: '../../etc/passwd', kind: 'osv' } }], 'path.pwfeeds'), trust: [onlineKey.publicKey] }), /line 1 .*feed\.source: not a feed name/],
  ];
  for (const [name, make, message] of refusals) {
    it(`refused: ${name}, exit 1, nothing stored`, { timeout: 60_000 }, async () => {
      const db = await offline();
      const { file, trust } = await make();
      const r = await runCaptured(feedCommand, ['import', '--db', db, ...trust.map((k) => `--trust=${k}`), file]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /refused, nothing stored: /);
      assert.match(r.stderr, message);
      assert.deepEqual(dump(db), { advisories: 0, affected: 0, kev: 0, sha256: dump(await offline()).sha256 });
    });
  }

  it('an older bundle after a newer one is refused as stale: the feed is not rolled back', async () => {
    const db = await offline();
    const newer = await handMade([{ feed: { source: 'kev-x', kind: 'kev' } }], 'newer.pwfeeds', new Date('2026-11-27T03:00:00.000Z'));
    const older = await handMade([{ feed: { source: 'kev-x', kind: 'kev' } }], 'older.pwfeeds', new Date('2026-11-26T03:00:00.000Z'));
    assert.equal((await runCaptured(feedCommand, ['import', '--db', db, `--trust=${onlineKey.publicKey}`, newer])).code, 0);
    const r = await runCaptured(feedCommand, ['import', '--db', db, `--trust=${onlineKey.publicKey}`, older]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /feed kev-x holds a newer bundle \(2026-11-27T03:00:00\.000Z\): importing it would roll the feed back \(PW_ERR_FILE_STALE\)/);
  });

  it('usage: export without --out, an unknown --feed, a --trust that is not a key', async () => {
    await assert.rejects(runCaptured(feedCommand, ['export', '--db', online]), { code: 'PW_ERR_USAGE', message: /feed export needs --out FILE/ });
    await assert.rejects(runCaptured(feedCommand, ['export', '--db', online, '--out', join(dir, 'x'), '--feed', 'nope']), { code: 'PW_ERR_USAGE', message: /no feed named nope/ });
    await assert.rejects(runCaptured(feedCommand, ['import', '--db', online, '--trust', "' OR 1=1", bundle]), { code: 'PW_ERR_USAGE', message: /is not an ed25519 public key/ });
  });
});
