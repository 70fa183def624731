/**
 * Findings carry the EPSS score of their likeliest CVE, and EPSS moves a due date only when
 * the policy says so: real AlmaLinux 9 advisories, a real RHEL 9.5 package set and the real
 * EPSS excerpt of 2026-09-29.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { FindingSchema, type Finding } from '../../../shared/protocol.ts';
import { parseConfig } from '../../config.ts';
import { dataPath } from '../../../shared/testing/data.ts';
import { parseEpssCsv, type EpssScore } from '../feeds/epss.ts';
import { EPSS_EXCERPT } from '../../../shared/testing/feed-fixtures.ts';
import { FeedReport } from '../feeds/types.ts';
import { Correlator } from './correlator.ts';
import { topEpss } from './findings.ts';
import { fixFirst } from './fix-order.ts';
import { DEFAULT_POLICY, DuePolicySchema, type DuePolicy } from './policy.ts';
import { inventoryOf, loadOsv, rhel95Packages } from '../../../shared/testing/correlate-fixtures.ts';

const epss = new Map<string, EpssScore>(parseEpssCsv(readFileSync(EPSS_EXCERPT, 'utf8'), new FeedReport()).entries.map((e) => [e.cve, { score: e.score, percentile: e.percentile }]));
const NOW = new Date('2026-10-01T00:00:00Z');

async function findings(policy: DuePolicy, scores: ReadonlyMap<string, EpssScore> | undefined): Promise<Finding[]> {
  const c = new Correlator();
  c.apply(await loadOsv(dataPath('osv', 'almalinux9.osv.jsonl.gz')));
  return c.findings(inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages()), { policy, now: NOW, kev: new Map(), ...(scores === undefined ? {} : { epss: scores }) }).findings;
}

const byAdvisory = (fs: Finding[], id: string): Finding => {
  const f = fs.find((x) => x.advisory === id && x.status !== 'resolved');
  assert.ok(f, `${id} is a finding of the RHEL 9.5 package set`);
  return f;
};

describe('findings carry EPSS beside severity', () => {
  it('glibc ALSA-2026:2786: the higher of CVE-2026-0861 (0.00392) and CVE-2026-0915 (0.00627), with its percentile; every finding still passes the schema', async () => {
    const fs = await findings(DEFAULT_POLICY, epss);
    assert.deepEqual(byAdvisory(fs, 'ALSA-2026:2786').epss, { cve: 'CVE-2026-0915', score: 0.00627, percentile: 0.47999 });
    assert.equal(fs.filter((f) => f.advisory === 'ALSA-2026:2786').length, 5, 'one finding per glibc rpm, each with the score');
    for (const f of fs) FindingSchema.parse(f);
    assert.ok(fs.some((f) => f.epss === null), 'a finding whose CVEs have no score in the set says null');
  });

  it('no EPSS feed: every finding says null; a stored finding from before EPSS (no field) still validates', async () => {
    const fs = await findings(DEFAULT_POLICY, undefined);
    assert.ok(fs.length > 0);
    assert.ok(fs.every((f) => f.epss === null));
    const old: Partial<Finding> = { ...(fs[0] as Finding) };
    delete old.epss;
    FindingSchema.parse(old);
  });

  const ties: [string, string[], [string, number][], string | null][] = [
    ['no CVE', [], [], null],
    ['no score for any CVE', ['CVE-2099-0001'], [], null],
    ['the highest wins', ['CVE-A', 'CVE-B'], [['CVE-A', 0.1], ['CVE-B', 0.2]], 'CVE-B'],
    ['a tie goes to the first id', ['CVE-B', 'CVE-A'], [['CVE-A', 0.2], ['CVE-B', 0.2]], 'CVE-A'],
  ];
  for (const [name, cves, scores, want] of ties) {
    it(`topEpss: ${name}`, () => {
      const m = new Map(scores.map(([c, s]) => [c, { score: s, percentile: 0.5 }]));
      assert.equal(topEpss(cves, m)?.cve ?? null, want);
    });
  }
});

describe('EPSS and due dates: no change unless the policy says so', () => {
  it('default policy: every due date is the same with and without EPSS', async () => {
    const without = await findings(DEFAULT_POLICY, undefined);
    const withEpss = await findings(DEFAULT_POLICY, epss);
    assert.deepEqual(
      withEpss.map((f) => [f.advisory, f.package, f.due, f.overdue]),
      without.map((f) => [f.advisory, f.package, f.due, f.overdue]),
    );
  });

  it('epssDueDays {threshold 0.006, days 7}: findings at or over the threshold are due 7 days from their clock start, the rest unchanged', async () => {
    const policy = DuePolicySchema.parse({ epssDueDays: { threshold: 0.006, days: 7 } });
    const base = await findings(DEFAULT_POLICY, epss);
    const ruled = await findings(policy, epss);
    let moved = 0;
    for (const [i, f] of ruled.entries()) {
      const b = base[i] as Finding;
      assert.equal(f.advisory, b.advisory);
      if (f.due !== null && f.epss !== null && f.epss !== undefined && f.epss.score >= 0.006 && f.published !== null) {
        const d = new Date(`${f.published}T00:00:00Z`);
        d.setUTCDate(d.getUTCDate() + 7);
        assert.equal(f.due, d.toISOString().slice(0, 10), f.advisory);
        assert.match(f.why, /EPSS 0\.\d+ \(CVE-[\d-]+\) >= 0\.006: due in 7 days by policy/);
        moved++;
      } else {
        assert.equal(f.due, b.due, f.advisory);
      }
    }
    assert.ok(moved >= 2, `${moved} findings moved (glibc 0.00627, protobuf 0.00722, kernel 0.00738 …)`);
    assert.equal(byAdvisory(ruled, 'ALSA-2026:2786').due, '2026-02-24', 'glibc, published 2026-02-17, +7');
  });

  const bad: [string, unknown][] = [
    ['a threshold over 1', { threshold: 1.5, days: 7 }],
    ['a negative threshold', { threshold: -0.1, days: 7 }],
    ['zero days', { threshold: 0.5, days: 0 }],
    ['days not whole', { threshold: 0.5, days: 1.5 }],
    ['an unknown key', { threshold: 0.5, days: 7, percentile: 0.9 }],
    ['a string', '0.5'],
  ];
  for (const [name, value] of bad) {
    it(`the policy refuses ${name}, and so does the collector config at load (PW_ERR_USAGE)`, () => {
      assert.equal(DuePolicySchema.safeParse({ epssDueDays: value }).success, false);
      assert.throws(() => parseConfig({ policy: { epssDueDays: value } }), { code: 'PW_ERR_USAGE', message: /policy\.epssDueDays/ });
    });
  }

  it('the collector config keeps a good rule, and none by default', () => {
    assert.deepEqual(parseConfig({ policy: { epssDueDays: { threshold: 0.5, days: 7 } } }).policy.epssDueDays, { threshold: 0.5, days: 7 });
    assert.equal(parseConfig({}).policy.epssDueDays, undefined);
  });
});

describe('fixFirst: overdue, then KEV, then EPSS (highest first), then severity', () => {
  const f = (name: string, o: Partial<Finding>): Finding => ({
    advisory: name, source: 'osv', cves: [], package: 'p', binaries: ['p'], installed: '1', fixed: '2', status: 'open', severity: 'medium',
    kev: false, epss: null, published: '2026-01-01', firstSeen: '2026-01-01T00:00:00.000Z', due: '2026-12-01', overdue: false, resolvedAt: null, why: '', ...o,
  });
  it('sorts a mixed list', () => {
    const list = [
      f('resolved-critical', { status: 'resolved', severity: 'critical', due: null }),
      f('low-no-epss', { severity: 'low' }),
      f('critical-no-epss', { severity: 'critical' }),
      f('epss-0.5-low', { severity: 'low', epss: { cve: 'CVE-1', score: 0.5, percentile: 0.9 } }),
      f('epss-0.9-medium', { epss: { cve: 'CVE-2', score: 0.9, percentile: 0.99 } }),
      f('kev-low', { kev: true, severity: 'low' }),
      f('overdue-low', { overdue: true, severity: 'low', due: '2026-01-31' }),
      f('kev-epss-0.1', { kev: true, epss: { cve: 'CVE-3', score: 0.1, percentile: 0.5 } }),
    ];
    assert.deepEqual(
      [...list].sort(fixFirst).map((x) => x.advisory),
      ['overdue-low', 'kev-epss-0.1', 'kev-low', 'epss-0.9-medium', 'epss-0.5-low', 'critical-no-epss', 'low-no-epss', 'resolved-critical'],
    );
  });
});
