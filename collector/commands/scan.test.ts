/**
 * `scan` end to end: the real RHEL 9.5 image's rpms as an AlmaLinux 9 inventory against
 * the real AlmaLinux 9 OSV export, in every output format, from `--feed` and from a
 * database; bad inventories through the real CLI entry point.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { FindingsSchema, type Findings } from '../../shared/protocol.ts';
import { type Captured, runCaptured } from '../../shared/testing/capture.ts';
import { dataPath } from '../../shared/testing/data.ts';
import { inventoryOf, rhel95Packages } from '../../shared/testing/correlate-fixtures.ts';
import { parseCsv } from '../domain/feeds/csv.ts';
import { importFeedPath } from '../services/feeds/store-import.ts';
import { openDatabase } from '../store/db.ts';
import { feedCommand } from './feed.ts';
import { csvCell } from './findings-csv.ts';
import { MAX_INVENTORY_BYTES, readInventoryFile, scanCommand } from './scan.ts';
import { asyncAdvisories } from '../../shared/testing/store-fixtures.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const ALMA9 = dataPath('osv', 'almalinux9.osv.jsonl.gz');
const KEV_JSON = dataPath('kev', 'known_exploited_vulnerabilities.json.gz');
const NOW = '2026-11-26T18:00:00.000Z';

let dir = '';
let inventory = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-scan-'));
  inventory = join(dir, 'rhel95-as-alma9.json');
  await writeFile(inventory, JSON.stringify(inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages()), null, 2));
});
after(() => rm(dir, { recursive: true, force: true }));

function scan(argv: string[]): Promise<Captured> {
  return runCaptured(scanCommand, argv);
}

async function scanJson(argv: string[]): Promise<{ code: number; doc: Findings }> {
  const r = await scan([...argv, '--json']);
  return { code: r.code, doc: FindingsSchema.parse(JSON.parse(r.stdout)) };
}

/** The real collector entry point, as an operator runs it. */
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', join(ROOT, 'collector', 'main.ts'), ...args], { cwd: ROOT, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

// ALSA-2025:1681 as published (2025-02-19) and the image's bind-libs; due 30 days on.
const BIND_LIBS = {
  advisory: 'ALSA-2025:1681',
  source: 'osv',
  cves: ['CVE-2024-11187'],
  package: 'bind-libs',
  binaries: ['bind-libs'],
  installed: '32:9.16.23-24.el9_5',
  fixed: '32:9.16.23-24.el9_5.3',
  status: 'open',
  severity: 'high',
  kev: false,
  // No EPSS file given: no score.
  epss: null,
  published: '2025-02-19',
  due: '2025-03-21',
  resolvedAt: null,
  why: 'bind-libs 32:9.16.23-24.el9_5 < 32:9.16.23-24.el9_5.3 (AlmaLinux:9, range introduced 0, fixed 32:9.16.23-24.el9_5.3)',
};

