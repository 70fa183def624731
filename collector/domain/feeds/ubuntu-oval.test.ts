/**
 * Canonical's real USN OVAL for Ubuntu 24.04 (../shared/data/oval, read in place): what it
 * imports, how its LSNs mark a Canonical Livepatch host's kernel findings, and hostile
 * XML refused with a code and nothing stored.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync, gunzipSync } from 'node:zlib';
import { runCaptured } from '../../../shared/testing/capture.ts';
import { dataPath } from '../../../shared/testing/data.ts';
import { feedCommand } from '../../commands/feed.ts';
import { Correlator } from '../correlate/correlator.ts';
import { dpkgOracle, ubuntuNobleInventory } from '../../../shared/testing/correlate-fixtures.ts';
import { needs, TOOLS } from '../../../shared/testing/system-tools.ts';
import { dumpStoreFile, tempDatabase, asyncAdvisories } from '../../../shared/testing/store-fixtures.ts';
import { createServer } from 'node:http';
import { EnvHttpProxyAgent } from 'undici';
import { syncFeed } from '../../services/feeds/sync.ts';
import { listenForTest } from '../../../shared/testing/feed-fixtures.ts';
import { parseFeedPath, type ParsedFeed } from '../../services/feeds/import.ts';
import { type Advisory, AdvisorySchema } from './types.ts';

const NOBLE = dataPath('oval', 'com.ubuntu.noble.usn.oval.xml.gz');
const nobleXml = (): string => gunzipSync(readFileSync(NOBLE)).toString('utf8');

let parsed: ParsedFeed;
before(async () => {
  parsed = await parseFeedPath(NOBLE);
});

const byId = (id: string): Advisory => {
  const a = parsed.advisories.find((x) => x.id === id);
  assert.ok(a !== undefined, id);
  return a;
};

describe('Ubuntu USN OVAL: the real noble file', () => {
  it('reads every definition: 5 LSNs, 48 kernel USNs, 207 package USNs, with no warning', () => {
    assert.deepEqual(parsed.formats, ['ubuntu-oval']);
    assert.equal(parsed.report.counts.get('LSN definitions'), 5);
    assert.equal(parsed.report.counts.get('kernel USN definitions'), 48);
    assert.equal(parsed.report.counts.get('package USN definitions'), 207);
    assert.equal(parsed.report.warningCount(), 0);
    assert.equal(parsed.advisories.length, 260);
    for (const a of parsed.advisories) assert.ok(AdvisorySchema.safeParse(a).success, a.id);
    // Every definition of the file is one of these: 255 USN + 5 LSN + 1 inventory.
    assert.equal((nobleXml().match(/<definition /g) ?? []).length, 48 + 207 + 5 + 1);
  });

  it('an LSN is a live-patch fix with its patterns, level and CVEs, and no affected package', () => {
    const lsn = byId('LSN-0104-1');
    assert.deepEqual(lsn.aliases, ['CVE-2023-51781', 'CVE-2023-6270', 'CVE-2024-26581', 'CVE-2024-26597']);
    assert.deepEqual(lsn.affected, []);
    assert.deepEqual(lsn.livepatch, {
      provider: 'canonical-livepatch',
      ecosystem: 'Ubuntu:24.04:LTS',
      modules: ['lkp_Ubuntu_6_8_0[_|\\d]+_aws_(\\d+)', 'lkp_Ubuntu_6_8_0[_|\\d]+_gcp_(\\d+)', 'lkp_Ubuntu_6_8_0[_|\\d]+_ibm_(\\d+)', 'lkp_Ubuntu_6_8_0[_|\\d]+_linux_(\\d+)'],
      fixedLevel: 104,
    });
    assert.equal(lsn.severity, 'high');
    assert.equal(lsn.published, '2024-06-10T00:00:00.000Z');
    assert.deepEqual(
      parsed.advisories.filter((a) => a.livepatch !== undefined).map((a) => [a.id, a.livepatch?.fixedLevel]),
      [['LSN-0104-1', 104], ['LSN-0105-1', 105], ['LSN-0106-1', 106], ['LSN-0107-1', 107], ['LSN-0108-1', 108]],
    );
  });

  it('a kernel USN is keyed by the running release per flavour, fixed at the ABI version the OVAL compares', () => {
    const usn = byId('USN-6816-1');
    const generic = usn.affected.find((a) => a.package === 'uname_6.8.0-generic');
    assert.deepEqual(generic, { ecosystem: 'Ubuntu:24.04:LTS', package: 'uname_6.8.0-generic', ranges: [{ introduced: '0', fixed: '6.8.0-35', lastAffected: null }], versions: [], notAffected: false });
    assert.ok(usn.affected.some((a) => a.package === 'uname_6.8.0-generic-64k'));
    assert.ok(usn.aliases.length > 200 && usn.aliases.every((c) => c.startsWith('CVE-')));
    // Straight from the XML: the state USN-6816-1's generic branch compares with.
    assert.match(nobleXml(), /operation="less than">0:6\.8\.0-35</);
  });
});

/** The kernel USN whose CVEs one LSN covers entirely, and that LSN: found in the data, not assumed. */
function coveredPair(): { usn: Advisory; lsn: Advisory } {
  const lsns = parsed.advisories.filter((a) => a.livepatch !== undefined);
  for (const usn of parsed.advisories) {
    if (!usn.affected.some((a) => a.package === 'uname_6.8.0-generic')) continue;
    const lsn = lsns.find((l) => usn.aliases.every((c) => l.aliases.includes(c)));
    if (lsn !== undefined) return { usn, lsn };
  }
  assert.fail('no kernel USN whose CVEs one LSN covers');
}

