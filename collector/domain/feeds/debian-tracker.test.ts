import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FeedFormatError } from '../../../shared/errors.ts';
import { debianEcosystem } from './debian-releases.ts';
import { parseDebianTracker } from './debian-tracker.ts';
import { AdvisorySchema, FeedReport, type Advisory } from './types.ts';

const FIXTURE = join(import.meta.dirname, '../../../../shared/data/debian/tracker-json-subset.vunnel-fixture.json');

function fixture(): Record<string, Record<string, Record<string, unknown>>> {
  return JSON.parse(readFileSync(FIXTURE, 'utf8')) as Record<string, Record<string, Record<string, unknown>>>;
}

function byId(advisories: Advisory[], id: string): Advisory {
  const a = advisories.find((x) => x.id === id);
  assert.ok(a, `${id} missing`);
  return a;
}

function releases(a: Advisory): Record<string, string | null> {
  return Object.fromEntries(a.affected.map((x) => [x.ecosystem, x.notAffected ? 'not affected' : (x.ranges[0]?.fixed ?? null)]));
}

describe('debianEcosystem', () => {
  const CASES: [string, string | null][] = [
    ['bookworm', 'Debian:12'],
    ['trixie', 'Debian:13'],
    ['bullseye', 'Debian:11'],
    ['buster', 'Debian:10'],
    ['wheezy', 'Debian:7'],
    ['squeeze', 'Debian:6.0'],
    ['sarge', 'Debian:3.1'],
    ['woody', 'Debian:3.0'],
    ['sid', 'Debian:sid'],
    ['toString', null],
    ['bookworm-security', null],
  ];
  for (const [codename, expected] of CASES) {
    it(`${codename} -> ${String(expected)}`, () => {
      assert.equal(debianEcosystem(codename), expected);
    });
  }
});

describe('parseDebianTracker on the real tracker JSON extract (vunnel fixture)', () => {
  const report = new FeedReport();
  const advisories = parseDebianTracker(fixture(), report, 'fixture');

  it('6 advisories from 7 (package, CVE) pairs: chromium-browser lists no releases; no warnings', () => {
    assert.equal(advisories.length, 6);
    assert.equal(report.counts.get('issues'), 7);
    assert.equal(report.counts.get('issues without releases'), 1);
    assert.equal(report.warningCount(), 0);
    for (const a of advisories) AdvisorySchema.parse(a);
  });

  const CASES: [string, string, Record<string, string | null>, string[]][] = [
    ['DEBIAN-CVE-2008-7220/prototypejs', 'high', { 'Debian:9': '1.6.0.2-1', 'Debian:8': '1.6.0.2-1', 'Debian:10': '1.6.0.2-1', 'Debian:sid': '1.6.0.2-1' }, ['CVE-2008-7220']],
    ['DEBIAN-CVE-2007-2383/prototypejs', 'low', { 'Debian:9': 'not affected', 'Debian:8': 'not affected', 'Debian:10': 'not affected', 'Debian:sid': 'not affected' }, ['CVE-2007-2383']],
    ['DEBIAN-CVE-2013-1444/txt2man', 'low', { 'Debian:9': '1.5.5-4.1', 'Debian:8': '1.5.5-4.1', 'Debian:10': '1.5.5-4.1', 'Debian:sid': '1.5.5-4.1' }, ['CVE-2013-1444']],
    ['DEBIAN-CVE-2005-3111/backupninja', 'medium', { 'Debian:9': '0.8-2', 'Debian:8': '0.8-2', 'Debian:10': '0.8-2', 'Debian:sid': '0.8-2' }, ['CVE-2005-3111']],
    [
      'DEBIAN-CVE-2022-0456/chromium',
      'unknown',
      { 'Debian:12': '98.0.4758.80-1', 'Debian:11': '98.0.4758.80-1~deb11u1', 'Debian:10': null, 'Debian:sid': '98.0.4758.80-1', 'Debian:9': null },
      ['CVE-2022-0456'],
    ],
    ['DEBIAN-CVE-2025-53603/sope', 'unknown', { 'Debian:12': '5.8.0-1+deb12u1', 'Debian:11': '5.0.1-2+deb11u1', 'Debian:sid': '5.12.1-2', 'Debian:13': '5.12.1-2' }, ['CVE-2025-53603']],
  ];
  for (const [id, severity, expected, aliases] of CASES) {
    it(`${id}: severity ${severity}, ${JSON.stringify(expected)}`, () => {
      const a = byId(advisories, id);
      assert.equal(a.source, 'debian-tracker');
      assert.equal(a.severity, severity);
      assert.deepEqual(releases(a), expected);
      assert.deepEqual(a.aliases, aliases);
    });
  }

  it('open (chromium in buster, urgency end-of-life) is an unfixed range from 0', () => {
    const buster = byId(advisories, 'DEBIAN-CVE-2022-0456/chromium').affected.find((x) => x.ecosystem === 'Debian:10');
    assert.deepEqual(buster, { ecosystem: 'Debian:10', package: 'chromium', ranges: [{ introduced: '0', fixed: null, lastAffected: null }], versions: [], notAffected: false });
  });

  it('the description is the summary', () => {
    assert.match(byId(advisories, 'DEBIAN-CVE-2025-53603/sope').summary ?? '', /^In Alinto SOPE SOGo 2\.0\.2 through 5\.12\.2/);
  });
});

