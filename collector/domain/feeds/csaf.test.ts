import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PatchwardenError } from '../../../shared/errors.ts';
import type { Package } from '../../../shared/protocol.ts';
import { dataPath } from '../../../shared/testing/data.ts';
import { needs, TOOLS } from '../../../shared/testing/system-tools.ts';
import { Correlator } from '../correlate/correlator.ts';
import { DEFAULT_POLICY } from '../correlate/policy.ts';
import { inventoryOf, rpmOracle } from '../../../shared/testing/correlate-fixtures.ts';
import { openDatabase } from '../../store/db.ts';
import { CSAF_LIMITS, ecosystemOfCpe, parseCsaf } from './csaf.ts';
import { detectFormat } from './detect.ts';
import { parseFeedPath } from '../../services/feeds/import.ts';
import { readFeedFile } from '../../services/feeds/reader.ts';
import { importFeedPath } from '../../services/feeds/store-import.ts';
import { AdvisorySchema, FeedReport, type Advisory } from './types.ts';
import { asyncAdvisories } from '../../../shared/testing/store-fixtures.ts';

const RED_HAT = dataPath('redhat-csaf');
const CIQ = dataPath('csaf-ciq', 'rocky-linux-from-ciq-2024.csaf.jsonl.gz');
const NOW = new Date('2026-11-26T18:00:00.000Z');

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-csaf-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Each real file parsed once for the whole run: the CIQ file takes about a second. */
const loaded = new Map<string, Promise<Advisory[]>>();
function load(file: string): Promise<Advisory[]> {
  let p = loaded.get(file);
  if (p === undefined) {
    p = parseFeedPath(file).then((x) => x.advisories);
    loaded.set(file, p);
  }
  return p;
}

function entry(advisories: readonly Advisory[], id: string, ecosystem: string, pkg: string) {
  const a = advisories.find((x) => x.id === id);
  assert.ok(a !== undefined, `${id} parsed`);
  return { advisory: a, affected: a.affected.find((f) => f.ecosystem === ecosystem && f.package === pkg) };
}