describe('Ubuntu LSN OVAL against a Canonical Livepatch host (Ubuntu 24.04, 6.8.0-31-generic)', () => {
  const correlator = new Correlator();
  before(() => {
    correlator.apply(parsed.advisories);
  });
  const kernelMatches = (level?: number, tweak?: (inv: ReturnType<typeof ubuntuNobleInventory>) => void) => {
    const inv = ubuntuNobleInventory(level === undefined ? {} : { livepatchLevel: level });
    tweak?.(inv);
    return correlator.matches(inv).matches;
  };

  it('finds USN-6863-1 (fixed in 6.8.0-36), whose only CVE LSN-0105-1 fixes at level 105', () => {
    const { usn, lsn } = coveredPair();
    assert.equal(usn.id, 'USN-6863-1');
    assert.equal(lsn.id, 'LSN-0105-1');
    assert.equal(lsn.livepatch?.fixedLevel, 105);
  });

  it('without a live patch: every kernel USN of the generic flavour is open against the running kernel', () => {
    const m = kernelMatches().filter((x) => x.package.startsWith('uname_'));
    const expected = parsed.advisories.filter((a) => a.affected.some((x) => x.package === 'uname_6.8.0-generic' && x.ranges.some((r) => r.fixed !== '6.8.0-31')));
    assert.equal(m.length, expected.length);
    assert.ok(m.length >= 10, `${m.length}`);
    for (const x of m) {
      assert.equal(x.package, 'uname_6.8.0-generic');
      assert.equal(x.installed, '6.8.0-31');
      assert.equal(x.status, 'open', `${x.advisory.id}: ${x.why}`);
      assert.match(x.why, /^running kernel 6\.8\.0-31-generic: uname_6\.8\.0-generic 6\.8\.0-31 < 6\.8\.0-\d+ /);
    }
    assert.ok(m.some((x) => x.advisory.id === 'USN-6863-1' && x.fixed === '6.8.0-36'));
    assert.ok(!m.some((x) => x.advisory.id.startsWith('LSN-')), 'an LSN raises no finding of its own');
  });

  it('module at the LSN level: that USN is mitigated-livepatch, naming the LSN and the module; USNs with other CVEs stay open', () => {
    const m = kernelMatches(105).filter((x) => x.package.startsWith('uname_'));
    const hit = m.find((x) => x.advisory.id === 'USN-6863-1');
    assert.equal(hit?.status, 'mitigated-livepatch');
    assert.match(hit.why, /; LSN-0105-1 \(Canonical Livepatch module lkp_Ubuntu_6_8_0_31_31_linux_105, level 105 >= 105\) fixes CVE-\d+-\d+$/);
    const others = m.filter((x) => x.advisory.id !== 'USN-6863-1');
    assert.ok(others.length > 0 && others.every((x) => x.status === 'open'), 'a USN with CVEs no LSN fixes stays open');
  });

  it('a higher level satisfies it too; a lower level, a live patch not active, another provider, another kernel’s module leave it open', () => {
    assert.equal(kernelMatches(108).find((x) => x.advisory.id === 'USN-6863-1')?.status, 'mitigated-livepatch');
    const open = (what: string, level: number, tweak?: (inv: ReturnType<typeof ubuntuNobleInventory>) => void): void => {
      assert.equal(kernelMatches(level, tweak).find((x) => x.advisory.id === 'USN-6863-1')?.status, 'open', what);
    };
    open('level 104 < 105', 104);
    open('not active', 105, (inv) => (inv.kernel.livepatch.active = false));
    open('kpatch, not Canonical Livepatch', 105, (inv) => (inv.kernel.livepatch.provider = 'kpatch'));
    open('a module of a kernel no LSN names (6.11)', 105, (inv) => (inv.kernel.livepatch.modules = ['lkp_Ubuntu_6_11_0_9_9_linux_105']));
    open('a name that only contains a match', 105, (inv) => (inv.kernel.livepatch.modules = ['xlkp_Ubuntu_6_8_0_31_31_linux_105']));
  });

  it('a host already on 6.8.0-36 or newer has no USN-6863-1 finding; an aws host matches the aws entries', () => {
    const newer = kernelMatches(undefined, (inv) => {
      inv.kernel.release = '6.8.0-51-generic';
      inv.kernel.package = { name: 'linux-image-6.8.0-51-generic', source: 'linux-signed', version: '6.8.0-51.52' };
    });
    assert.ok(!newer.some((x) => x.advisory.id === 'USN-6863-1'));
    const aws = kernelMatches(undefined, (inv) => {
      inv.kernel.release = '6.8.0-1008-aws';
      inv.kernel.package = { name: 'linux-image-6.8.0-1008-aws', source: 'linux-signed-aws', version: '6.8.0-1008.8' };
    });
    const awsKernel = aws.filter((x) => x.package.startsWith('uname_'));
    assert.ok(awsKernel.length > 0 && awsKernel.every((x) => x.package === 'uname_6.8.0-aws'));
    assert.ok(aws.some((x) => x.advisory.id === 'USN-6817-1' && x.fixed === '6.8.0-1009'));
  });
});

