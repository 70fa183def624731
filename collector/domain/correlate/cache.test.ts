import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dataPath } from '../../../shared/testing/data.ts';
import type { Inventory } from '../../../shared/protocol.ts';
import type { Advisory } from '../feeds/types.ts';
import { Correlator, matchHash as matchHashOf } from './correlator.ts';
import { DEFAULT_POLICY } from './policy.ts';
import { inventoryOf, loadOsv, rhel95Packages } from '../../../shared/testing/correlate-fixtures.ts';

const ctx = { policy: DEFAULT_POLICY, now: new Date('2026-11-26T18:00:00Z'), kev: new Map() };

/** A new advisory for the image's bash, fixed just above its installed version: what a feed import brings. */
function bashFix(n: number): Advisory {
  const bash = rhel95Packages().find((p) => p.name === 'bash');
  assert.ok(bash);
  return {
    source: 'osv',
    id: `ALSA-2099:000${n}`,
    aliases: [`CVE-2099-000${n}`],
    summary: 'Important: bash security update',
    severity: 'high',
    published: '2026-11-20T00:00:00.000Z',
    modified: '2026-11-20T00:00:00.000Z',
    withdrawn: null,
    affected: [{ ecosystem: 'AlmaLinux:9', package: 'bash', ranges: [{ introduced: '0', fixed: `${bash.version}.1`, lastAffected: null }], versions: [], notAffected: false }],
  };
}

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
    const fresh = bashFix(1);
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

  /** A new advisory for one installed package, dated by `n` so each import changes it. */
  const advisoryFor = (name: string, n: number): Advisory => {
    const p = packages.find((x) => x.name === name);
    assert.ok(p, name);
    return {
      source: 'osv',
      id: `ALSA-2099:${String(1000 + n)}`,
      aliases: [],
      summary: `test ${name}`,
      severity: 'high',
      published: '2026-11-20T00:00:00.000Z',
      modified: new Date(Date.UTC(2026, 10, 20, 0, 0, n)).toISOString(),
      withdrawn: null,
      affected: [{ ecosystem: 'AlmaLinux:9', package: name, ranges: [{ introduced: '0', fixed: `${p.version}.1`, lastAffected: null }], versions: [], notAffected: false }],
    };
  };

  const imports: { name: string; imports: string[][]; rematched: (units: number) => number }[] = [
    { name: 'two imports between two hosts\' reports: the packages of both are matched again, nothing else', imports: [['bash'], ['openssl-libs']], rematched: () => 2 },
    { name: 'one import touching three packages', imports: [['bash', 'openssl-libs', 'glibc']], rematched: () => 3 },
    { name: 'more imports than the correlator remembers (32): the entry is matched again whole', imports: Array.from({ length: 34 }, (_, i) => [i % 2 === 0 ? 'bash' : 'openssl-libs']), rematched: (all) => all },
  ];
  for (const c of imports) {
    it(c.name, () => {
      const corr = new Correlator();
      corr.apply(alma);
      const inv = inventoryOf('AlmaLinux:9', 'rpm', packages);
      const before = corr.findings(inv, ctx);
      let n = 0;
      const batches = c.imports.map((names) => names.map((name) => advisoryFor(name, n++)));
      for (const batch of batches) corr.apply(batch);
      const added = new Set(batches.flat().map((a) => a.id));
      const matched = corr.stats.unitsMatched;
      const after = corr.findings(inv, ctx);
      assert.equal(corr.stats.unitsMatched - matched, c.rematched(units));
      assert.equal(after.findings.length, before.findings.length + added.size, 'every new advisory is a finding');
      for (const id of added) assert.equal(after.findings.find((f) => f.advisory === id)?.status, 'open', id);
      // The same findings as a correlator that saw every advisory before its first match.
      const uncached = new Correlator();
      uncached.apply([...alma, ...batches.flat()]);
      assert.deepEqual(after.findings, uncached.findings(inv, ctx).findings);
    });
  }

  const bounds: { name: string; options: { maxCachedInventories?: number; maxCachedMatches?: number }; kept: number }[] = [
    { name: 'at most 2 package sets: the oldest of 3 goes', options: { maxCachedInventories: 2 }, kept: 2 },
    { name: 'at most 300 matches: each set has more than 150, so only the newest stays', options: { maxCachedMatches: 300 }, kept: 1 },
    { name: 'one set over the match budget on its own is still kept (the newest always stays)', options: { maxCachedMatches: 10 }, kept: 1 },
  ];
  for (const b of bounds) {
    it(`the cache is bounded: ${b.name}; a set pushed out is matched again, to the same findings`, () => {
      const c = new Correlator(b.options);
      c.apply(alma);
      // Three package sets: the image, and two with one package at another release.
      const sets = [0, 1, 2].map((n) => inventoryOf('AlmaLinux:9', 'rpm', packages.map((p, i) => (i === 0 && n > 0 ? { ...p, version: `${p.version}.${String(n)}` } : p))));
      const first = sets.map((inv) => c.findings(inv, ctx));
      assert.ok(first.every((d) => d.findings.length > 150), 'the image has more than 150 AlmaLinux 9 findings');
      assert.equal(c.cached.inventories, b.kept);
      assert.equal(c.cached.matches, [...first].reverse().slice(0, b.kept).reduce((n, d) => n + d.findings.length, 0));
      const misses = c.stats.misses;
      const again = c.findings(sets[0] as Inventory, ctx);
      assert.equal(c.stats.misses, misses + 1, 'the oldest set was pushed out');
      assert.deepEqual(again.findings, first[0]?.findings);
    });
  }

  it('sets that differ in a few packages share their other units: each is matched once, and a feed change re-matches a shared unit once for all sets, without their inventories', () => {
    const c = new Correlator();
    c.apply(alma);
    // Ten sets of the same image, each without one other package: a fleet drifting from one image.
    const sets = Array.from({ length: 10 }, (_, i) => inventoryOf('AlmaLinux:9', 'rpm', packages.filter((_, j) => j !== i * 7)));
    const docs = sets.map((inv) => c.findings(inv, ctx));
    assert.equal(c.stats.misses, 10);
    assert.equal(c.stats.unitsMatched, units, 'every distinct unit matched once, not once per set');
    assert.equal(c.cached.units, units);

    const fresh = bashFix(2);
    c.apply([fresh]);
    const matchedBefore = c.stats.unitsMatched;
    for (const [i, inv] of sets.entries()) {
      const got = c.matchesOf(matchHashOf(inv));
      assert.ok(got !== undefined);
      const hasBash = inv.packages.some((p) => p.name === 'bash');
      assert.equal(got.some((m) => m.advisory.id === 'ALSA-2099:0002'), hasBash, `set ${i}`);
      assert.equal(got.length, (docs[i]?.findings.length ?? 0) + (hasBash ? 1 : 0), `set ${i}: the new match and the ones it had`);
    }
    assert.equal(c.stats.unitsMatched - matchedBefore, 1, 'the shared bash unit matched once for all ten sets');
    assert.equal(c.matchesOf('no-such-content'), undefined);
  });
});