describe('parseCsaf on the real documents', () => {
  it('Red Hat: the 3 documents of redhat-csaf/ give 3 valid advisories, no warnings', async () => {
    const got = await parseFeedPath(RED_HAT);
    assert.deepEqual(got.formats, ['csaf']);
    assert.deepEqual(got.advisories.map((a) => a.id).sort(), ['RHSA-2023:7025', 'RHSA-2024:1431', 'RHSA-2025:23414']);
    assert.equal(got.report.warningCount(), 0);
    for (const a of got.advisories) AdvisorySchema.parse(a);
  });

  it('CIQ: the 234 documents of the .jsonl.gz give 234 valid advisories, no warnings; el9 builds listed under rlc-8 are left out', async () => {
    const got = await parseFeedPath(CIQ);
    assert.deepEqual(got.formats, ['csaf']);
    assert.equal(got.advisories.length, 234);
    assert.equal(new Set(got.advisories.map((a) => a.id)).size, 234);
    assert.equal(got.report.warningCount(), 0);
    assert.equal(got.report.counts.get('builds of another release (dist tag) ignored'), 4000);
    for (const a of got.advisories) AdvisorySchema.parse(a);
    const ecosystems = new Set(got.advisories.flatMap((a) => a.affected.map((f) => f.ecosystem)));
    assert.deepEqual([...ecosystems].sort(), ['Rocky Linux:8', 'Rocky Linux:9', 'Rocky Linux:9.3', 'Rocky Linux:9.4', 'Rocky Linux:9.5', 'Rocky Linux:9.6']);
    // No source rpm is an affected package: binaries are matched.
    for (const a of got.advisories) for (const f of a.affected) assert.ok(!f.package.endsWith('.src'));
  });

  // Each row checked by reading the document's JSON (product_status.fixed and the product tree).
  const SPOTS: { file: string; id: string; ecosystem: string; pkg: string; introduced: string; fixed: string; severity: string; aliases?: string[] }[] = [
    { file: RED_HAT, id: 'RHSA-2025:23414', ecosystem: 'Red Hat:6', pkg: 'bind', introduced: '0', fixed: '32:9.8.2-0.68.rc1.el6_10.17', severity: 'high', aliases: ['CVE-2021-25220', 'CVE-2025-40778'] },
    { file: RED_HAT, id: 'RHSA-2025:23414', ecosystem: 'Red Hat:6', pkg: 'bind-utils', introduced: '0', fixed: '32:9.8.2-0.68.rc1.el6_10.17', severity: 'high' },
    // Module streams: the range starts at the stream, so ruby 2.5 builds are outside ruby:3.1's.
    { file: RED_HAT, id: 'RHSA-2024:1431', ecosystem: 'Red Hat:8', pkg: 'ruby', introduced: '3.1', fixed: '3.1.4-142.module+el8.9.0+21471+7d1e4a35', severity: 'medium' },
    { file: RED_HAT, id: 'RHSA-2023:7025', ecosystem: 'Red Hat:8', pkg: 'ruby-libs', introduced: '2.5', fixed: '2.5.9-111.module+el8.9.0+19193+435404ae', severity: 'medium' },
    { file: CIQ, id: 'CRLSA-2024:0465', ecosystem: 'Rocky Linux:9.3', pkg: 'sqlite-libs', introduced: '0', fixed: '3.34.1-7.el9_3', severity: 'high', aliases: ['CVE-2023-7104'] },
    { file: CIQ, id: 'CRLSA-2024:0675', ecosystem: 'Rocky Linux:9.6', pkg: 'gimp', introduced: '0', fixed: '2:2.99.8-4.el9_6', severity: 'high' },
    { file: CIQ, id: 'CRLSA-2024:2137', ecosystem: 'Rocky Linux:9', pkg: 'LibRaw', introduced: '0', fixed: '0.21.1-1.el9', severity: 'low' },
    // rlc-8 lists both 1:1.8.0.412.b08-2.el8 and -2.el9 builds: the el8 one is its fix.
    { file: CIQ, id: 'CRLSA-2024:1818', ecosystem: 'Rocky Linux:8', pkg: 'java-1.8.0-openjdk', introduced: '0', fixed: '1:1.8.0.412.b08-2.el8', severity: 'low' },
  ];
  for (const s of SPOTS) {
    it(`${s.id} ${s.ecosystem} ${s.pkg}: introduced ${s.introduced}, fixed ${s.fixed}, ${s.severity}`, async () => {
      const { advisory, affected } = entry(await load(s.file), s.id, s.ecosystem, s.pkg);
      assert.deepEqual(affected?.ranges, [{ introduced: s.introduced, fixed: s.fixed, lastAffected: null }]);
      assert.equal(advisory.severity, s.severity);
      if (s.aliases !== undefined) assert.deepEqual(advisory.aliases, s.aliases);
    });
  }

  it('RHSA-2025:23414: builds listed known_not_affected (bind-devel, bind-chroot) are not-affected entries, src is left out', async () => {
    const got = (await parseFeedPath(dataPath('redhat-csaf', 'rhsa-2025_23414.json.gz'))).advisories;
    for (const pkg of ['bind-devel', 'bind-chroot', 'bind-debuginfo']) {
      assert.deepEqual(entry(got, 'RHSA-2025:23414', 'Red Hat:6', pkg).affected, { ecosystem: 'Red Hat:6', package: pkg, ranges: [], versions: [], notAffected: true });
    }
    assert.deepEqual(got[0]?.affected.map((f) => f.package), ['bind', 'bind-chroot', 'bind-debuginfo', 'bind-devel', 'bind-libs', 'bind-sdb', 'bind-utils']);
  });
});