describe('Ubuntu package USNs: binary package names, each binary’s own version', () => {
  it('USN-7012-1 names the six curl binaries, fixed at 8.5.0-2ubuntu10.4', () => {
    const usn = byId('USN-7012-1');
    assert.deepEqual(
      usn.affected.map((a) => [a.package, a.binary, a.ranges[0]?.fixed]),
      ['curl', 'libcurl3t64-gnutls', 'libcurl4-doc', 'libcurl4-gnutls-dev', 'libcurl4-openssl-dev', 'libcurl4t64'].map((b) => [b, true, '8.5.0-2ubuntu10.4']),
    );
    assert.equal(usn.summary, 'curl vulnerability');
  });

  it('one finding per (advisory, source package) naming the affected binaries, exactly as apt’s version_compare judges each binary', { skip: needs(TOOLS.pythonApt) }, () => {
    const correlator = new Correlator();
    correlator.apply(parsed.advisories);
    const inv = ubuntuNobleInventory();
    const got = correlator
      .matches(inv)
      .matches.filter((m) => !m.package.startsWith('uname_'))
      .map((m) => `${m.advisory.id} ${m.package} [${m.binaries.join(',')}] ${m.installed} < ${m.fixed}`)
      .sort();
    // Independently: every binary entry against the installed binary's version, by libapt.
    const pairs: [string, string, string, string][] = [];
    for (const a of parsed.advisories) {
      for (const e of a.affected) {
        if (e.binary !== true) continue;
        const p = inv.packages.find((x) => x.name === e.package);
        if (p !== undefined) pairs.push([a.id, p.source, p.name, `${p.version}\t${e.ranges[0]?.fixed ?? ''}`]);
      }
    }
    const cmp = dpkgOracle(pairs.map((x) => x[3].split('\t') as [string, string]));
    const by = new Map<string, { source: string; bins: string[]; version: string; fixed: string }>();
    pairs.forEach(([id, source, bin, vf], i) => {
      if (cmp[i] !== -1) return;
      const [version, fixed] = vf.split('\t') as [string, string];
      const k = `${id} ${source}`;
      const x = by.get(k);
      if (x === undefined) by.set(k, { source, bins: [bin], version, fixed });
      else x.bins.push(bin);
    });
    const expected = [...by].map(([k, x]) => `${k} [${x.bins.sort().join(',')}] ${x.version} < ${x.fixed}`).sort();
    assert.deepEqual(got, expected);
    assert.deepEqual(got, [
      'USN-6663-3 openssl [libssl3t64,openssl] 3.0.13-0ubuntu3 < 3.0.13-0ubuntu3.1',
      'USN-6937-1 openssl [libssl3t64,openssl] 3.0.13-0ubuntu3 < 3.0.13-0ubuntu3.2',
      'USN-6944-1 curl [curl,libcurl4t64] 8.5.0-2ubuntu10.1 < 8.5.0-2ubuntu10.2',
      'USN-6986-1 openssl [libssl3t64,openssl] 3.0.13-0ubuntu3 < 3.0.13-0ubuntu3.4',
      'USN-7012-1 curl [curl,libcurl4t64] 8.5.0-2ubuntu10.1 < 8.5.0-2ubuntu10.4',
      'USN-7104-1 curl [curl,libcurl4t64] 8.5.0-2ubuntu10.1 < 8.5.0-2ubuntu10.5',
      'USN-7162-1 curl [curl,libcurl4t64] 8.5.0-2ubuntu10.1 < 8.5.0-2ubuntu10.6',
    ]);
  });

  it('a binary whose own version differs from its source’s is judged by its own', () => {
    const correlator = new Correlator();
    correlator.apply(parsed.advisories);
    const inv = ubuntuNobleInventory();
    const lib = inv.packages.find((p) => p.name === 'libcurl4t64');
    assert.ok(lib !== undefined);
    lib.version = '8.5.0-2ubuntu10.6';
    const curl = correlator.matches(inv).matches.filter((m) => m.package === 'curl');
    assert.equal(curl.length, 4);
    for (const m of curl) {
      assert.deepEqual(m.binaries, ['curl'], m.advisory.id);
      assert.match(m.why, /^curl 8\.5\.0-2ubuntu10\.1 < 8\.5\.0-2ubuntu10\.\d \(Ubuntu:24\.04:LTS, binary package, /);
    }
    assert.match(correlator.matches(ubuntuNobleInventory()).matches.find((m) => m.advisory.id === 'USN-7162-1')?.why ?? '', /; 2 binaries of curl are affected, the lowest is shown$/);
  });

  it('live re-correlation: adding and removing a binary-keyed advisory re-matches exactly the unit holding the binary', () => {
    const correlator = new Correlator();
    correlator.apply(parsed.advisories.filter((a) => a.id !== 'USN-7162-1'));
    const inv = ubuntuNobleInventory();
    const has = () => correlator.matches(inv).matches.some((m) => m.advisory.id === 'USN-7162-1');
    assert.equal(has(), false);
    const { misses, unitsRematched } = correlator.stats;
    const keys = correlator.update([byId('USN-7162-1')], []);
    assert.ok([...keys].some((k) => k.endsWith('\u0000curl')), 'the curl unit’s key is among the changed keys');
    assert.equal(has(), true);
    assert.equal(correlator.stats.unitsRematched - unitsRematched, 1, 'only the curl unit');
    assert.equal(correlator.stats.misses, misses, 'refreshed, not rebuilt');
    correlator.update([], [{ source: 'ubuntu-oval', id: 'USN-7162-1' }]);
    assert.equal(has(), false);
    assert.equal(correlator.stats.unitsRematched - unitsRematched, 2);
    assert.equal(correlator.stats.misses, misses);
  });
});

describe('feed sync takes Ubuntu OVAL (an internal mirror serving the gzip form)', () => {
  it('syncs the real noble file from a local mirror, then a 304 changes nothing', async (t) => {
    const body = readFileSync(NOBLE);
    const server = createServer((req, res) => {
      if (req.url !== '/oval/com.ubuntu.noble.usn.oval.xml.gz') return void res.writeHead(404).end();
      if (req.headers['if-none-match'] === '"noble-1"') return void res.writeHead(304, { etag: '"noble-1"' }).end();
      res.writeHead(200, { etag: '"noble-1"', 'content-length': String(body.length) }).end(body);
    });
    const base = `http://127.0.0.1:${await listenForTest(t, server)}`;
    const { db } = await tempDatabase(t, 'oval-sync');
    const store = asyncAdvisories(db);
    const dispatcher = new EnvHttpProxyAgent({ httpProxy: '', httpsProxy: '', noProxy: '' });
    t.after(() => dispatcher.close());
    const src = { name: 'ubuntu-noble-oval', url: `${base}/oval/com.ubuntu.noble.usn.oval.xml.gz`, mirror: true };
    const first = await syncFeed(store, src, { backoffMs: 1, dispatcher });
    assert.equal(first.status, 'imported');
    assert.deepEqual(first.result.advisories, { added: 260, updated: 0, unchanged: 0 });
    assert.deepEqual(first.result.formats, ['ubuntu-oval']);
    assert.deepEqual((await store.feeds()).find((f) => f.source === 'ubuntu-noble-oval')?.kind, 'ubuntu-oval');
    const second = await syncFeed(store, src, { backoffMs: 1, dispatcher });
    assert.deepEqual(second, { source: 'ubuntu-noble-oval', status: 'not-modified' });
  });
});

describe('hostile OVAL: refused with its code, nothing stored', () => {
  let dir = '';
  let db = '';
  let good: ReturnType<typeof dumpStoreFile>;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pw-oval-'));
    db = join(dir, 'oval.db');
    const r = await runCaptured(feedCommand, ['import', '--db', db, '--name', 'ubuntu-noble', NOBLE]);
    assert.equal(r.code, 0, r.stderr);
    good = dumpStoreFile(db);
    assert.equal(good.advisories, 260);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const head = '<?xml version="1.0" encoding="UTF-8"?>\n';
  const evilLsn = (pattern: string): string =>
    nobleXml()
      .replace(/<value>lkp_Ubuntu_6_8_0\[_\|\\d\]\+_(aws|azure|gcp|ibm|linux)_\(\\d\+\)<\/value>/g, `<value>${pattern}</value>`);
  const cases: { name: string; text: () => string | Buffer; code: string; message: RegExp }[] = [
    {
      name: 'billion laughs in a DOCTYPE',
      text: () => `${head}<!DOCTYPE lolz [<!ENTITY lol "lol">${Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i === 0 ? '' : i};`.repeat(10)}">`).join('')}]><oval_definitions>&lol9;</oval_definitions>`,
      code: 'PW_ERR_FEED_XML',
      message: /a DOCTYPE is never processed/,
    },
    {
      name: 'an external entity (file:///etc/passwd)',
      text: () => `${head}<!DOCTYPE oval_definitions [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><oval_definitions><definitions>&xxe;</definitions></oval_definitions>`,
      code: 'PW_ERR_FEED_XML',
      message: /a DOCTYPE is never processed/,
    },
    {
      name: 'an entity reference with no DOCTYPE',
      text: () => `${head}<oval_definitions>&xxe;</oval_definitions>`,
      code: 'PW_ERR_FEED_XML',
      message: /undefined entity/,
    },
    {
      name: '10,000 elements deep',
      text: () => `${head}<oval_definitions>${'<criteria>'.repeat(10_000)}${'</criteria>'.repeat(10_000)}</oval_definitions>`,
      code: 'PW_ERR_INPUT_TOO_LARGE',
      message: /elements nested deeper than 64/,
    },
    {
      name: 'a 20 MiB attribute',
      text: () => `${head}<oval_definitions><definitions><definition id="${'x'.repeat(20 * 1024 * 1024)}"/></definitions></oval_definitions>`,
      code: 'PW_ERR_INPUT_TOO_LARGE',
      message: /attribute id is longer than 65536 characters/,
    },
    {
      name: 'the real file cut in half (XML)',
      text: () => nobleXml().slice(0, 2_000_000),
      code: 'PW_ERR_FEED_XML',
      message: /not well-formed XML|cut short/,
    },
    {
      name: 'the real file cut in half (gzip)',
      text: () => readFileSync(NOBLE).subarray(0, 160_000),
      code: 'PW_ERR_FEED_FORMAT',
      message: /gzip data is truncated or corrupt/,
    },
    {
      name: 'only the LSNs, every module pattern an evil regex: nothing usable',
      text: () => {
        // The LSNs alone (their tests, objects, states and variables kept), with (a+)+$ patterns.
        const xml = evilLsn('(a+)+$');
        const start = xml.indexOf('<definitions>') + '<definitions>'.length;
        const stop = xml.indexOf('</definitions>');
        const defs = xml.slice(start, stop).split('</definition>').filter((d) => !d.includes('<title>USN-'));
        return xml.slice(0, start) + defs.join('</definition>') + xml.slice(stop);
      },
      code: 'PW_ERR_FEED_FORMAT',
      message: /nothing usable, refused: .*outside the accepted grammar.*PW_ERR_FEED_UNSUPPORTED/,
    },
    {
      name: 'a processing instruction',
      text: () => `${head}<?xml-stylesheet href="http://example.invalid/x.xsl"?><oval_definitions/>`,
      code: 'PW_ERR_FEED_XML',
      message: /processing instruction/,
    },
    {
      name: 'OVAL that is not Canonical’s (Rocky Linux)',
      text: () => readFileSync(dataPath('oval', 'org.rockylinux.rlsa-9.xml.gz')),
      code: 'PW_ERR_FEED_UNSUPPORTED',
      message: /only Ubuntu's USN OVAL is read/,
    },
  ];

  for (const c of cases) {
    it(`${c.name}: exit 1, ${c.code}, store unchanged`, { timeout: 60_000 }, async () => {
      const path = join(await mkdtemp(join(dir, 'case-')), 'com.ubuntu.noble.usn.oval.xml');
      const body = c.text();
      await writeFile(path, typeof body === 'string' ? body : body);
      const started = performance.now();
      const r = await runCaptured(feedCommand, ['import', '--db', db, '--name', 'ubuntu-noble', path]);
      const ms = performance.now() - started;
      assert.equal(r.code, 1, r.stderr);
      assert.ok(r.stderr.startsWith(`${path}: refused, nothing stored: `), r.stderr.slice(0, 300));
      assert.match(r.stderr, c.message);
      assert.ok(r.stderr.endsWith(` (${c.code})\n`), r.stderr.slice(-300));
      assert.deepEqual(dumpStoreFile(db), good);
      assert.ok(ms < 10_000, `${ms.toFixed(0)} ms`);
    });
  }

  it('one LSN’s patterns made evil: that LSN is skipped with PW_ERR_FEED_UNSUPPORTED, the rest is read', () => {
    const xml = nobleXml();
    const at = xml.indexOf('<constant_variable id="oval:com.ubuntu.noble:var:1657376340880"');
    const end = xml.indexOf('</constant_variable>', at);
    const evil = xml.slice(0, at) + xml.slice(at, end).replace(/<value>[^<]*<\/value>/g, '<value>lkp_((a|a)+)+_(\\d+)</value>') + xml.slice(end);
    return (async () => {
      const path = join(await mkdtemp(join(dir, 'evil-')), 'noble.xml');
      await writeFile(path, evil);
      const p = await parseFeedPath(path);
      assert.equal(p.report.counts.get('LSN definitions'), 4);
      assert.ok(!p.advisories.some((a) => a.id === 'LSN-0104-1'));
      assert.ok(p.report.warnings.some((w) => w.code === 'PW_ERR_FEED_UNSUPPORTED' && /LSN-0104-1: every module pattern is outside the accepted grammar/.test(w.message)));
      assert.ok(p.report.warnings.some((w) => /module pattern "lkp_\(\(a\|a\)\+\)\+_\(\\\\d\+\)" is outside the accepted grammar/.test(w.message)), JSON.stringify(p.report.warnings.slice(-3)));
    })();
  });

  it('gzip of the real file imports as the plain one does', async () => {
    const path = join(dir, 'again.xml.gz');
    await writeFile(path, gzipSync(await readFile(NOBLE).then((b) => gunzipSync(b))));
    const p = await parseFeedPath(path);
    assert.equal(p.advisories.length, 260);
  });
});
