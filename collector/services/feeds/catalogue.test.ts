/**
 * The feed catalogue: which entries a fleet needs, the https/mirror rule, and `feed sync`
 * with no config against a local server on 127.0.0.1 standing in for the upstreams with
 * real ../shared/data files.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, it, type TestContext } from 'node:test';
import { Agent } from 'undici';
import { runCaptured } from '../../../shared/testing/capture.ts';
import { generateKeyPair } from '../../../shared/signing.ts';
import { feedCommand } from '../../commands/feed.ts';
import { parseConfig } from '../../config.ts';
import { inventoryOf, rhel95Packages } from '../../../shared/testing/correlate-fixtures.ts';
import { openDatabase, type Db } from '../../store/db.ts';
import { storeOn } from '../../store/store.ts';
import { tempDatabase, asyncAdvisories } from '../../../shared/testing/store-fixtures.ts';
import { CATALOGUE, entriesFor, selectSources, UPSTREAM_BASES } from './catalogue.ts';
import { syncFeed } from './sync.ts';
import { catalogueServer, withCatalogueBase } from '../../../shared/testing/feed-fixtures.ts';

const execFileAsync = promisify(execFile);
const NOW = new Date('2026-11-26T18:00:00.000Z');

/** Enrols one host per ecosystem and stores a report for it; `revoked` ones are revoked after. */
async function enrolHosts(db: Db, ecosystems: readonly string[], revoked: readonly string[] = []): Promise<void> {
  const fleet = storeOn(db).async;
  const pkgs = rhel95Packages().slice(0, 3);
  for (const [i, eco] of [...ecosystems, ...revoked].entries()) {
    const id = await fleet.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: `h${i}`, machineId: null, tokenId: null }, NOW);
    const inv = inventoryOf(eco, eco.startsWith('Alpine') ? 'apk' : eco.startsWith('Debian') || eco.startsWith('Ubuntu') ? 'deb' : 'rpm', pkgs);
    await fleet.reports.ingest(id, `r-${i}`, `hash-${i}`, { ...inv, host: { ...inv.host, hostname: `h${i}` } }, NOW);
    if (i >= ecosystems.length) await fleet.agents.revoke(id, 'cli:test', NOW);
  }
}