describe('the stream model from the CPE', () => {
  const CASES: [string, string | null][] = [
    ['cpe:/a:redhat:enterprise_linux:9::appstream', 'Red Hat:9'],
    ['cpe:/o:redhat:enterprise_linux:8::baseos', 'Red Hat:8'],
    ['cpe:/a:redhat:rhel_eus:9.4::appstream', 'Red Hat:9.4'],
    ['cpe:/a:redhat:rhel_e4s:9.0::appstream', 'Red Hat:9.0'],
    ['cpe:/o:redhat:rhel_els:6', 'Red Hat:6'],
    ['cpe:2.3:o:ciq:rocky_linux_from_ciq:9.4:*:*:*:*:*:*:*', 'Rocky Linux:9.4'],
    ['cpe:2.3:o:ciq:rocky_linux_from_ciq:9:*:*:*:*:*:*:*', 'Rocky Linux:9'],
    ['cpe:/a:redhat:openshift:4.14::el9', null],
    ['cpe:/a:redhat:rhel_software_collections:3::el7', null],
    ['cpe:/a:redhat:enterprise_linux:9::appstream:extra', 'Red Hat:9'],
    ['not a cpe', null],
  ];
  for (const [cpe, want] of CASES) {
    it(`${cpe} -> ${String(want)}`, () => {
      assert.equal(ecosystemOfCpe(cpe), want);
    });
  }
});

/** A small CSAF document in Red Hat's shape: streams with CPEs, builds as purls, default_component_of joins. */
function document(vulnerabilities: unknown[], extra: { streams?: [string, string][]; builds?: string[] } = {}): Record<string, unknown> {
  const streams = extra.streams ?? [
    ['AppStream-9.6.0.Z.MAIN', 'cpe:/a:redhat:enterprise_linux:9::appstream'],
    ['AppStream-9.4.0.Z.EUS', 'cpe:/a:redhat:rhel_eus:9.4::appstream'],
  ];
  const builds = extra.builds ?? [
    'openssl-1:3.2.2-6.el9_6.x86_64',
    'openssl-1:3.2.2-6.el9_6.aarch64',
    'openssl-1:3.2.2-6.el9_6.src',
    'openssl-1:3.0.7-29.el9_4.x86_64',
    'libxml2-0:2.9.13-6.el9_4.x86_64',
    'curl-0:7.76.1-31.el9.x86_64',
  ];
  const relationships = streams.flatMap(([stream]) =>
    builds.map((b) => ({ category: 'default_component_of', full_product_name: { name: `${b} as a component of ${stream}`, product_id: `${stream}:${b}` }, product_reference: b, relates_to_product_reference: stream })),
  );
  return {
    document: { category: 'csaf_security_advisory', csaf_version: '2.0', title: 'Important: test update', aggregate_severity: { text: 'Important' }, tracking: { id: 'RHSA-2099:0001', initial_release_date: '2099-01-01T00:00:00Z', current_release_date: '2099-01-02T00:00:00Z' } },
    product_tree: {
      branches: [
        {
          category: 'vendor',
          name: 'Red Hat',
          branches: [
            { category: 'product_family', name: 'Red Hat Enterprise Linux', branches: streams.map(([id, cpe]) => ({ category: 'product_name', name: id, product: { name: id, product_id: id, product_identification_helper: { cpe } } })) },
            { category: 'architecture', name: 'any', branches: builds.map((b) => ({ category: 'product_version', name: b, product: { name: b, product_id: b } })) },
          ],
        },
      ],
      relationships,
    },
    vulnerabilities,
  };
}

