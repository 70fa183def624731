import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FeedFormatError } from '../../../shared/errors.ts';
import { eventsToRanges, parseOsv } from './osv.ts';
import { readFeedFile } from '../../services/feeds/reader.ts';
import { AdvisorySchema, FeedReport, type Advisory, type AdvisoryRange } from './types.ts';

const DATA = join(import.meta.dirname, '../../../../shared/data/osv');

function sample(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(DATA, path), 'utf8')) as Record<string, unknown>;
}

async function parseFile(path: string): Promise<{ advisories: Advisory[]; report: FeedReport; refused: number }> {
  const report = new FeedReport();
  const advisories: Advisory[] = [];
  let refused = 0;
  for await (const { name, record } of readFeedFile(path, { report })) {
    try {
      advisories.push(parseOsv(record, report, name));
    } catch (err) {
      if (!(err instanceof FeedFormatError)) throw err;
      refused++;
    }
  }
  return { advisories, report, refused };
}

describe('parseOsv on the real AlmaLinux OSV exports', () => {
  // Counts from ../shared/data/README.md.
  const FILES: [string, number, number | null][] = [
    ['almalinux8.osv.jsonl.gz', 3237, null],
    ['almalinux9.osv.jsonl.gz', 1783, 24012],
    ['almalinux10.osv.jsonl.gz', 660, null],
  ];
  for (const [file, count, affected] of FILES) {
    it(`${file}: ${count} advisories${affected === null ? '' : `, ${affected} affected entries`}, no warnings, all valid`, async () => {
      const { advisories, report, refused } = await parseFile(join(DATA, file));
      assert.equal(refused, 0);
      assert.equal(report.warningCount(), 0, JSON.stringify(report.warnings.slice(0, 3)));
      assert.equal(advisories.length, count);
      if (affected !== null) assert.equal(advisories.reduce((n, a) => n + a.affected.length, 0), affected);
      for (const a of advisories) AdvisorySchema.parse(a);
      // The summary's rating word is the only severity AlmaLinux gives: every rated summary
      // must give a known severity, every unrated one (bug fix, enhancement) unknown.
      for (const a of advisories) {
        const rated = /^(Critical|Important|Moderate|Low): /.test(a.summary ?? '');
        assert.equal(a.severity !== 'unknown', rated, `${a.id}: ${a.summary ?? ''} -> ${a.severity}`);
      }
      const kernel = advisories.filter((a) => a.affected.some((x) => x.package === 'kernel'));
      assert.ok(kernel.length > 0);
    });
  }

  it('almalinux8.osv.jsonl.gz: 102 advisories touch kernel (README)', async () => {
    const { advisories } = await parseFile(join(DATA, 'almalinux8.osv.jsonl.gz'));
    assert.equal(advisories.filter((a) => a.affected.some((x) => x.package === 'kernel')).length, 102);
  });
});