describe('scan --feed almalinux9 of the RHEL 9.5 image as AlmaLinux:9', () => {
  let json: { code: number; doc: Findings };
  before(async () => {
    json = await scanJson(['--inventory', inventory, '--feed', ALMA9, '--now', NOW]);
  });

  it(`--now ${NOW}: exit 1, --json validates against FindingsSchema, findings overdue`, () => {
    const { code, doc } = json;
    assert.equal(code, 1);
    assert.equal(doc.host, 'test-1');
    assert.equal(doc.ecosystem, 'AlmaLinux:9');
    assert.equal(doc.generatedAt, NOW);
    assert.deepEqual(doc.kernel, { release: '6.18.44-custom', managed: false });
    assert.deepEqual(doc.warnings, ['running kernel 6.18.44-custom is not provided by any package (unmanaged kernel): no kernel findings']);
    assert.equal(doc.feeds.length, 1);
    assert.deepEqual({ ...doc.feeds[0], newest: doc.feeds[0]?.newest?.slice(0, 10) }, { source: ALMA9, newest: '2026-08-21', importedAt: NOW, stale: false });
    assert.ok(doc.findings.length > 100, `${doc.findings.length} findings`);
    assert.ok(doc.findings.every((f) => f.source === 'osv' && f.firstSeen === NOW && f.advisory.startsWith('AL')));
    assert.ok(doc.findings.every((f) => f.overdue === (f.due !== null && f.due < NOW.slice(0, 10))));
    assert.deepEqual({ ...doc.findings.find((f) => f.advisory === BIND_LIBS.advisory && f.package === 'bind-libs'), firstSeen: undefined, overdue: undefined }, { ...BIND_LIBS, firstSeen: undefined, overdue: undefined });
    assert.equal(doc.findings.find((f) => f.advisory === BIND_LIBS.advisory && f.package === 'bind-libs')?.overdue, true);
  });

  it('--now 2020-01-01: the same findings, none overdue yet, exit 0', async () => {
    const late = json;
    const early = await scanJson(['--inventory', inventory, '--feed', ALMA9, '--now', '2020-01-01']);
    assert.equal(early.code, 0);
    assert.equal(early.doc.findings.filter((f) => f.overdue).length, 0);
    const key = (d: Findings) => d.findings.map((f) => `${f.advisory} ${f.package} ${f.due ?? ''}`);
    assert.deepEqual(key(early.doc), key(late.doc));
  });

  it('--csv: RFC 4180 with CRLF, one row per finding, every cell parses back to the JSON value', async () => {
    const { doc } = json;
    const r = await scan(['--inventory', inventory, '--feed', ALMA9, '--now', NOW, '--csv']);
    assert.equal(r.code, 1);
    assert.ok(r.stdout.endsWith('\r\n'));
    assert.ok(!/[^\r]\n/.test(r.stdout), 'every line ends in CRLF');
    const rows = parseCsv(r.stdout);
    assert.deepEqual(rows[0], ['host', 'advisory', 'cves', 'package', 'binaries', 'installed', 'fixed', 'status', 'severity', 'kev', 'epss', 'epssPercentile', 'published', 'firstSeen', 'due', 'overdue', 'why']);
    assert.equal(rows.length, doc.findings.length + 1);
    doc.findings.forEach((f, i) => {
      assert.deepEqual(rows[i + 1], [
        doc.host,
        f.advisory,
        f.cves.join(' '),
        f.package,
        f.binaries.join(' '),
        f.installed,
        f.fixed ?? '',
        f.status,
        f.severity,
        String(f.kev),
        f.epss == null ? '' : String(f.epss.score),
        f.epss == null ? '' : String(f.epss.percentile),
        f.published ?? '',
        f.firstSeen,
        f.due ?? '',
        String(f.overdue),
        f.why,
      ]);
    });
  });

  it('text: a header, the warning, a summary and one line per finding', async () => {
    const { doc } = json;
    const r = await scan(['--inventory', inventory, '--feed', ALMA9, '--now', NOW]);
    assert.equal(r.code, 1);
    const lines = r.stdout.trimEnd().split('\n');
    const overdue = doc.findings.filter((f) => f.overdue).length;
    assert.deepEqual(lines.slice(0, 4), [
      'test-1 [AlmaLinux:9] kernel 6.18.44-custom (unmanaged)',
      'assessment: assessed',
      'warning: running kernel 6.18.44-custom is not provided by any package (unmanaged kernel): no kernel findings',
      `${doc.findings.length} findings (${doc.findings.length} open), ${overdue} overdue`,
    ]);
    assert.equal(lines.length, 4 + doc.findings.length);
    assert.ok(lines.includes('ALSA-2025:1681     high     open                 due 2025-03-21 bind-libs 32:9.16.23-24.el9_5 -> 32:9.16.23-24.el9_5.3 OVERDUE'));
  });
});

describe('csvCell', () => {
  // [input, cell]: formula starters get a quote prefix (CSV injection), then RFC 4180 quoting.
  const cases: [string, string][] = [
    ['plain', 'plain'],
    ['', ''],
    ['=1+1', "'=1+1"],
    ['=HYPERLINK("http://evil.example","x")', `"'=HYPERLINK(""http://evil.example"",""x"")"`],
    ['+cmd', "'+cmd"],
    ['-2+3', "'-2+3"],
    ['@SUM(A1:A9)', "'@SUM(A1:A9)"],
    ['\tstarts with a tab', "'\tstarts with a tab"],
    ['\rstarts with CR', `"'\rstarts with CR"`],
    ['a,b', '"a,b"'],
    ['say "hi"', '"say ""hi"""'],
    ['two\nlines', '"two\nlines"'],
    ['1:2.0-1.el9', '1:2.0-1.el9'],
    ['a=b', 'a=b'],
  ];
  for (const [input, cell] of cases) {
    it(`${JSON.stringify(input)} -> ${JSON.stringify(cell)}`, () => {
      assert.equal(csvCell(input), cell);
      const back = parseCsv(`${csvCell(input)},end\r\n`);
      assert.deepEqual(back, [[cell.startsWith("'") || cell.startsWith(`"'`) ? `'${input}` : input, 'end']]);
    });
  }
});