describe('statuses, streams and wont-fix', () => {
  const vulns = [
    {
      cve: 'CVE-2099-0001',
      product_status: { fixed: ['AppStream-9.6.0.Z.MAIN:openssl-1:3.2.2-6.el9_6.x86_64', 'AppStream-9.6.0.Z.MAIN:openssl-1:3.2.2-6.el9_6.aarch64', 'AppStream-9.6.0.Z.MAIN:openssl-1:3.2.2-6.el9_6.src', 'AppStream-9.4.0.Z.EUS:openssl-1:3.0.7-29.el9_4.x86_64'] },
      threats: [{ category: 'impact', details: 'Important' }],
    },
    {
      cve: 'CVE-2099-0002',
      product_status: { known_affected: ['AppStream-9.6.0.Z.MAIN:libxml2-0:2.9.13-6.el9_4.x86_64'], known_not_affected: ['AppStream-9.6.0.Z.MAIN:curl-0:7.76.1-31.el9.x86_64'], under_investigation: ['AppStream-9.6.0.Z.MAIN:openssl-1:3.0.7-29.el9_4.x86_64'] },
      remediations: [{ category: 'no_fix_planned', details: 'Out of support scope', product_ids: ['AppStream-9.6.0.Z.MAIN:libxml2-0:2.9.13-6.el9_4.x86_64'] }],
      threats: [{ category: 'impact', details: 'Low' }],
    },
  ];
  const advisories = parseCsaf(document(vulns), new FeedReport(), 'test');

  it('vulnerabilities with different outcomes are separate advisories named <doc>/<CVE>', () => {
    assert.deepEqual(
      advisories.map((a) => [a.id, a.aliases, a.severity]),
      [
        ['RHSA-2099:0001/CVE-2099-0001', ['CVE-2099-0001'], 'high'],
        ['RHSA-2099:0001/CVE-2099-0002', ['CVE-2099-0002'], 'low'],
      ],
    );
    for (const a of advisories) AdvisorySchema.parse(a);
  });

  it('fixed: one EVR per (stream, binary name) over the arches; the EUS stream keeps its own fix under its own ecosystem', () => {
    assert.deepEqual(
      advisories[0]?.affected.map((f) => [f.ecosystem, f.package, f.ranges.map((r) => r.fixed)]),
      [
        ['Red Hat:9', 'openssl', ['1:3.2.2-6.el9_6']],
        ['Red Hat:9.4', 'openssl', ['1:3.0.7-29.el9_4']],
      ],
    );
  });

  it('known_affected with no_fix_planned is unfixed with the reason; known_not_affected is not-affected; under_investigation raises nothing', () => {
    assert.deepEqual(advisories[1]?.affected, [
      { ecosystem: 'Red Hat:9', package: 'curl', ranges: [], versions: [], notAffected: true },
      { ecosystem: 'Red Hat:9', package: 'libxml2', ranges: [{ introduced: '0', fixed: null, lastAffected: null }], versions: [], notAffected: false, note: 'no fix planned: Out of support scope' },
    ]);
  });

  it('a Red Hat 9 host (os-release 9.4) is judged by mainline: the EUS build is below the mainline fix, wont-fix shows its reason', () => {
    const c = new Correlator();
    c.apply(advisories);
    const pkgs: Package[] = [
      { name: 'openssl', version: '1:3.0.7-29.el9_4', arch: 'x86_64', source: 'openssl', sourceVersion: '1:3.0.7-29.el9_4' },
      { name: 'libxml2', version: '2.9.13-6.el9_4', arch: 'x86_64', source: 'libxml2', sourceVersion: '2.9.13-6.el9_4' },
      { name: 'curl', version: '7.76.1-31.el9', arch: 'x86_64', source: 'curl', sourceVersion: '7.76.1-31.el9' },
    ];
    const inv = inventoryOf('Red Hat:9', 'rpm', pkgs);
    inv.host.os = { ...inv.host.os, id: 'rhel', versionId: '9.4' };
    const doc = c.findings(inv, { policy: DEFAULT_POLICY, now: NOW, kev: new Map() });
    assert.deepEqual(
      doc.findings.map((f) => [f.advisory, f.package, f.status, f.fixed]).sort(),
      [
        ['RHSA-2099:0001/CVE-2099-0001', 'openssl', 'open', '1:3.2.2-6.el9_6'],
        ['RHSA-2099:0001/CVE-2099-0002', 'libxml2', 'unfixed', null],
      ],
    );
    const wont = doc.findings.find((f) => f.package === 'libxml2');
    assert.match(wont?.why ?? '', /no fixed version is published \(Red Hat:9, .*; no fix planned: Out of support scope\)/);
  });
});

/** librpm's verdict for each (advisory, installed build) of one ecosystem, as `advisory package installed fixed` keys. */
function oracleFindings(advisories: readonly Advisory[], ecosystem: string, packages: readonly Package[]): Set<string> {
  const byName = new Map(packages.map((p) => [p.name, p]));
  const candidates: { key: string; installed: string; introduced: string; fixed: string }[] = [];
  for (const a of advisories) {
    for (const f of a.affected) {
      if (f.ecosystem !== ecosystem) continue;
      const p = byName.get(f.package);
      if (p === undefined) continue;
      for (const r of f.ranges) {
        assert.ok(r.fixed !== null, `${a.id}: the real documents list fixed builds only`);
        candidates.push({ key: `${a.id} ${p.name} ${p.version} ${r.fixed}`, installed: p.version, introduced: r.introduced ?? '0', fixed: r.fixed });
      }
    }
  }
  const lower = rpmOracle(candidates.map((c) => [c.installed, c.introduced === '0' ? c.installed : c.introduced]));
  const upper = rpmOracle(candidates.map((c) => [c.installed, c.fixed]));
  return new Set(candidates.filter((_, i) => (lower[i] ?? 0) >= 0 && upper[i] === -1).map((c) => c.key));
}

