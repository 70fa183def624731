import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dataPath } from '../../shared/testing/data.ts';
import type { Advisory } from '../feeds/types.ts';
import { Correlator } from './correlator.ts';
import { DEFAULT_POLICY } from './policy.ts';
import { inventoryOf, loadOsv, rhel95Packages } from './testkit.ts';

const ctx = { policy: DEFAULT_POLICY, now: new Date('2026-11-26T18:00:00Z'), kev: new Map() };

describe('the correlator matches identical inventories once and re-matches only what a feed import changed', async () => {
  const alma = await loadOsv(dataPath('osv', 'almalinux9.osv.jsonl.gz'));
  const packages = rhel95Packages();
  const units = new Set(packages.map((p) => `${p.name} ${p.version}`)).size;

  it('a second host with the same packages (other name, other time) is a cache hit: no unit matched again', () => {
    const c = new Correlator();
    c.apply(alma);
    const a = c.findings(inventoryOf('AlmaLinux:9', 'rpm', packages), ctx);
    assert.equal(c.stats.unitsMatched, units);
    const other = inventoryOf('AlmaLinux:9', 'rpm', packages);
    other.host.hostname = 'web-2';
    other.collectedAt = '2026-11-27T00:00:00.000Z';
    const b = c.findings(other, ctx);
    assert.equal(c.stats.unitsMatched, units);
    assert.equal(c.stats.hits, 1);
    assert.deepEqual(b.findings, a.findings);
  });

  it('a feed import that touches one package re-matches that package only, and its finding appears', () => {
    const c = new Correlator();
    c.apply(alma);
    const inv = inventoryOf('AlmaLinux:9', 'rpm', packages);
    const before = c.findings(inv, ctx);
    const bash = packages.find((p) => p.name === 'bash');
    assert.ok(bash);
    const fresh: Advisory = {
      source: 'osv',
      id: 'ALSA-2099:0001',
      aliases: ['CVE-2099-0001'],
      summary: 'Important: bash security update',
      severity: 'high',
      published: '2026-11-20T00:00:00.000Z',
      modified: '2026-11-20T00:00:00.000Z',
      withdrawn: null,
      affected: [{ ecosystem: 'AlmaLinux:9', package: 'bash', ranges: [{ introduced: '0', fixed: `${bash.version}.1`, lastAffected: null }], versions: [], notAffected: false }],
    };
    assert.equal(c.apply([fresh]), 1);
    const matchedBefore = c.stats.unitsMatched;
    const after = c.findings(inv, ctx);
    assert.equal(c.stats.unitsMatched - matchedBefore, 1);
    assert.equal(after.findings.length, before.findings.length + 1);
    assert.equal(after.findings.find((f) => f.advisory === 'ALSA-2099:0001')?.status, 'open');

    // Withdrawn: the finding goes, again by re-matching one package.
    c.apply([{ ...fresh, withdrawn: '2026-11-21T00:00:00.000Z' }]);
    const m = c.stats.unitsMatched;
    assert.equal(c.findings(inv, ctx).findings.length, before.findings.length);
    assert.equal(c.stats.unitsMatched - m, 1);
  });
});