describe('catalogue entries for a fleet', () => {
  const cases: [string, string[], string[]][] = [
    ['no hosts: KEV and EPSS only', [], ['cisa-kev', 'first-epss']],
    ['Debian 12: OSV Debian, the tracker, KEV', ['Debian:12'], ['osv-debian', 'debian-tracker', 'cisa-kev', 'first-epss']],
    ['AlmaLinux 9 and Rocky 9', ['AlmaLinux:9', 'Rocky Linux:9'], ['osv-almalinux', 'osv-rocky-linux', 'cisa-kev', 'first-epss']],
    ['Alpine v3.21: OSV Alpine, secdb main and community of that release', ['Alpine:v3.21'], ['osv-alpine', 'cisa-kev', 'first-epss', 'alpine-secdb-v3.21-main', 'alpine-secdb-v3.21-community']],
    ['two Alpine releases, Ubuntu, SUSE, openSUSE, Red Hat', ['Alpine:v3.20', 'Alpine:v3.21', 'Ubuntu:24.04', 'SUSE:15.6', 'openSUSE:15.6', 'Red Hat:9'], ['osv-ubuntu', 'osv-alpine', 'osv-suse', 'osv-opensuse', 'osv-red-hat', 'cisa-kev', 'first-epss', 'alpine-secdb-v3.20-main', 'alpine-secdb-v3.20-community', 'alpine-secdb-v3.21-main', 'alpine-secdb-v3.21-community']],
    ['an ecosystem no entry knows: KEV and EPSS only', ['Gentoo:2.17'], ['cisa-kev', 'first-epss']],
  ];
  for (const [name, ecosystems, expected] of cases) {
    it(name, () => {
      assert.deepEqual(
        entriesFor(ecosystems).map((e) => e.name),
        expected,
      );
    });
  }

  it('every upstream URL is https, and OSV folders are osv.dev ecosystem names', () => {
    for (const u of Object.values(UPSTREAM_BASES)) assert.match(u, /^https:\/\//);
    const src = selectSources(['Rocky Linux:9', 'Red Hat:9', 'Alpine:v3.21'], parseConfig({}), {});
    assert.deepEqual(
      src.map((s) => s.url),
      [
        'https://osv-vulnerabilities.storage.googleapis.com/Rocky%20Linux/all.zip',
        'https://osv-vulnerabilities.storage.googleapis.com/Alpine/all.zip',
        'https://osv-vulnerabilities.storage.googleapis.com/Red%20Hat/all.zip',
        'https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json',
        'https://epss.empiricalsecurity.com/epss_scores-current.csv.gz',
        'https://secdb.alpinelinux.org/v3.21/main.json',
        'https://secdb.alpinelinux.org/v3.21/community.json',
      ],
    );
    assert.equal(new Set(CATALOGUE.map((e) => e.name)).size, CATALOGUE.length);
  });

  it('the enrolled hosts of a real store, revoked ones left out', async (t) => {
    const { db } = await tempDatabase(t, 'catalogue');
    await enrolHosts(db, ['Debian:12', 'AlmaLinux:9', 'Debian:12'], ['Ubuntu:24.04']);
    assert.deepEqual(await asyncAdvisories(db).enrolledEcosystems(), ['AlmaLinux:9', 'Debian:12']);
  });
});

describe('catalogue config: add, mirror, disable', () => {
  it('a config feed comes first, a catalogue entry can be mirrored or disabled, a base can move', () => {
    const config = parseConfig({
      feeds: [{ name: 'internal', url: 'http://mirror.lan/internal.json', mirror: true }],
      catalogue: {
        bases: { osv: { url: 'https://osv.mirror.lan/osv/' } },
        sources: { 'debian-tracker': { disabled: true }, 'cisa-kev': { url: 'http://mirror.lan/kev.json', mirror: true } },
      },
    });
    assert.deepEqual(
      selectSources(['Debian:12'], config, {}).map((s) => [s.name, s.url, s.mirror]),
      [
        ['internal', 'http://mirror.lan/internal.json', true],
        ['osv-debian', 'https://osv.mirror.lan/osv/Debian/all.zip', false],
        ['cisa-kev', 'http://mirror.lan/kev.json', true],
        ['first-epss', 'https://epss.empiricalsecurity.com/epss_scores-current.csv.gz', false],
      ],
    );
  });

  it('catalogue disabled: only the config feeds', () => {
    const config = parseConfig({ feeds: [{ name: 'a', url: 'https://example.org/a.json' }], catalogue: { enabled: false } });
    assert.deepEqual(
      selectSources(['Debian:12'], config, {}).map((s) => s.name),
      ['a'],
    );
  });

  const refused: [string, unknown, RegExp][] = [
    ['a plain-http feed', { feeds: [{ name: 'a', url: 'http://example.org/a.json' }] }, /feed a: http:\/\/example\.org is plain http/],
    ['a plain-http catalogue entry', { catalogue: { sources: { 'cisa-kev': { url: 'http://example.org/kev.json' } } } }, /catalogue entry cisa-kev/],
    ['a plain-http base', { catalogue: { bases: { kev: { url: 'http://example.org/' } } } }, /catalogue base kev/],
    ['http marked mirror: false', { feeds: [{ name: 'a', url: 'http://example.org/a.json', mirror: false }] }, /plain http/],
  ];
  for (const [name, json, message] of refused) {
    it(`${name}: refused with PW_ERR_FEED_URL`, () => {
      assert.throws(() => parseConfig(json), { code: 'PW_ERR_FEED_URL', message });
    });
  }

  it('syncFeed itself refuses a plain-http source that is not a mirror, and stores only the error', async (t) => {
    const srv = await catalogueServer(t);
    const { db } = await tempDatabase(t, 'catalogue-url');
    const store = asyncAdvisories(db);
    const out = await syncFeed(store, { name: 'kev', url: `${srv.base}/kev/sites/default/files/feeds/known_exploited_vulnerabilities.json` }, { backoffMs: 1 });
    assert.equal(out.status === 'failed' && out.code, 'PW_ERR_FEED_URL');
    assert.deepEqual(srv.seen, [], 'nothing was fetched');
    assert.equal((await store.feeds())[0]?.records, 0);
  });

  it('a redirect from https to plain http is refused with PW_ERR_FEED_URL (nothing fetched over http); a mirror may take it', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pw-feed-tls-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await execFileAsync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')],
      { timeout: 30_000 },
    );
    const cert = await readFile(join(dir, 'cert.pem'));
    const plain = await catalogueServer(t);
    const kevPath = '/kev/sites/default/files/feeds/known_exploited_vulnerabilities.json';
    const tls = createHttpsServer({ cert, key: await readFile(join(dir, 'key.pem')) }, (_req, res) => {
      res.writeHead(302, { location: plain.base + kevPath }).end();
    });
    await new Promise<void>((ok) => tls.listen(0, '127.0.0.1', ok));
    t.after(
      () =>
        new Promise<void>((ok) => {
          tls.close(() => {
            ok();
          });
        }),
    );
    const dispatcher = new Agent({ connect: { ca: cert } });
    t.after(() => dispatcher.close());
    const url = `https://127.0.0.1:${(tls.address() as AddressInfo).port}${kevPath}`;
    const { db } = await tempDatabase(t, 'catalogue-redirect');
    const store = asyncAdvisories(db);
    const out = await syncFeed(store, { name: 'kev', url }, { backoffMs: 1, dispatcher });
    assert.equal(out.status === 'failed' && out.code, 'PW_ERR_FEED_URL', JSON.stringify(out));
    assert.deepEqual(plain.seen, [], 'nothing was asked over plain http');
    assert.equal((await store.feeds())[0]?.records, 0);
    const mirrored = await syncFeed(store, { name: 'kev', url, mirror: true }, { backoffMs: 1, dispatcher });
    assert.equal(mirrored.status, 'imported', JSON.stringify(mirrored));
  });
});