describe('findings for synthetic RHEL-family hosts equal librpm', { skip: needs(TOOLS.pythonRpm) }, () => {
  // Versions around each name's first fixed build: below, at, above, and without its epoch.
  const VARIANTS: [string, (fixed: string) => string][] = [
    ['below', (f) => f.replace(/-([^-]+)$/, '-0.$1')],
    ['at', (f) => f],
    ['above', (f) => `${f}.1`],
    ['epoch dropped', (f) => f.replace(/^\d+:/, '')],
  ];
  const HOSTS: [string, string][] = [
    [RED_HAT, 'Red Hat:6'],
    [RED_HAT, 'Red Hat:8'],
    [CIQ, 'Rocky Linux:8'],
    [CIQ, 'Rocky Linux:9'],
    [CIQ, 'Rocky Linux:9.4'],
  ];
  for (const [file, ecosystem] of HOSTS) {
    for (const [variant, shift] of VARIANTS) {
      it(`${ecosystem}, installed ${variant} the fixed builds`, async () => {
        const advisories = await load(file);
        const first = new Map<string, string>();
        for (const a of [...advisories].sort((x, y) => (x.id < y.id ? -1 : 1))) {
          for (const f of a.affected) {
            const fixed = f.ranges[0]?.fixed;
            // The kernel is judged by the running kernel, a separate path with its own tests.
            if (f.ecosystem === ecosystem && fixed !== null && fixed !== undefined && !f.package.startsWith('kernel') && !first.has(f.package)) first.set(f.package, fixed);
          }
        }
        assert.ok(first.size > 0);
        const packages: Package[] = [...first].map(([name, fixed]) => ({ name, version: shift(fixed), arch: 'x86_64', source: name, sourceVersion: shift(fixed) }));
        const c = new Correlator();
        c.apply(advisories);
        const doc = c.findings(inventoryOf(ecosystem, 'rpm', packages), { policy: DEFAULT_POLICY, now: NOW, kev: new Map() });
        const got = new Set(doc.findings.map((f) => `${f.advisory} ${f.package} ${f.installed} ${f.fixed ?? ''}`));
        const want = oracleFindings(advisories, ecosystem, packages);
        if (variant === 'below') assert.ok(want.size >= first.size, 'every name is affected below its fix');
        assert.deepEqual([...got].sort(), [...want].sort());
      });
    }
  }

  it('a Rocky Linux 9 host gets nothing from minor-release streams: CRLSA-2024:0465 fixes sqlite in 9.3 only', async () => {
    const advisories = await load(CIQ);
    const c = new Correlator();
    c.apply(advisories);
    const sqlite: Package = { name: 'sqlite-libs', version: '3.34.1-6.el9', arch: 'x86_64', source: 'sqlite', sourceVersion: '3.34.1-6.el9' };
    const on = (eco: string) => c.findings(inventoryOf(eco, 'rpm', [sqlite]), { policy: DEFAULT_POLICY, now: NOW, kev: new Map() }).findings.map((f) => f.advisory);
    assert.ok(!on('Rocky Linux:9').includes('CRLSA-2024:0465'));
    assert.ok(on('Rocky Linux:9.3').includes('CRLSA-2024:0465'));
  });
});