describe('scan --db after feed import', () => {
  let db = '';
  before(async () => {
    db = join(dir, 'scan.db');
    let out = '';
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        out += chunk.toString('utf8');
        cb();
      },
    });
    const code = await feedCommand(['import', '--db', db, ALMA9, KEV_JSON], { stdout: sink, stderr: sink });
    assert.equal(code, 0, out);
  });

  it('the same findings as --feed, plus CISA KEV due dates from the database', async () => {
    const now = new Date().toISOString();
    const fromFeed = await scanJson(['--inventory', inventory, '--feed', ALMA9, '--now', now]);
    const fromDb = await scanJson(['--inventory', inventory, '--db', db, '--now', now]);
    assert.equal(fromDb.code, 1);
    const kev = fromDb.doc.findings.filter((f) => f.kev);
    // CVE-2020-11023 (jQuery, in KEV since 2025-01-23, due 2025-02-13) is in ALSA-2025:1346 for the gcc runtime.
    assert.deepEqual(
      kev.map((f) => [f.advisory, f.package, f.due]),
      [
        ['ALSA-2025:1346', 'libgcc', '2025-02-13'],
        ['ALSA-2025:1346', 'libgomp', '2025-02-13'],
        ['ALSA-2025:1346', 'libstdc++', '2025-02-13'],
      ],
    );
    assert.ok(kev.every((f) => f.why.endsWith('; known exploited (CISA KEV due 2025-02-13)')));
    const withoutKev = fromDb.doc.findings.map((f) => (f.kev ? { ...fromFeed.doc.findings.find((g) => g.advisory === f.advisory && g.package === f.package) } : f));
    assert.deepEqual(withoutKev, fromFeed.doc.findings);
    assert.deepEqual(
      fromDb.doc.feeds.map((f) => [f.source, f.stale]),
      [
        ['almalinux9.osv.jsonl.gz', false],
        ['known_exploited_vulnerabilities.json.gz', false],
      ],
    );
  });

  const staleness: [string, number, string[], boolean][] = [
    ['imported 3 days ago', 72, [], true],
    ['imported 47 hours ago', 47, [], false],
    ['imported 49 hours ago', 49, [], true],
    ['imported 3 days ago, policy staleFeedHours 96', 72, ['--policy', 'stale96'], false],
  ];
  for (const [name, hours, extra, stale] of staleness) {
    it(`${name}: feeds[].stale is ${stale}${stale ? ' and a warning says so' : ''}`, async () => {
      const path = join(dir, `stale-${hours}-${extra.length}.db`);
      const conn = openDatabase(path);
      try {
        await importFeedPath(asyncAdvisories(conn), ALMA9, { name: 'almalinux9', now: new Date(Date.parse(NOW) - hours * 3600_000) });
      } finally {
        conn.close();
      }
      const policy = join(dir, 'stale96.json');
      await writeFile(policy, JSON.stringify({ staleFeedHours: 96 }));
      const args = extra.map((a) => (a === 'stale96' ? policy : a));
      const { doc } = await scanJson(['--inventory', inventory, '--db', path, '--now', NOW, ...args]);
      const importedAt = new Date(Date.parse(NOW) - hours * 3600_000).toISOString();
      assert.deepEqual(doc.feeds.map((f) => [f.source, f.importedAt, f.stale]), [['almalinux9', importedAt, stale]]);
      const warning = `feed almalinux9 is stale (last imported ${importedAt}): findings may be missing`;
      assert.equal(doc.warnings.includes(warning), stale, doc.warnings.join('\n'));
    });
  }

  it('a feed whose last attempt failed: the last good data is used and a warning says so', async () => {
    const path = join(dir, 'failed.db');
    const conn = openDatabase(path);
    try {
      const store = asyncAdvisories(conn);
      await importFeedPath(store, ALMA9, { name: 'almalinux9', now: new Date(NOW) });
      await assert.rejects(importFeedPath(store, join(dir, 'missing.jsonl.gz'), { name: 'almalinux9', now: new Date(NOW) }), { code: 'PW_ERR_SOURCE_UNAVAILABLE' });
    } finally {
      conn.close();
    }
    const { code, doc } = await scanJson(['--inventory', inventory, '--db', path, '--now', NOW]);
    assert.equal(code, 1);
    assert.ok(doc.findings.some((f) => f.advisory === BIND_LIBS.advisory));
    assert.ok(
      doc.warnings.some((w) => w.startsWith(`feed almalinux9: last attempt failed: ${NOW} cannot read ${join(dir, 'missing.jsonl.gz')}`)),
      doc.warnings.join('\n'),
    );
  });

  it('a database that does not exist: PW_ERR_STORE, nothing created', async () => {
    const path = join(dir, 'nope.db');
    await assert.rejects(scan(['--inventory', inventory, '--db', path]), { code: 'PW_ERR_STORE' });
    await assert.rejects(readFile(path), { code: 'ENOENT' });
  });
});