describe('parseDebianTracker: odd and hostile input', () => {
  it('undetermined is kept as unfixed and counted', () => {
    const doc = fixture();
    const sope = doc.sope!['CVE-2025-53603']!;
    (sope.releases as Record<string, Record<string, unknown>>).bookworm = { status: 'undetermined', urgency: 'not yet assigned' };
    const report = new FeedReport();
    const a = byId(parseDebianTracker(doc, report), 'DEBIAN-CVE-2025-53603/sope');
    assert.equal(releases(a)['Debian:12'], null);
    assert.equal(report.counts.get('undetermined'), 1);
  });

  const REFUSED: [string, unknown][] = [
    ['an array', [fixture()]],
    ['a string', 'prototypejs'],
    ['null', null],
  ];
  for (const [name, doc] of REFUSED) {
    it(`the document is ${name} -> PW_ERR_FEED_FORMAT`, () => {
      assert.throws(() => parseDebianTracker(doc, new FeedReport()), (e: unknown) => e instanceof FeedFormatError && e.code === 'PW_ERR_FEED_FORMAT');
    });
  }

  const SKIPPED: [string, (doc: Record<string, unknown>) => void, string][] = [
    ['a package that is a string', (d) => (d.evil = 'CVE-2024-0001'), 'PW_ERR_FEED_FORMAT'],
    ['a package name with a space', (d) => (d['bad name'] = { 'CVE-2024-0001': { releases: {} } }), 'PW_ERR_FEED_FORMAT'],
    ['releases that are a string', (d) => (d.sope = { 'CVE-2025-53603': { releases: 'bookworm' } }), 'PW_ERR_FEED_FORMAT'],
    ['an unknown status', (d) => (d.sope = { 'CVE-2025-53603': { releases: { bookworm: { status: 'fixed-maybe', urgency: 'low' } } } }), 'PW_ERR_FEED_UNSUPPORTED'],
    ['an unknown codename', (d) => (d.sope = { 'CVE-2025-53603': { releases: { bookworm2: { status: 'open', urgency: 'low' } } } }), 'PW_ERR_FEED_UNSUPPORTED'],
    ['resolved without fixed_version', (d) => (d.sope = { 'CVE-2025-53603': { releases: { bookworm: { status: 'resolved', urgency: 'low' } } } }), 'PW_ERR_FEED_FORMAT'],
    ['a fixed_version dpkg rejects', (d) => (d.sope = { 'CVE-2025-53603': { releases: { bookworm: { status: 'resolved', fixed_version: '1:', urgency: 'low' } } } }), 'PW_ERR_INVALID_VERSION'],
    ['a fixed_version with a shell fragment', (d) => (d.sope = { 'CVE-2025-53603': { releases: { bookworm: { status: 'resolved', fixed_version: '1.0;reboot', urgency: 'low' } } } }), 'PW_ERR_INVALID_VERSION'],
    ['a status that is a number', (d) => (d.sope = { 'CVE-2025-53603': { releases: { bookworm: { status: 1 } } } }), 'PW_ERR_FEED_FORMAT'],
  ];
  for (const [name, mutate, code] of SKIPPED) {
    it(`${name} -> one ${code} warning, the other packages are kept`, () => {
      const doc = fixture() as Record<string, unknown>;
      mutate(doc);
      const report = new FeedReport();
      const advisories = parseDebianTracker(doc, report);
      assert.equal(report.warningCount(code), 1);
      assert.equal(report.warningCount(), 1);
      assert.ok(advisories.some((a) => a.id === 'DEBIAN-CVE-2008-7220/prototypejs'));
    });
  }
});
