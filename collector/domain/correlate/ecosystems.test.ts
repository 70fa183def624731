import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { parseDpkgStatus } from '../../../agent/inventory/dpkg.ts';
import type { Package } from '../../../shared/protocol.ts';
import { parseDebianTracker } from '../feeds/debian-tracker.ts';
import { FeedReport } from '../feeds/types.ts';
import { dataPath } from '../../../shared/testing/data.ts';
import { parseFeedPath } from '../../services/feeds/import.ts';
import { Correlator } from './correlator.ts';
import { DEFAULT_POLICY, DuePolicySchema } from './policy.ts';
import { dpkgOracle, inventoryOf, loadOsv } from '../../../shared/testing/correlate-fixtures.ts';
import { needs, TOOLS } from '../../../shared/testing/system-tools.ts';

const NOW = new Date('2026-11-26T18:00:00Z');

describe('Debian: advisories are keyed by SOURCE package and judged on the source version', { skip: needs(TOOLS.pythonApt) }, async () => {
  // The real Debian 12 host's 732 packages, judged against the real DSA list's fix lines
  // for older releases as if the host ran them (the list predates bookworm): what is under
  // test is source keying and dpkg ordering, checked against libapt.
  const packages = parseDpkgStatus(gunzipSync(readFileSync(dataPath('host-inventory', 'debian12-host.dpkg-status.gz'))).toString('utf8'));
  const feed = await parseFeedPath(dataPath('debian', 'DSA-list.gz'));
  const c = new Correlator();
  c.apply(feed.advisories);
  const bySource = new Map<string, Package[]>();
  for (const p of packages) bySource.set(p.source, [...(bySource.get(p.source) ?? []), p]);

  for (const ecosystem of ['Debian:8', 'Debian:9', 'Debian:10', 'Debian:11']) {
    it(`${ecosystem}: findings equal the libapt oracle over every (DSA, installed source) pair`, () => {
      const doc = c.findings(inventoryOf(ecosystem, 'deb', packages), { policy: DEFAULT_POLICY, now: NOW, kev: new Map() });
      const cands: { key: string; installed: string; fixed: string | null }[] = [];
      for (const a of feed.advisories) {
        for (const aff of a.affected) {
          if (aff.ecosystem !== ecosystem || aff.package === 'linux') continue;
          const versions = new Set((bySource.get(aff.package) ?? []).map((p) => p.sourceVersion));
          for (const v of versions) for (const r of aff.ranges) cands.push({ key: `${a.id} ${aff.package} ${v}`, installed: v, fixed: r.fixed });
        }
      }
      const fixedCands = cands.filter((x) => x.fixed !== null);
      const cmp = dpkgOracle(fixedCands.map((x) => [x.installed, x.fixed as string]));
      const want = new Set([...fixedCands.filter((_, i) => cmp[i] === -1).map((x) => x.key), ...cands.filter((x) => x.fixed === null).map((x) => x.key)]);
      const got = new Set(doc.findings.map((f) => `${f.advisory} ${f.package} ${f.installed}`));
      assert.ok(cands.length > 40, `${cands.length} candidate pairs`);
      assert.deepEqual([...got].sort(), [...want].sort());
    });
  }

});