describe('bad inventories are refused with a stable code; the real CLI exits 2 and prints nothing on stdout', () => {
  const real = () => inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages()) as unknown as Record<string, unknown> & { host: Record<string, unknown>; packages: Record<string, unknown>[] };
  // `cli`: also run through the real entry point (a second each, so not every case).
  const cases: { name: string; write: (path: string) => Promise<void>; message: RegExp; code: string; cli?: true }[] = [
    {
      name: 'not JSON (the real inventory cut in half)',
      write: async (path) => {
        const text = JSON.stringify(real());
        await writeFile(path, text.slice(0, text.length / 2));
      },
      message: /is not JSON: /,
      code: 'PW_ERR_MALFORMED_INPUT',
      cli: true,
    },
    {
      name: 'wrong schema: packages is an object',
      write: (path) => writeFile(path, JSON.stringify({ ...real(), packages: { openssl: '3.0.7' } })),
      message: /is not a patchwarden\.inventory\/1 document: packages: /,
      code: 'PW_ERR_MALFORMED_INPUT',
    },
    {
      name: 'package name "openssl; rm -rf /"',
      write: (path) => {
        const inv = real();
        inv.packages[0] = { ...inv.packages[0], name: 'openssl; rm -rf /' };
        return writeFile(path, JSON.stringify(inv));
      },
      message: /packages\.0\.name: not a valid package name/,
      code: 'PW_ERR_MALFORMED_INPUT',
      cli: true,
    },
    {
      name: 'source package "<script>alert(1)</script>"',
      write: (path) => {
        const inv = real();
        inv.packages[3] = { ...inv.packages[3], source: '<script>alert(1)</script>' };
        return writeFile(path, JSON.stringify(inv));
      },
      message: /packages\.3\.source: not a valid package name/,
      code: 'PW_ERR_MALFORMED_INPUT',
    },
    {
      name: 'host name "<img src=x onerror=alert(1)>"',
      write: (path) => {
        const inv = real();
        inv.host = { ...inv.host, hostname: '<img src=x onerror=alert(1)>' };
        return writeFile(path, JSON.stringify(inv));
      },
      message: /host\.hostname: not a valid host name/,
      code: 'PW_ERR_MALFORMED_INPUT',
    },
    {
      name: `over ${MAX_INVENTORY_BYTES} bytes (sparse file)`,
      write: async (path) => {
        await writeFile(path, '');
        await truncate(path, MAX_INVENTORY_BYTES + 1);
      },
      message: new RegExp(`is ${MAX_INVENTORY_BYTES + 1} bytes, over the ${MAX_INVENTORY_BYTES}-byte limit`),
      code: 'PW_ERR_INPUT_TOO_LARGE',
      cli: true,
    },
    {
      name: 'a directory',
      write: async () => {
        await Promise.resolve();
      },
      message: /cannot read inventory .*: EISDIR/,
      code: 'PW_ERR_MALFORMED_INPUT',
    },
  ];
  for (const c of cases) {
    it(`${c.name}: ${c.code}${c.cli ? ', exit 2 from the CLI' : ''}`, async () => {
      const path = c.name === 'a directory' ? dir : join(dir, `bad-${c.name.replace(/\W+/g, '-')}.json`);
      await c.write(path);
      const sample = dataPath('osv', 'samples', 'ALSA-2022_4587.json');
      await assert.rejects(scan(['--inventory', path, '--feed', sample]), { code: c.code, message: c.message });
      if (c.cli === undefined) return;
      const r = await cli(['scan', '--inventory', path, '--feed', sample]);
      assert.equal(r.code, 2);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^patchwarden-collector: /);
      assert.match(r.stderr, c.message);
      assert.ok(r.stderr.endsWith(` (${c.code})\n`), r.stderr);
      assert.equal(r.stderr.split('\n').length, 2, 'one line, no usage text');
      await rm(path);
    });
  }

  it('a file that never ends (/dev/zero) is cut at the limit', async () => {
    await assert.rejects(readInventoryFile('/dev/zero', 1 << 20), { code: 'PW_ERR_INPUT_TOO_LARGE', message: /over the 1048576-byte limit/ });
  });

  it('usage errors exit 2 and print the usage', async () => {
    const r = await cli(['scan', '--feed', ALMA9]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^patchwarden-collector: --inventory FILE is required \(PW_ERR_USAGE\)\n/);
    assert.match(r.stderr, /\nusage:\n/);
  });

  it('a feed that fails to parse is an error too (scan refuses to judge with half a feed)', async () => {
    const cut = join(dir, 'cut.jsonl.gz');
    await writeFile(cut, (await readFile(ALMA9)).subarray(0, 100_000));
    await assert.rejects(scan(['--inventory', inventory, '--feed', cut]), { code: 'PW_ERR_FEED_FORMAT' });
  });
});