describe('parseOsv on the real sample records', () => {
  it('ALSA-2026:A009 (kernel): 117 AlmaLinux:9 entries, CVEs from related, Important -> high', () => {
    const report = new FeedReport();
    const a = parseOsv(sample('samples/ALSA-2026_A009.json'), report);
    assert.equal(report.warningCount(), 0);
    assert.equal(a.id, 'ALSA-2026:A009');
    assert.equal(a.source, 'osv');
    assert.deepEqual(a.aliases, ['CVE-2026-46300', 'CVE-2026-46333']);
    assert.equal(a.severity, 'high');
    assert.equal(a.summary, 'Important: kernel security update');
    assert.equal(a.published, '2026-05-16T00:00:00.000Z');
    assert.equal(a.modified, '2026-05-16T13:09:42.000Z');
    assert.equal(a.withdrawn, null);
    assert.equal(a.affected.length, 117);
    assert.ok(a.affected.every((x) => x.ecosystem === 'AlmaLinux:9' && !x.notAffected));
    assert.deepEqual(a.affected.find((x) => x.package === 'kernel'), {
      ecosystem: 'AlmaLinux:9',
      package: 'kernel',
      ranges: [{ introduced: '0', fixed: '5.14.0-611.54.6.el9_7', lastAffected: null }],
      versions: [],
      notAffected: false,
    });
  });

  it('ALEA-2019:3314 (enhancement, no rating word, no CVEs): severity unknown, no aliases', () => {
    const a = parseOsv(sample('samples/ALEA-2019_3314.json'), new FeedReport());
    assert.equal(a.severity, 'unknown');
    assert.deepEqual(a.aliases, []);
    assert.equal(a.published, '2019-11-05T17:29:24.000Z');
  });

  it('UBUNTU-CVE-2025-38094: CVE from upstream, Ubuntu priority medium, unfixed range plus 180 listed versions', () => {
    const report = new FeedReport();
    const a = parseOsv(sample('samples-osv.dev/UBUNTU-CVE-2025-38094.json'), report);
    assert.equal(report.warningCount(), 0);
    assert.deepEqual(a.aliases, ['CVE-2025-38094']);
    assert.equal(a.severity, 'medium');
    assert.equal(a.affected.length, 1);
    const entry = a.affected[0]!;
    assert.equal(entry.ecosystem, 'Ubuntu:Pro:14.04:LTS');
    assert.equal(entry.package, 'linux');
    assert.deepEqual(entry.ranges, [{ introduced: '0', fixed: null, lastAffected: null }]);
    assert.equal(entry.versions.length, 180);
    assert.ok(a.summary?.startsWith('In the Linux kernel, the following vulnerability has been resolved'));
  });

  it('DSA-3029-1: Debian:7 nginx fixed in 1.2.1-2.2+wheezy3, CVE from aliases', () => {
    const a = parseOsv(sample('samples-osv.dev/DSA-3029-1.json'), new FeedReport());
    assert.deepEqual(a.aliases, ['CVE-2014-3616']);
    assert.equal(a.summary, 'nginx - security update');
    assert.equal(a.severity, 'unknown');
    assert.deepEqual(a.affected, [
      { ecosystem: 'Debian:7', package: 'nginx', ranges: [{ introduced: '0', fixed: '1.2.1-2.2+wheezy3', lastAffected: null }], versions: [], notAffected: false },
    ]);
  });
});

describe('eventsToRanges', () => {
  type Ev = { kind: 'introduced' | 'fixed' | 'last_affected' | 'limit'; version: string };
  const i = (version: string): Ev => ({ kind: 'introduced', version });
  const f = (version: string): Ev => ({ kind: 'fixed', version });
  const l = (version: string): Ev => ({ kind: 'last_affected', version });
  const CASES: [string, Ev[], AdvisoryRange[]][] = [
    ['introduced 0, fixed 1.0-1', [i('0'), f('1.0-1')], [{ introduced: '0', fixed: '1.0-1', lastAffected: null }]],
    ['introduced 0 only (unfixed)', [i('0')], [{ introduced: '0', fixed: null, lastAffected: null }]],
    ['introduced 0, last_affected 2.1.214', [i('0'), l('2.1.214')], [{ introduced: '0', fixed: null, lastAffected: '2.1.214' }]],
    [
      'two pairs: [1.0.0, 1.0.2) and [3.0.0, 3.2.5)',
      [i('1.0.0'), f('1.0.2'), i('3.0.0'), f('3.2.5')],
      [
        { introduced: '1.0.0', fixed: '1.0.2', lastAffected: null },
        { introduced: '3.0.0', fixed: '3.2.5', lastAffected: null },
      ],
    ],
    [
      'pair then open: [1, 2) and [5, ...)',
      [i('1'), f('2'), i('5')],
      [
        { introduced: '1', fixed: '2', lastAffected: null },
        { introduced: '5', fixed: null, lastAffected: null },
      ],
    ],
    ['introduced twice before a fix keeps the first', [i('1'), i('2'), f('3')], [{ introduced: '1', fixed: '3', lastAffected: null }]],
  ];
  for (const [name, events, expected] of CASES) {
    it(name, () => {
      assert.deepEqual(eventsToRanges(events), expected);
    });
  }
  const REFUSED: [string, Ev[], string][] = [
    ['fixed without introduced', [f('1.0')], 'fixed 1.0 has no introduced before it'],
    ['limit event', [i('0'), { kind: 'limit', version: '5' }], 'limit events cannot be evaluated on ECOSYSTEM versions'],
    ['no events', [], 'the range has no introduced event'],
  ];
  for (const [name, events, expected] of REFUSED) {
    it(`refused: ${name}`, () => {
      assert.equal(eventsToRanges(events), expected);
    });
  }
});