describe('feed sync with no config', () => {
  async function fleetDb(t: TestContext, ecosystems: string[]): Promise<string> {
    const { db, path } = await tempDatabase(t, 'catalogue-sync');
    await enrolHosts(db, ecosystems);
    db.close();
    return path;
  }

  it('syncs the entries for the enrolled hosts (AlmaLinux 9, Alpine v3.21) and KEV, nothing else; audited; a second run is all 304', async (t) => {
    const srv = await catalogueServer(t);
    withCatalogueBase(t, srv.base);
    const path = await fleetDb(t, ['AlmaLinux:9', 'Alpine:v3.21']);
    const first = await runCaptured(feedCommand, ['sync', '--db', path]);
    assert.equal(first.code, 1, first.stderr);
    // osv.dev has no Alpine export here: the one source the local server lacks fails alone.
    assert.match(first.stderr, /^osv-alpine: failed, keeping the last good data: .*HTTP 404 \(PW_ERR_FEED_FETCH\)$/m);
    assert.deepEqual(
      srv.seen.map((s) => s.url),
      ['/osv/AlmaLinux/all.zip', '/osv/Alpine/all.zip', '/kev/sites/default/files/feeds/known_exploited_vulnerabilities.json', '/epss/epss_scores-current.csv.gz', '/alpineSecdb/v3.21/main.json', '/alpineSecdb/v3.21/community.json'],
    );
    const db = openDatabase(path, { readonly: true });
    t.after(() => db.close());
    const rows = await asyncAdvisories(db).feeds();
    assert.deepEqual(
      rows.map((r) => [r.source, r.records > 0, r.lastError === null]).sort(),
      [
        ['alpine-secdb-v3.21-community', true, true],
        ['alpine-secdb-v3.21-main', true, true],
        ['cisa-kev', true, true],
        ['first-epss', true, true],
        ['osv-almalinux', true, true],
        ['osv-alpine', false, false],
      ],
    );
    const audit = db.prepare("SELECT action, target FROM audit WHERE action LIKE 'feed.%' ORDER BY id").all();
    assert.equal(audit.length, 6);
    const again = await runCaptured(feedCommand, ['sync', '--db', path]);
    assert.match(again.stdout, /^osv-almalinux: not modified$/m);
    assert.match(again.stdout, /^cisa-kev: not modified$/m);
    assert.match(again.stdout, /^first-epss: not modified$/m);
    assert.equal(db.prepare('SELECT rows FROM epss_meta').pluck().get(), 146, 'the EPSS set synced with the rest, by default');
  });
});

describe('config files with the URL rule', () => {
  it('feed sync --config with a plain-http feed not marked as a mirror: PW_ERR_FEED_URL, nothing fetched', async (t) => {
    const srv = await catalogueServer(t);
    const { path, db } = await tempDatabase(t, 'catalogue-http');
    db.close();
    const config = join(tmpdir(), `pw-catalogue-config-${process.pid}.json`);
    t.after(() => rm(config, { force: true }));
    await writeFile(config, JSON.stringify({ feeds: [{ name: 'kev', url: `${srv.base}/kev/sites/default/files/feeds/known_exploited_vulnerabilities.json` }] }));
    await assert.rejects(runCaptured(feedCommand, ['sync', '--db', path, '--config', config]), { code: 'PW_ERR_FEED_URL' });
    assert.deepEqual(srv.seen, []);
  });
});
