/**
 * Issue 10, defect 1: one enrolled agent's inventory must not stall the collector. Each
 * row is a hostile shape, correlated against the real Debian DSA/DLA lists; its time is
 * compared with JSON.parse of the same inventory in the same run (the machine is shared,
 * so only the ratio means anything), and what it produced is checked to be bounded.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { Findings, Inventory } from '../../../shared/protocol.ts';
import { compareVersions } from '../../../shared/versions/index.ts';
import type { Advisory } from '../feeds/types.ts';
import { Correlator, MAX_MATCH_WARNINGS } from './correlator.ts';
import { MAX_FINDING_BINARIES } from './match.ts';
import { DEFAULT_POLICY } from './policy.ts';
import { inventoryOf, loadDebianLists, manyBinaries } from '../../../shared/testing/correlate-fixtures.ts';

const ctx = { policy: DEFAULT_POLICY, now: new Date('2026-11-26T18:00:00Z'), kev: new Map() };
/** Debian:11 sources with the most DSA/DLA entries in the real lists (chromium 39, firefox-esr 22, ...). */
const SOURCES = ['chromium', 'firefox-esr', 'thunderbird', 'webkit2gtk', 'openssl', 'curl', 'ghostscript', 'tiff', 'imagemagick', 'xen'];
/** Correlation may cost this many times a JSON.parse of the same inventory; the quadratic code cost hundreds. */
const MAX_RATIO = 40;

function bestOf(runs: number, fn: () => unknown): { ms: number } {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    fn();
    best = Math.min(best, performance.now() - t);
  }
  return { ms: best };
}

interface Row {
  name: string;
  /** false: checked for what it produces only (its cost is a set of live-patch CVEs per correlation, which JSON.parse is no floor for). */
  timed?: boolean;
  inventory: () => Inventory;
  check: (doc: Findings, advisories: readonly Advisory[]) => void;
}

function entriesFor(advisories: readonly Advisory[], pkg: string): number {
  return new Set(advisories.filter((a) => a.withdrawn === null && a.affected.some((x) => x.ecosystem === 'Debian:11' && x.package === pkg)).map((a) => a.id)).size;
}

const rows: Row[] = [
  {
    name: '200,000 binaries of 10 source packages',
    inventory: () => inventoryOf('Debian:11', 'deb', manyBinaries(200_000, SOURCES)),
    check(doc) {
      assert.ok(doc.findings.length > 0);
      for (const f of doc.findings) {
        assert.equal(f.binaries.length, MAX_FINDING_BINARIES, `${f.advisory} ${f.package}: 20,000 binaries, at most ${MAX_FINDING_BINARIES} listed`);
        assert.match(f.why, new RegExp(`the first ${MAX_FINDING_BINARIES} affected binaries are listed`));
      }
    },
  },
  {
    name: '50,000 versions of one source package (chromium)',
    inventory: () => inventoryOf('Debian:11', 'deb', manyBinaries(50_000, ['chromium'], (i) => `1.${i}-1`)),
    check(doc, advisories) {
      // One finding per advisory, for the lowest version: the history keys findings by (advisory, package).
      const chromium = doc.findings.filter((f) => f.package === 'chromium');
      assert.equal(chromium.length, entriesFor(advisories, 'chromium'));
      assert.equal(new Set(chromium.map((f) => f.advisory)).size, chromium.length);
      for (const f of chromium) {
        assert.equal(f.installed, '1.0-1');
        assert.match(f.why, /; 50000 installed versions are affected, the lowest is shown/);
        assert.equal(f.binaries.length, MAX_FINDING_BINARIES);
      }
    },
  },
  {
    name: '50,000 chromium versions the scheme rejects',
    inventory: () => inventoryOf('Debian:11', 'deb', manyBinaries(50_000, ['chromium'], (i) => `${i}.0-`)),
    check(doc) {
      assert.equal(doc.findings.length, 0);
      assert.ok(doc.warnings.length <= MAX_MATCH_WARNINGS + 1, `${doc.warnings.length} warnings`);
      assert.match(doc.warnings.at(-1) ?? '', /^\d+ more warnings like these were left out$/);
    },
  },
  {
    name: '1,000 installed kernels and a live patch of 10,000 CVEs',
    timed: false,
    inventory: () =>
      inventoryOf('Debian:11', 'deb', manyBinaries(100, SOURCES), {
        release: '5.10.0-1-amd64',
        package: { name: 'linux-image-5.10.0-1-amd64', source: 'linux', version: '5.10.1-1' },
        installed: Array.from({ length: 1000 }, (_, i) => ({ name: `linux-image-5.10.0-${i + 1}-amd64`, version: `5.10.${i + 1}-1`, release: `5.10.0-${i + 1}-amd64` })),
        livepatch: { provider: 'kpatch', active: true, effectiveVersion: null, fixedCves: Array.from({ length: 10_000 }, (_, i) => `CVE-2099-${String(i + 10000)}`), modules: [] },
      }),
    check(doc) {
      const kernel = doc.findings.filter((f) => f.package === 'linux');
      assert.ok(kernel.length > 0);
      // The first installed kernel (in the inventory's order) that has the fix is named, as before.
      const pending = kernel.filter((k) => k.status === 'fixed-pending-reboot');
      assert.ok(pending.length > 0);
      for (const f of pending) {
        const named = /installed kernel \S+ \(5\.10\.(\d+)-1\) has the fix/.exec(f.why);
        assert.ok(named !== null && f.fixed !== null, f.why);
        const n = Number(named[1]);
        assert.ok(compareVersions('deb', `5.10.${n}-1`, f.fixed) >= 0, f.why);
        if (n > 1) assert.ok(compareVersions('deb', `5.10.${n - 1}-1`, f.fixed) < 0, `${f.why}: an earlier installed kernel has the fix too`);
      }
    },
  },
];

describe('correlation is linear in the inventory: hostile shapes against the real DSA/DLA lists', () => {
  let advisories: Advisory[] = [];
  before(async () => {
    advisories = await loadDebianLists();
  });
  for (const row of rows) {
    it(`${row.name}: ${row.timed === false ? '' : `within ${MAX_RATIO}x a JSON.parse of it, `}output bounded`, (t) => {
      const inv = row.inventory();
      const text = JSON.stringify(inv);
      const baseline = bestOf(3, () => JSON.parse(text));
      // A new Correlator per run: every run matches the whole inventory (no cache hit).
      let ms = Infinity;
      let doc: Findings | undefined;
      for (let i = 0; i < 2; i++) {
        const c = new Correlator();
        c.apply(advisories);
        const t = performance.now();
        doc = c.findings(inv, ctx);
        ms = Math.min(ms, performance.now() - t);
      }
      assert.ok(doc !== undefined);
      t.diagnostic(`correlation ${ms.toFixed(1)} ms, JSON.parse ${baseline.ms.toFixed(1)} ms: ${(ms / baseline.ms).toFixed(1)}x`);
      row.check(doc, advisories);
      if (row.timed !== false) assert.ok(ms < baseline.ms * MAX_RATIO, `${row.name}: correlation ${ms.toFixed(0)} ms, JSON.parse ${baseline.ms.toFixed(0)} ms (${(ms / baseline.ms).toFixed(1)}x)`);
    });
  }
});