describe('parseOsv refuses bad records with PW_ERR_FEED_FORMAT', () => {
  const base = (): Record<string, unknown> => sample('samples-osv.dev/DSA-3029-1.json');
  const CASES: [string, () => unknown, RegExp][] = [
    ['modified 2014-02-30 (no such day)', () => ({ ...base(), modified: '2014-02-30T08:18:07Z' }), /modified/],
    ['published "yesterday"', () => ({ ...base(), published: 'yesterday' }), /published/],
    ['withdrawn as a number', () => ({ ...base(), withdrawn: 1700000000 }), /withdrawn/],
    ['modified missing', () => ({ ...base(), modified: undefined }), /modified/],
    ['id is a number', () => ({ ...base(), id: 3029 }), /id/],
    ['id with a space', () => ({ ...base(), id: 'DSA 3029' }), /id/],
    ['affected is a string', () => ({ ...base(), affected: 'nginx' }), /affected/],
    ['aliases is an object', () => ({ ...base(), aliases: { cve: 'CVE-2014-3616' } }), /aliases/],
    ['an event with introduced and fixed', () => withEvents([{ introduced: '0', fixed: '1.2' }]), /both introduced and fixed/],
    ['an empty event', () => withEvents([{}]), /none of introduced/],
    ['the record is an array', () => [base()], /not|expected/],
    ['the record is null', () => null, /expected/],
  ];
  function withEvents(events: unknown[]): unknown {
    return { ...base(), affected: [{ package: { ecosystem: 'Debian:7', name: 'nginx' }, ranges: [{ type: 'ECOSYSTEM', events }] }] };
  }
  for (const [name, make, message] of CASES) {
    it(name, () => {
      assert.throws(
        () => parseOsv(make(), new FeedReport(), 'test'),
        (e: unknown) => e instanceof FeedFormatError && e.code === 'PW_ERR_FEED_FORMAT' && message.test(e.message),
      );
    });
  }
});