describe('Debian 12 host against its real pending bookworm-security fixes', { skip: needs(TOOLS.pythonApt) }, () => {
  // bookworm-security-upgrade-changelogs.jsonl.gz: for each source package this real host
  // could upgrade, the CVEs each newer changelog entry fixes. Put in the Debian tracker's
  // JSON shape (source -> CVE -> releases.bookworm), that is the tracker's own view of
  // those CVEs for bookworm, so the findings are known in advance.
  type Line = { source: string; installed: string; entries: { version: string; distribution: string; cves: string[] }[] };
  const lines = gunzipSync(readFileSync(dataPath('debian', 'bookworm-security-upgrade-changelogs.jsonl.gz')))
    .toString('utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Line);
  const tracker: Record<string, Record<string, { releases: Record<string, { status: string; fixed_version: string; urgency: string; repositories: Record<string, string> }> }>> = {};
  for (const l of lines) {
    const byCve = (tracker[l.source] ??= {});
    // Oldest entry first, so a CVE named again later keeps its first fixed version.
    for (const e of [...l.entries].reverse()) {
      for (const cve of e.cves) byCve[cve] ??= { releases: { bookworm: { status: 'resolved', fixed_version: e.version, urgency: 'medium', repositories: { bookworm: e.version } } } };
    }
  }
  const packages = parseDpkgStatus(gunzipSync(readFileSync(dataPath('host-inventory', 'debian12-host.dpkg-status.gz'))).toString('utf8'));
  const report = new FeedReport();
  const c = new Correlator();
  c.apply(parseDebianTracker(tracker, report));
  const doc = c.findings(inventoryOf('Debian:12', 'deb', packages), { policy: DEFAULT_POLICY, now: NOW, kev: new Map() });

  it('every CVE fixed after the installed source version is a finding on the source, with its binaries', () => {
    const want = new Set<string>();
    for (const l of lines) {
      if (l.source === 'linux') continue;
      const installed = packages.find((p) => p.source === l.source)?.sourceVersion;
      assert.ok(installed !== undefined, `${l.source} is installed`);
      for (const [cve, v] of Object.entries(tracker[l.source] ?? {})) {
        const fixed = v.releases.bookworm?.fixed_version as string;
        if (dpkgOracle([[installed, fixed]])[0] === -1) want.add(`DEBIAN-${cve}/${l.source} ${installed} ${fixed}`);
      }
    }
    const got = new Set(doc.findings.map((f) => `${f.advisory} ${f.installed} ${f.fixed ?? ''}`));
    assert.ok(want.size > 150, `${want.size} expected findings`);
    assert.deepEqual([...got].sort(), [...want].sort());
    for (const f of doc.findings) {
      const bins = packages.filter((p) => p.source === f.package && p.sourceVersion === f.installed).map((p) => p.name).sort();
      assert.deepEqual(f.binaries, bins, f.package);
    }
    const openssl = doc.findings.find((f) => f.package === 'openssl');
    assert.ok(openssl?.binaries.includes('libssl3'));
  });

  it('linux-libc-dev and other kernel-source binaries raise nothing: the running kernel is not packaged', () => {
    assert.ok(Object.keys(tracker.linux ?? {}).length > 1000, 'the real linux entries are loaded');
    assert.ok(packages.some((p) => p.name === 'linux-libc-dev'));
    assert.deepEqual(doc.findings.filter((f) => f.package.startsWith('linux')), []);
    assert.equal(doc.kernel.managed, false);
  });
});

describe('Alpine: secdb fixes matched on the origin with apk version rules', async () => {
  const feed = await parseFeedPath(dataPath('alpine-secdb', 'v3.21-main.json.gz'));
  const pkg = (name: string, origin: string, version: string): Package => ({ name, version, arch: 'x86_64', source: origin, sourceVersion: version });
  const table: { name: string; packages: Package[]; want: string[] }[] = [
    {
      name: 'libssl3 3.3.2-r1 (origin openssl) lacks the 3.3.2-r3 fix for CVE-2024-9143 only',
      packages: [pkg('libssl3', 'openssl', '3.3.2-r1'), pkg('libcrypto3', 'openssl', '3.3.2-r1')],
      want: ['Alpine:v3.21/openssl/3.3.2-r3 openssl 3.3.2-r1 3.3.2-r3'],
    },
    { name: 'openssl at the newest fix: nothing', packages: [pkg('libssl3', 'openssl', '3.3.2-r3')], want: [] },
    {
      name: 'busybox 1.36.1-r26 lacks r27 and r30',
      packages: [pkg('busybox', 'busybox', '1.36.1-r26'), pkg('ssl_client', 'busybox', '1.36.1-r26')],
      want: ['Alpine:v3.21/busybox/1.36.1-r27 busybox 1.36.1-r26 1.36.1-r27', 'Alpine:v3.21/busybox/1.36.1-r30 busybox 1.36.1-r26 1.36.1-r30'],
    },
    { name: 'a "0" (never affected) entry raises nothing', packages: [pkg('busybox', 'busybox', '1.36.1-r30')], want: [] },
    { name: 'musl 1.2.2_pre1-r0 is below 1.2.2_pre2-r0', packages: [pkg('musl', 'musl', '1.2.2_pre1-r0')], want: ['Alpine:v3.21/musl/1.2.2_pre2-r0 musl 1.2.2_pre1-r0 1.2.2_pre2-r0'] },
  ];
  for (const row of table) {
    it(row.name, () => {
      const c = new Correlator();
      c.apply(feed.advisories);
      const doc = c.findings(inventoryOf('Alpine:v3.21', 'apk', row.packages), { policy: DEFAULT_POLICY, now: NOW, kev: new Map() });
      assert.deepEqual(doc.findings.map((f) => `${f.advisory} ${f.package} ${f.installed} ${f.fixed ?? ''}`).sort(), row.want.sort());
    });
  }
});

describe('KEV: known-exploited CVEs are flagged and due by CISA date when sooner', async () => {
  const alma = await loadOsv(dataPath('osv', 'almalinux9.osv.jsonl.gz'));
  const kevFeed = await parseFeedPath(dataPath('kev', 'known_exploited_vulnerabilities.json.gz'));
  const kev = new Map(kevFeed.kev.map((k) => [k.cve, { dueDate: k.dueDate }]));
  const OLD = '5.14.0-362.8.1.el9_3';
  const inv = inventoryOf('AlmaLinux:9', 'rpm', [{ name: 'kernel-core', version: OLD, arch: 'x86_64', source: 'kernel', sourceVersion: OLD }], {
    release: `${OLD}.x86_64`,
    package: { name: 'kernel-core', source: 'kernel', version: OLD },
  });
  const table: { name: string; policy: Record<string, unknown>; due: string }[] = [
    { name: 'clock from publication (2024-04-30 + 30d) is sooner than KEV (2024-06-20)', policy: {}, due: '2024-05-30' },
    { name: 'clock from first sight (today + 30d): KEV due date 2024-06-20 wins', policy: { clockStart: 'first-seen' }, due: '2024-06-20' },
    { name: 'KEV due dates switched off: first sight + 30d', policy: { clockStart: 'first-seen', kevDueDates: false }, due: '2026-12-26' },
  ];
  for (const row of table) {
    it(row.name, () => {
      const c = new Correlator();
      c.apply(alma);
      const doc = c.findings(inv, { policy: DuePolicySchema.parse(row.policy), now: NOW, kev });
      const f = doc.findings.find((x) => x.advisory === 'ALSA-2024:2394');
      assert.ok(f !== undefined);
      assert.equal(f.kev, true);
      assert.ok(f.cves.includes('CVE-2024-1086'));
      assert.equal(f.due, row.due);
      assert.equal(f.overdue, f.due < NOW.toISOString().slice(0, 10));
      const notKev = doc.findings.filter((x) => !x.cves.some((cve) => kev.has(cve)));
      assert.ok(notKev.length > 0 && notKev.every((x) => !x.kev));
    });
  }
});
