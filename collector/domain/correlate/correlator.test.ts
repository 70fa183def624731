import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dataPath } from '../../../shared/testing/data.ts';
import type { Package } from '../../../shared/protocol.ts';
import { Correlator } from './correlator.ts';
import { DEFAULT_POLICY } from './policy.ts';
import { inventoryOf, loadOsv, rhel95Packages, rpmOracle } from '../../../shared/testing/correlate-fixtures.ts';
import { needs, TOOLS } from '../../../shared/testing/system-tools.ts';

const NOW = new Date('2026-11-26T18:00:00Z');

describe('RHEL 9.5 image against the real AlmaLinux OSV files: findings equal the librpm oracle', { skip: needs(TOOLS.pythonRpm) }, () => {
  for (const major of ['8', '9', '10']) {
    it(`AlmaLinux:${major}`, async () => {
      const advisories = await loadOsv(dataPath('osv', `almalinux${major}.osv.jsonl.gz`));
      const ecosystem = `AlmaLinux:${major}`;
      const packages = rhel95Packages();
      const c = new Correlator();
      c.apply(advisories);
      const doc = c.findings(inventoryOf(ecosystem, 'rpm', packages), { policy: DEFAULT_POLICY, now: NOW, kev: new Map() });
      const got = new Set(doc.findings.map((f) => `${f.advisory} ${f.package} ${f.installed} ${f.fixed ?? ''}`));

      // The oracle: every (advisory, binary rpm) whose ECOSYSTEM range contains the
      // installed version, judged by the real librpm, with kernel binaries left out.
      const byName = new Map<string, Package[]>();
      for (const p of packages) if (p.source !== 'kernel') byName.set(p.name, [...(byName.get(p.name) ?? []), p]);
      const candidates: { key: string; installed: string; introduced: string; fixed: string }[] = [];
      for (const a of advisories) {
        if (a.withdrawn !== null) continue;
        for (const aff of a.affected) {
          if (aff.ecosystem !== ecosystem) continue;
          for (const p of byName.get(aff.package) ?? []) {
            for (const r of aff.ranges) {
              assert.ok(r.fixed !== null && r.lastAffected === null, `${a.id}: AlmaLinux ranges are introduced/fixed`);
              candidates.push({ key: `${a.id} ${p.name} ${p.version} ${r.fixed}`, installed: p.version, introduced: r.introduced ?? '0', fixed: r.fixed });
            }
          }
        }
      }
      const lower = rpmOracle(candidates.map((c) => [c.installed, c.introduced === '0' ? c.installed : c.introduced]));
      const upper = rpmOracle(candidates.map((c) => [c.installed, c.fixed]));
      const want = new Set(candidates.filter((_, i) => (lower[i] ?? 0) >= 0 && upper[i] === -1).map((c) => c.key));
      assert.ok(candidates.length > 0, 'the image shares packages with the feed');
      assert.deepEqual([...got].sort(), [...want].sort());
      for (const f of doc.findings) {
        assert.equal(f.status, 'open');
        assert.ok(f.why.startsWith(`${f.package} ${f.installed} < ${f.fixed ?? ''} (${ecosystem}, range introduced 0, fixed `), f.why);
      }
    });
  }
});

describe('kernel truth on the real ALSA-2026:A009 (fixed in 5.14.0-611.54.6.el9_7)', async () => {
  const a009 = await loadOsv(dataPath('osv', 'samples', 'ALSA-2026_A009.json'));
  const CVES = ['CVE-2026-46300', 'CVE-2026-46333'];
  const OLD = '5.14.0-611.5.1.el9_7';
  const NEW = '5.14.0-611.54.6.el9_7';
  const kpkg = (name: string, version: string): Package => ({ name, version, arch: 'x86_64', source: 'kernel', sourceVersion: version });
  const running = { name: 'kernel-core', source: 'kernel', version: OLD };
  const base = [...rhel95Packages(), kpkg('kernel-core', OLD), kpkg('kernel-modules', OLD), kpkg('kernel-headers', OLD), kpkg('kernel-tools', OLD)];
  const lpNone = { provider: 'none' as const, active: false, effectiveVersion: null, fixedCves: [], modules: [] };
  const table: { name: string; packages: Package[]; kernel: Parameters<typeof inventoryOf>[3]; want: { package: string; status: string }[] }[] = [
    {
      name: 'running old kernel, nothing newer installed: one open finding, judged once for all kernel binaries',
      packages: base,
      kernel: { release: `${OLD}.x86_64`, package: running, installed: [{ name: 'kernel-core', version: OLD, release: `${OLD}.x86_64` }], livepatch: lpNone },
      want: [{ package: 'kernel-core', status: 'open' }],
    },
    {
      name: 'fixed kernel installed but not running: fixed-pending-reboot',
      packages: [...base, kpkg('kernel-core', NEW)],
      kernel: {
        release: `${OLD}.x86_64`,
        package: running,
        installed: [
          { name: 'kernel-core', version: NEW, release: `${NEW}.x86_64` },
          { name: 'kernel-core', version: OLD, release: `${OLD}.x86_64` },
        ],
        livepatch: lpNone,
      },
      want: [{ package: 'kernel-core', status: 'fixed-pending-reboot' }],
    },
    {
      name: 'live patch lists every CVE: mitigated-livepatch',
      packages: base,
      kernel: { release: `${OLD}.x86_64`, package: running, installed: [], livepatch: { provider: 'kpatch', active: true, effectiveVersion: null, fixedCves: CVES, modules: ['kpatch_5_14_0_611_5_1_1_1'] } },
      want: [{ package: 'kernel-core', status: 'mitigated-livepatch' }],
    },
    {
      name: 'live patch covers only one of the CVEs: still open',
      packages: base,
      kernel: { release: `${OLD}.x86_64`, package: running, installed: [], livepatch: { provider: 'kpatch', active: true, effectiveVersion: null, fixedCves: [CVES[0] as string], modules: [] } },
      want: [{ package: 'kernel-core', status: 'open' }],
    },
    {
      name: 'running the fixed kernel while an old one stays installed: no finding',
      packages: [...base, kpkg('kernel-core', NEW)],
      kernel: { release: `${NEW}.x86_64`, package: { ...running, version: NEW }, installed: [], livepatch: lpNone },
      want: [],
    },
    {
      name: 'running kernel no package provides (unmanaged): no kernel finding from installed kernel packages',
      packages: base,
      kernel: { release: '6.18.44-custom', package: null, installed: [], livepatch: lpNone },
      want: [],
    },
  ];
  for (const row of table) {
    it(row.name, () => {
      const c = new Correlator();
      c.apply(a009);
      const doc = c.findings(inventoryOf('AlmaLinux:9', 'rpm', row.packages, row.kernel), { policy: DEFAULT_POLICY, now: NOW, kev: new Map() });
      const kernelFindings = doc.findings.filter((f) => f.advisory === 'ALSA-2026:A009');
      assert.deepEqual(kernelFindings.map((f) => ({ package: f.package, status: f.status })), row.want);
      for (const f of kernelFindings) {
        assert.deepEqual(f.cves, CVES);
        assert.equal(f.fixed, NEW);
        assert.equal(f.severity, 'high');
      }
      assert.equal(doc.kernel.managed, row.kernel?.package !== null);
    });
  }
});
