/**
 * EPSS across the air gap: an online collector's score set travels in its feed bundle and
 * replaces the offline collector's set whole; a bundle with a bad score stores nothing.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { encodeSignedFile } from '../../../shared/signed-file.ts';
import { runCaptured } from '../../../shared/testing/capture.ts';
import { dataPath } from '../../../shared/testing/data.ts';
import { feedCommand } from '../../commands/feed.ts';
import { EPSS_EXCERPT } from '../../../shared/testing/feed-fixtures.ts';
import { createLogger } from '../../logger.ts';
import { KEY_FILE, loadOrCreateKey } from '../../signing-key.ts';
import { openDatabase } from '../../store/db.ts';
import type { EpssMeta } from '../../store/epss.ts';
import { asyncEpss } from '../../../shared/testing/store-fixtures.ts';
import { feedSigner } from './feed-bundle.ts';

let dir = '';
let online = '';
let key = { publicKey: '', privateKeyPem: '' };
let bundle = '';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-bundle-epss-'));
  online = join(dir, 'online.db');
  key = loadOrCreateKey(join(dir, KEY_FILE), createLogger({ destination: { write: () => undefined } }));
  for (const args of [[dataPath('kev', 'known_exploited_vulnerabilities.json.gz')], ['--name', 'first-epss', EPSS_EXCERPT]]) {
    const r = await runCaptured(feedCommand, ['import', '--db', online, ...args]);
    assert.equal(r.code, 0, r.stderr);
  }
  bundle = join(dir, 'feeds.pwfeeds');
  const r = await runCaptured(feedCommand, ['export', '--db', online, '--out', bundle]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^first-epss: 0 advisories, 0 KEV entries, 146 EPSS scores$/m);
});
after(() => rm(dir, { recursive: true, force: true }));

let n = 0;
function offline(): string {
  const db = join(dir, `offline-${++n}.db`);
  openDatabase(db).close();
  return db;
}

async function scores(path: string): Promise<{ meta: EpssMeta | null; all: [string, unknown][]; records: unknown }> {
  const db = openDatabase(path, { readonly: true });
  try {
    const s = asyncEpss(db);
    const meta = await s.meta();
    return { meta: meta === null ? null : { ...meta, importedAt: '' }, all: [...(await s.all())].sort(), records: db.prepare("SELECT records FROM feeds WHERE source = 'first-epss'").pluck().get() };
  } finally {
    db.close();
  }
}

async function handMade(lines: unknown[], name: string): Promise<string> {
  const file = join(dir, name);
  const body = gzipSync(Buffer.from(lines.map((l) => JSON.stringify(l)).join('\n') + '\n'));
  await writeFile(file, encodeSignedFile({ kind: 'feeds', signer: feedSigner(key.publicKey), createdAt: new Date(), body, key: key.privateKeyPem }));
  return file;
}

describe('EPSS in feed bundles', () => {
  it('the offline collector holds exactly the online set (146 scores, model, score date), counted on its feed; a second import stores nothing', async () => {
    const db = offline();
    const r = await runCaptured(feedCommand, ['import', '--db', db, `--trust=${key.publicKey}`, bundle]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ {2}first-epss: 0 added, 0 updated, 0 unchanged; EPSS 146 scores stored, 0 replaced$/m);
    const want = await scores(online);
    assert.equal(want.all.length, 146);
    assert.deepEqual(await scores(db), want);
    const again = await runCaptured(feedCommand, ['import', '--db', db, `--trust=${key.publicKey}`, bundle]);
    assert.match(again.stdout, /first-epss: .*; EPSS unchanged$/m);
    const audit = openDatabase(db, { readonly: true });
    const row = audit.prepare<[], string>("SELECT detail FROM audit WHERE action = 'feed.bundle-import' ORDER BY id LIMIT 1").pluck().get() ?? '';
    audit.close();
    assert.match(row, /"source":"first-epss".*"epss":\{"stored":146,"replaced":0,"unchanged":false\}/);
  });

  const SET = { epssSet: { modelVersion: 'v2026.06.15', scoreDate: '2026-09-29T12:00:22.000Z' } };
  const refusals: [string, unknown[], RegExp][] = [
    ['a score over 1', [{ feed: { source: 'first-epss', kind: 'epss-csv' } }, SET, { epss: ['CVE-2021-38647', 1.5, 0.9997] }], /line 3 of the bundle is not a feed/],
    ['a score with no set line', [{ feed: { source: 'first-epss', kind: 'epss-csv' } }, { epss: ['CVE-2021-38647', 0.9, 0.9997] }], /line 2: an EPSS score before its feed's epssSet line/],
    ['one CVE twice', [{ feed: { source: 'first-epss', kind: 'epss-csv' } }, SET, { epss: ['CVE-2021-38647', 0.9, 0.9] }, { epss: ['CVE-2021-38647', 0.1, 0.1] }], /a CVE has two EPSS scores/],
    ['markup for a CVE id', [{ feed: { source: 'first-epss', kind: 'epss-csv' } }, SET, { epss: ['<img src=x>', 0.1, 0.1] }], /not a CVE id/],
  ];
  for (const [name, lines, message] of refusals) {
    it(`refused: ${name}; the offline set stays as it was`, async () => {
      const db = offline();
      assert.equal((await runCaptured(feedCommand, ['import', '--db', db, `--trust=${key.publicKey}`, bundle])).code, 0);
      const before = await scores(db);
      const r = await runCaptured(feedCommand, ['import', '--db', db, `--trust=${key.publicKey}`, await handMade(lines, `${n}.pwfeeds`)]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, message);
      assert.deepEqual(await scores(db), before);
    });
  }
});