describe('scan says when nobody looked (issue 11: coverage truth)', () => {
  const DSA = dataPath('debian', 'DSA-list.gz');
  const TRACKER = dataPath('debian', 'tracker-json-subset.vunnel-fixture.json');
  let debian12 = '';
  let debian11 = '';
  before(async () => {
    // The same RHEL package set named as Debian hosts: what counts here is only the ecosystem.
    const inv12 = inventoryOf('Debian:12', 'rpm', rhel95Packages());
    debian12 = join(dir, 'debian12.json');
    await writeFile(debian12, JSON.stringify(inv12));
    debian11 = join(dir, 'debian11.json');
    await writeFile(debian11, JSON.stringify({ ...inv12, host: { ...inv12.host, ecosystem: 'Debian:11' } }));
  });

  const cases: { name: string; inv: () => string; feeds: string[]; state: string; code: number }[] = [
    { name: 'a Debian 12 host against the DSA list (it ends with Debian 11)', inv: () => debian12, feeds: [DSA], state: 'not-assessed', code: 3 },
    { name: 'a Debian 11 host against the DSA list', inv: () => debian11, feeds: [DSA], state: 'assessed', code: 1 },
    { name: 'a Debian 12 host against the Debian tracker JSON (names bookworm)', inv: () => debian12, feeds: [TRACKER], state: 'assessed', code: 0 },
    { name: 'an AlmaLinux 9 host against the DSA list', inv: () => inventory, feeds: [DSA], state: 'not-assessed', code: 3 },
  ];
  for (const c of cases) {
    it(`${c.name}: ${c.state}, exit ${c.code}`, async () => {
      const { code, doc } = await scanJson(['--inventory', c.inv(), ...c.feeds.flatMap((f) => ['--feed', f]), '--now', NOW]);
      assert.equal(doc.assessment?.state, c.state);
      assert.equal(code, c.code);
      if (c.state === 'not-assessed') {
        assert.equal(doc.findings.length, 0);
        assert.match(doc.warnings[0] ?? '', /^not-assessed: no loaded feed has advisories for /);
      }
    });
  }

  it('--db with no feeds imported: not-assessed, exit 3, and the text output says so', async () => {
    const path = join(dir, 'empty-coverage.db');
    openDatabase(path).close();
    const r = await scan(['--inventory', inventory, '--db', path, '--now', NOW]);
    assert.equal(r.code, 3);
    assert.match(r.stdout, /\nassessment: not-assessed\n/);
    assert.match(r.stdout, /\nwarning: not-assessed: no advisory feeds are loaded/);
  });

  it('--db with the only covering feed past staleFeedHours: stale (findings still judged, exit by overdue)', async () => {
    const path = join(dir, 'stale-coverage.db');
    const conn = openDatabase(path);
    try {
      await importFeedPath(asyncAdvisories(conn), ALMA9, { name: 'almalinux9', now: new Date(Date.parse(NOW) - 49 * 3600_000) });
    } finally {
      conn.close();
    }
    const { code, doc } = await scanJson(['--inventory', inventory, '--db', path, '--now', NOW]);
    assert.equal(doc.assessment?.state, 'stale');
    assert.equal(code, 1);
  });

  it('the real CLI exits 3 for a host nobody looked at', async () => {
    const r = await cli(['scan', '--inventory', debian12, '--feed', DSA, '--now', NOW]);
    assert.equal(r.code, 3, r.stderr);
  });
});