describe('parseOsv refuses what it cannot evaluate per affected entry, with counted warnings', () => {
  const nginx = (ranges: unknown[], extra: Record<string, unknown> = {}): unknown => ({
    ...sample('samples-osv.dev/DSA-3029-1.json'),
    affected: [{ package: { ecosystem: 'Debian:7', name: 'nginx' }, ranges, ...extra }, { package: { ecosystem: 'Debian:8', name: 'nginx' }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.6.2-1' }] }] }],
  });
  const CASES: [string, unknown, string, number, number][] = [
    ['SEMVER range only', nginx([{ type: 'SEMVER', events: [{ introduced: '0' }, { fixed: '1.2.1' }] }]), 'PW_ERR_FEED_UNSUPPORTED', 1, 1],
    ['GIT range only', nginx([{ type: 'GIT', repo: 'https://github.com/nginx/nginx', events: [{ introduced: '0' }, { fixed: 'a'.repeat(40) }] }]), 'PW_ERR_FEED_UNSUPPORTED', 1, 1],
    ['unknown range type FOO', nginx([{ type: 'FOO', events: [{ introduced: '0' }] }]), 'PW_ERR_FEED_UNSUPPORTED', 1, 1],
    [
      'GIT plus ECOSYSTEM: the ECOSYSTEM range is kept',
      nginx([
        { type: 'GIT', repo: 'https://github.com/nginx/nginx', events: [{ introduced: '0' }] },
        { type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.2.1-2.2+wheezy3' }] },
      ]),
      'PW_ERR_FEED_UNSUPPORTED',
      1,
      2,
    ],
    ['SEMVER with listed versions: versions kept', nginx([{ type: 'SEMVER', events: [{ introduced: '0' }] }], { versions: ['1.2.1-2.2'] }), 'PW_ERR_FEED_UNSUPPORTED', 1, 2],
    ['limit event', nginx([{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { limit: '2.0' }] }]), 'PW_ERR_FEED_UNSUPPORTED', 1, 1],
    ['fixed without introduced', nginx([{ type: 'ECOSYSTEM', events: [{ fixed: '1.2.1-2.2+wheezy3' }] }]), 'PW_ERR_FEED_UNSUPPORTED', 1, 1],
    ['a version with a shell fragment', nginx([{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: '1.2; rm -rf /' }] }]), 'PW_ERR_INVALID_VERSION', 1, 1],
    ['no ranges, no versions', nginx([]), 'PW_ERR_FEED_FORMAT', 1, 1],
  ];
  for (const [name, record, code, warnings, kept] of CASES) {
    it(`${name} -> ${code} x${warnings}, ${kept} entries kept`, () => {
      const report = new FeedReport();
      const a = parseOsv(record, report, 'test');
      assert.equal(report.warningCount(code), warnings);
      assert.equal(report.warningCount(), warnings);
      assert.equal(a.affected.length, kept);
      AdvisorySchema.parse(a);
      // Nothing refused may come back as an unbounded "affected from 0" range.
      for (const x of a.affected) if (x.ecosystem === 'Debian:7' && x.ranges.length > 0) assert.equal(x.ranges[0]?.fixed, '1.2.1-2.2+wheezy3');
    });
  }

  it('an affected entry without a package is skipped with PW_ERR_FEED_UNSUPPORTED', () => {
    const report = new FeedReport();
    const a = parseOsv({ ...sample('samples-osv.dev/DSA-3029-1.json'), affected: [{ ranges: [{ type: 'GIT', repo: 'x', events: [{ introduced: '0' }] }] }] }, report);
    assert.equal(a.affected.length, 0);
    assert.equal(report.warningCount('PW_ERR_FEED_UNSUPPORTED'), 1);
  });
});

describe('parseOsv severity sources', () => {
  const dsa = (extra: Record<string, unknown>): unknown => ({ ...sample('samples-osv.dev/DSA-3029-1.json'), ...extra });
  const CASES: [string, unknown, string, number][] = [
    ['CVSS_V3 vector 9.8', dsa({ severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' }] }), 'critical', 0],
    ['CVSS_V3 vector 5.8', dsa({ severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:L/I:N/A:N' }] }), 'medium', 0],
    ['CVSS_V3 wins over database_specific', dsa({ severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N' }], database_specific: { severity: 'HIGH' } }), 'low', 0],
    ['database_specific MODERATE', dsa({ database_specific: { severity: 'MODERATE' } }), 'medium', 0],
    ['per-affected CVSS_V3', dsa({ affected: [{ package: { ecosystem: 'Debian:7', name: 'nginx' }, severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N' }], ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }] }] }] }), 'high', 0],
    ['a broken vector is a warning, then the summary word decides', dsa({ summary: 'Low: nginx update', severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N' }] }), 'low', 1],
    ['CVSS_V4 only: not computed', dsa({ severity: [{ type: 'CVSS_V4', score: 'CVSS:4.0/AV:N/AC:L/AT:N/PR:H/UI:N/VC:L/VI:L/VA:N/SC:N/SI:N/SA:N' }] }), 'unknown', 0],
  ];
  for (const [name, record, expected, warnings] of CASES) {
    it(`${name} -> ${expected}`, () => {
      const report = new FeedReport();
      assert.equal(parseOsv(record, report).severity, expected);
      assert.equal(report.warningCount(), warnings);
    });
  }
});