describe('hostile CSAF: refused with a code, nothing stored', () => {
  const real = async (): Promise<Record<string, unknown>> => {
    for await (const { record } of readFeedFile(dataPath('redhat-csaf', 'rhsa-2025_23414.json.gz'))) return record as Record<string, unknown>;
    throw new Error('no record');
  };
  // Written as text: JSON.stringify itself recurses, the parser under test must not.
  const DEEP = 5000;
  const deepText = `${'{"category":"vendor","name":"x","branches":['.repeat(DEEP)}{"category":"product_version","name":"x"}${']}'.repeat(DEEP)}`;
  const DEEP_MARK = 'deep-branch-goes-here';
  const CASES: { name: string; make: (d: Record<string, unknown>) => unknown; code: string }[] = [
    { name: 'branches nested 5,000 deep', make: (d) => ({ ...d, product_tree: { ...(d.product_tree as object), branches: [DEEP_MARK] } }), code: 'PW_ERR_INPUT_TOO_LARGE' },
    { name: 'no product_tree', make: (d) => ({ ...d, product_tree: undefined }), code: 'PW_ERR_FEED_FORMAT' },
    { name: 'branches is a string', make: (d) => ({ ...d, product_tree: { ...(d.product_tree as object), branches: 'x' } }), code: 'PW_ERR_FEED_FORMAT' },
    { name: 'a branch is a number', make: (d) => ({ ...d, product_tree: { ...(d.product_tree as object), branches: [7] } }), code: 'PW_ERR_FEED_FORMAT' },
    { name: 'product_status.fixed is an object', make: (d) => ({ ...d, vulnerabilities: [{ cve: 'CVE-2099-0001', product_status: { fixed: { a: 1 } } }] }), code: 'PW_ERR_FEED_FORMAT' },
    { name: `${CSAF_LIMITS.vulnerabilities + 1} vulnerabilities`, make: (d) => ({ ...d, vulnerabilities: Array.from({ length: CSAF_LIMITS.vulnerabilities + 1 }, () => ({})) }), code: 'PW_ERR_INPUT_TOO_LARGE' },
    { name: 'a 1 MiB title', make: (d) => ({ ...d, document: { ...(d.document as object), title: 'x'.repeat(1 << 20) } }), code: 'PW_ERR_INPUT_TOO_LARGE' },
    { name: 'csaf_version 1.0', make: (d) => ({ ...d, document: { ...(d.document as object), csaf_version: '1.0' } }), code: 'PW_ERR_FEED_FORMAT' },
    { name: 'only OpenShift streams', make: (d) => JSON.parse(JSON.stringify(d).replaceAll('cpe:/o:redhat:rhel_els:6', 'cpe:/a:redhat:openshift:4.14::el9')) as unknown, code: 'PW_ERR_FEED_UNSUPPORTED' },
  ];
  for (const c of CASES) {
    it(`${c.name}: ${c.code}, the feed has no records`, async () => {
      const path = join(dir, `hostile-${c.name.replace(/[^a-z0-9]+/gi, '-')}.json`);
      await writeFile(path, JSON.stringify(c.make(await real())).replace(`"${DEEP_MARK}"`, deepText));
      const db = openDatabase(join(dir, `${c.name.replace(/[^a-z0-9]+/gi, '-')}.db`));
      try {
        const store = asyncAdvisories(db);
        await assert.rejects(importFeedPath(store, path, { name: 'csaf-test' }), (e: unknown) => {
          assert.ok(e instanceof PatchwardenError);
          assert.ok(e.code === c.code || e.message.includes(`(${c.code})`), `${e.code}: ${e.message}`);
          return true;
        });
        let stored = 0;
        for await (const _ of store.allAdvisories()) stored++;
        assert.equal(stored, 0);
      } finally {
        db.close();
      }
    });
  }

  it('the reader limits apply: a document over maxDocumentBytes and a .json.gz over maxInflatedBytes are refused', async () => {
    await assert.rejects(parseFeedPath(RED_HAT, { limits: { maxDocumentBytes: 10_000 } }), (e: unknown) => e instanceof PatchwardenError && e.code === 'PW_ERR_INPUT_TOO_LARGE');
    await assert.rejects(parseFeedPath(dataPath('redhat-csaf', 'rhsa-2023_7025.json.gz'), { limits: { maxInflatedBytes: 50_000 } }), (e: unknown) => e instanceof PatchwardenError && /INFLATE|TOO_LARGE/.test(e.code));
  });

  it('detectFormat: a CSAF document is csaf, its first record decides', async () => {
    assert.equal(detectFormat('x.json', await real()), 'csaf');
  });
});
