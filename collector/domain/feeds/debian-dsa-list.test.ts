import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parseDebianDsaList, parseListDate } from './debian-dsa-list.ts';
import { AdvisorySchema, FeedReport, type Advisory } from './types.ts';

const DEBIAN = join(import.meta.dirname, '../../../../shared/data/debian');

function list(file: string): string {
  const raw = readFileSync(join(DEBIAN, file));
  return (file.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8');
}

function byId(advisories: Advisory[], id: string): Advisory {
  const a = advisories.find((x) => x.id === id);
  assert.ok(a, `${id} missing`);
  return a;
}

function fixes(a: Advisory): string[] {
  return a.affected.map((x) => `${x.ecosystem} ${x.package} ${x.notAffected ? 'not-affected' : (x.ranges[0]?.fixed ?? 'unfixed')}`);
}

describe('parseListDate', () => {
  const CASES: [string, string | null][] = [
    ['29 Mar 2023', '2023-03-29T00:00:00.000Z'],
    ['01 Aug 2002', '2002-08-01T00:00:00.000Z'],
    ['August 26th, 2005', '2005-08-26T00:00:00.000Z'],
    ['September 1st, 2005', '2005-09-01T00:00:00.000Z'],
    ['September 22nd, 2005', '2005-09-22T00:00:00.000Z'],
    ['31 Feb 2023', null],
    ['29 Foo 2023', null],
    ['2023-03-29', null],
    ['', null],
  ];
  for (const [text, expected] of CASES) {
    it(`${JSON.stringify(text)} -> ${String(expected)}`, () => {
      assert.equal(parseListDate(text), expected);
    });
  }
});

describe('parseDebianDsaList on the real lists', () => {
  // Counts from ../shared/data/README.md: 5406 DSA entries (410 [bullseye] lines),
  // 3534 DLA entries (322 [buster] lines), no bookworm.
  const FILES: [string, number, string, number][] = [
    ['DSA-list.gz', 5406, 'Debian:11', 410],
    ['DLA-list.gz', 3534, 'Debian:10', 322],
  ];
  for (const [file, entries, ecosystem, lines] of FILES) {
    it(`${file}: ${entries} entries, ${lines} ${ecosystem} fixes, none for Debian:12, no warnings`, () => {
      const report = new FeedReport();
      const advisories = parseDebianDsaList(list(file), report, file);
      assert.equal(report.warningCount(), 0, JSON.stringify(report.warnings.slice(0, 3)));
      assert.equal(report.counts.get('entries'), entries);
      assert.equal(advisories.length, entries - (report.counts.get('entries without fixes') ?? 0));
      assert.equal(new Set(advisories.map((a) => a.id)).size, advisories.length);
      assert.equal(advisories.flatMap((a) => a.affected).filter((x) => x.ecosystem === ecosystem).length, lines);
      assert.equal(advisories.flatMap((a) => a.affected).filter((x) => x.ecosystem === 'Debian:12').length, 0);
      for (const a of advisories) AdvisorySchema.parse(a);
    });
  }

  const dsa = parseDebianDsaList(list('DSA-list.gz'), new FeedReport());
  const CASES: [string, string[], string[], string, string | null, string][] = [
    ['DSA-5380-1', ['Debian:11 xorg-server 2:1.20.11-1+deb11u6'], ['CVE-2023-1393'], '2023-03-29T00:00:00.000Z', 'xorg-server - security update', 'unknown'],
    ['DSA-5356-2', ['Debian:11 sox 14.4.2+git20190427-2+deb11u2'], [], '2023-03-17T00:00:00.000Z', 'sox - regression update', 'unknown'],
    ['DSA-854-1', ['Debian:3.1 tcpdump 3.8.3-5sarge1', 'Debian:3.0 tcpdump not-affected'], ['CVE-2005-1267'], '2005-10-09T00:00:00.000Z', 'tcpdump - infinite loop', 'unknown'],
    ['DSA-827-1', ['Debian:3.1 backupninja 0.5-3sarge1'], ['CVE-2005-3111'], '2005-09-29T00:00:00.000Z', 'backupninja - insecure temporary file creation', 'medium'],
    ['DSA-880-1', ['Debian:3.0 phpmyadmin unfixed', 'Debian:3.1 phpmyadmin 4:2.6.2-3sarge1'], ['CVE-2005-2869', 'CVE-2005-3300', 'CVE-2005-3301', 'CVE-2005-3787'], '2005-11-02T00:00:00.000Z', 'phpmyadmin - several', 'unknown'],
    ['DSA-3699-1', ['Debian:8 virtualbox unfixed'], [], '2016-10-25T00:00:00.000Z', 'virtualbox - end of life', 'unknown'],
  ];
  for (const [id, expectedFixes, cves, published, summary, severity] of CASES) {
    it(`${id}: ${expectedFixes.join('; ')}`, () => {
      const a = byId(dsa, id);
      assert.equal(a.source, 'debian-dsa-list');
      assert.deepEqual(fixes(a).sort(), [...expectedFixes].sort());
      assert.deepEqual(a.aliases, cves);
      assert.equal(a.published, published);
      assert.equal(a.summary, summary);
      assert.equal(a.severity, severity);
    });
  }

  it('DSA-1605-1 (glibc, only a NOTE: <unfixed>) gives no advisory', () => {
    assert.equal(dsa.find((a) => a.id === 'DSA-1605-1'), undefined);
  });

  it('DTSA-list.gz: "August 26th, 2005" dates; DTSA-1-1 kismet (high) for etch', () => {
    const report = new FeedReport();
    const dtsa = parseDebianDsaList(list('DTSA-list.gz'), report);
    assert.equal(report.warningCount(), 0);
    const a = byId(dtsa, 'DTSA-1-1');
    assert.equal(a.published, '2005-08-26T00:00:00.000Z');
    assert.equal(a.severity, 'high');
    assert.deepEqual(a.aliases, ['CVE-2005-2626', 'CVE-2005-2627']);
    assert.deepEqual(fixes(a), ['Debian:4.0 kismet 2005.08.R1-0.1etch1']);
  });
});

describe('parseDebianDsaList on the odd real entries (vunnel fixture)', () => {
  const report = new FeedReport();
  const advisories = parseDebianDsaList(list('DSA-list-subset.vunnel-fixture.txt'), report, 'fixture');

  it('10 entries, 7 advisories: the key-change notice, the EOL notice and "iceape - several" have no fixes', () => {
    assert.equal(report.counts.get('entries'), 10);
    assert.equal(report.counts.get('entries without fixes'), 3);
    assert.equal(report.warningCount(), 0);
    assert.deepEqual(advisories.map((a) => a.id), ['DSA-141', 'DSA-140', 'DSA-139', 'DSA-138', 'DSA-2808-2', 'DSA-4323-1', 'DSA-5970-1']);
  });

  const CASES: [string, string[], string[]][] = [
    ['DSA-141', ['Debian:3.0 mpack 1.5-7woody2'], ['CVE-2002-1425']],
    ['DSA-140', ['Debian:3.0 libpng 1.0.12-3.woody.2', 'Debian:3.0 libpng3 1.2.1-1.1.woody.2'], ['CVE-2002-0660', 'CVE-2002-0728']],
    ['DSA-2808-2', ['Debian:6.0 openjpeg 1.3+dfsg-4+squeeze3', 'Debian:7 openjpeg 1.3+dfsg-4.8'], []],
    ['DSA-4323-1', ['Debian:9 drupal7 7.52-2+deb9u5'], []],
    ['DSA-5970-1', ['Debian:12 sope 5.8.0-1+deb12u1'], ['CVE-2025-53603']],
  ];
  for (const [id, expectedFixes, cves] of CASES) {
    it(`${id}: ${expectedFixes.join('; ')}`, () => {
      const a = byId(advisories, id);
      assert.deepEqual(fixes(a), expectedFixes);
      assert.deepEqual(a.aliases, cves);
      AdvisorySchema.parse(a);
    });
  }
});

describe('parseDebianDsaList: hostile and broken lines', () => {
  const real = list('DSA-list-subset.vunnel-fixture.txt');
  const CASES: [string, string, string, number][] = [
    ['an impossible date refuses only that entry', real.replace('[01 Aug 2002] DSA-141', '[31 Feb 2002] DSA-141'), 'PW_ERR_FEED_FORMAT', 6],
    ['an unknown release skips the line', real.replace('[woody] - mpack', '[hurd] - mpack'), 'PW_ERR_FEED_UNSUPPORTED', 6],
    ['a version dpkg rejects skips the line', real.replace('mpack 1.5-7woody2', 'mpack 1.5-7woody2:'), 'PW_ERR_INVALID_VERSION', 6],
    ['a version with a shell fragment skips the line', real.replace('mpack 1.5-7woody2', 'mpack $(reboot)'), 'PW_ERR_INVALID_VERSION', 6],
    ['an unknown tag skips the line', real.replace('mpack 1.5-7woody2', 'mpack <maybe>'), 'PW_ERR_FEED_UNSUPPORTED', 6],
    ['a junk id in the CVE list', real.replace('{CVE-2002-1425}', '{CVE-2002-1425 DROP}'), 'PW_ERR_FEED_FORMAT', 7],
    ['a junk top-level line', `garbage line\n${real}`, 'PW_ERR_FEED_FORMAT', 7],
    ['an indented line before any header', `\t[woody] - mpack 1.0-1\n${real}`, 'PW_ERR_FEED_FORMAT', 7],
    ['binary garbage inside an entry', real.replace(/^\s+\{CVE-2002-1425\}$/m, '\t\u0000\u0001\u00ff\u00fe'), 'PW_ERR_FEED_FORMAT', 7],
  ];
  for (const [name, text, code, kept] of CASES) {
    it(`${name}: one ${code}, ${kept} advisories kept`, () => {
      const report = new FeedReport();
      const advisories = parseDebianDsaList(text, report);
      assert.equal(report.warningCount(code), 1);
      assert.equal(report.warningCount(), 1);
      assert.equal(advisories.length, kept);
    });
  }
});
