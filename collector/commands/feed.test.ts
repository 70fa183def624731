/**
 * `feed import` and `feed list` end to end: the real data in ../shared/data into a real
 * SQLite file, then hostile files against a store holding a good copy of the feed.
 */
import assert from 'node:assert/strict';
import { dumpStoreFile } from '../../shared/testing/store-fixtures.ts';
import type { FeedRow } from '../store/advisories.ts';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FindingsSchema } from '../../shared/protocol.ts';
import { type Captured, runCaptured } from '../../shared/testing/capture.ts';
import { dataPath, readData } from '../../shared/testing/data.ts';
import { inventoryOf, rhel95Packages } from '../../shared/testing/correlate-fixtures.ts';
import { parseFeedPath } from '../services/feeds/import.ts';
import { DEFAULT_READ_LIMITS } from '../services/feeds/reader.ts';
import { buildZip, gzipBomb } from '../../shared/testing/feed-fixtures.ts';
import { mkfifo } from '../../shared/testing/fifo.ts';
import { openDatabase } from '../store/db.ts';
import { feedCommand } from './feed.ts';
import { scanCommand } from './scan.ts';

const ALMA9 = dataPath('osv', 'almalinux9.osv.jsonl.gz');
const ALPINE = dataPath('alpine-secdb', 'v3.21-main.json.gz');
const DSA = dataPath('debian', 'DSA-list.gz');
const KEV_JSON = dataPath('kev', 'known_exploited_vulnerabilities.json.gz');
const KEV_CSV = dataPath('kev', 'known_exploited_vulnerabilities-2025-11-17.csv.gz');

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-feed-cmd-'));
});
after(() => rm(dir, { recursive: true, force: true }));

function run(command: typeof feedCommand, argv: string[]): Promise<Captured> {
  return runCaptured(command, argv);
}

const dump = dumpStoreFile;

function query<T>(db: string, sql: string): T[] {
  const conn = openDatabase(db, { readonly: true });
  try {
    return conn.prepare(sql).all() as T[];
  } finally {
    conn.close();
  }
}

async function feedList(db: string): Promise<FeedRow[]> {
  const r = await run(feedCommand, ['list', '--db', db, '--json']);
  assert.equal(r.code, 0);
  return JSON.parse(r.stdout) as FeedRow[];
}

let almaLines: string[] | undefined;
/** The real AlmaLinux 9 export, one OSV record per line. */
function almaLine(index: number): string {
  almaLines ??= readData('osv', 'almalinux9.osv.jsonl.gz').split('\n').filter((l) => l !== '');
  const line = almaLines[index];
  assert.ok(line !== undefined);
  return line;
}

function almaRecord(id: string): Record<string, unknown> & { affected: { ranges: { type: string; events: unknown[] }[] }[] } {
  almaLines ??= readData('osv', 'almalinux9.osv.jsonl.gz').split('\n').filter((l) => l !== '');
  const line = almaLines.find((l) => l.includes(`"id":"${id}"`));
  assert.ok(line !== undefined, `${id} is in the AlmaLinux 9 export`);
  return JSON.parse(line) as ReturnType<typeof almaRecord>;
}

/** Writes `before` lines, one line of `bytes` bytes streamed in 1 MiB chunks, then `afterLines`: never held in memory. */
async function jsonlWithLongLine(path: string, bytes: number, beforeLines: string[], afterLines: string[]): Promise<void> {
  const out = createWriteStream(path);
  const write = (s: string | Buffer): Promise<void> =>
    new Promise((resolve) => {
      if (out.write(s)) resolve();
      else out.once('drain', resolve);
    });
  for (const l of beforeLines) await write(l + '\n');
  await write('{"id":"LONG","modified":"2026-01-01T00:00:00Z","details":"');
  const chunk = Buffer.alloc(1 << 20, 'A');
  for (let n = 0; n < bytes; n += chunk.length) await write(chunk);
  await write('"}\n');
  for (const l of afterLines) await write(l + '\n');
  await new Promise<void>((resolve, reject) => {
    out.once('error', reject);
    out.end(resolve);
  });
}

describe('feed import of the real data', () => {
  let db = '';
  before(() => {
    db = join(dir, 'real.db');
  });

  it('almalinux9 OSV, Alpine v3.21 main, the DSA list and both KEV catalogs: the counts the data README gives', async () => {
    const r = await run(feedCommand, ['import', '--db', db, ALMA9, ALPINE, DSA, KEV_JSON, KEV_CSV]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.split('\n'), [
      'almalinux9.osv.jsonl.gz: osv: 1783 added, 0 updated, 0 unchanged',
      'v3.21-main.json.gz: alpine-secdb: 1142 added, 0 updated, 0 unchanged; 1 warning',
      'DSA-list.gz: debian-dsa-list: 5383 added, 0 updated, 0 unchanged',
      'known_exploited_vulnerabilities.json.gz: kev-json: KEV 1404 added, 0 updated, 0 unchanged',
      'known_exploited_vulnerabilities-2025-11-17.csv.gz: kev-csv: KEV 1460 added, 0 updated, 0 unchanged',
      '',
    ]);
    // Alpine's real linux-lts entry lists "CVE-46838"; the record is kept, the token is not.
    assert.match(r.stderr, /^warning: .*v3\.21-main\.json\.gz Alpine:v3\.21\/linux-lts 6\.6\.13-r1: .*"CVE-46838" is not a CVE id \(PW_ERR_FEED_FORMAT\)\n$/);

    const perFeed = Object.fromEntries(query<{ feed: string; n: number }>(db, 'SELECT feed, count(*) AS n FROM advisories GROUP BY feed').map((x) => [x.feed, x.n]));
    // README: almalinux9 1783 advisories; Alpine v3.21 main 1142 fixed versions (one advisory each).
    assert.equal(perFeed['almalinux9.osv.jsonl.gz'], 1783);
    assert.equal(perFeed['v3.21-main.json.gz'], 1142);
    // README: 5406 DSA entries; the ones with no fix line (key changes, EOL notices) give no advisory.
    const dsa = await parseFeedPath(DSA);
    assert.equal(dsa.report.counts.get('entries'), 5406);
    assert.equal(perFeed['DSA-list.gz'], 5406 - (dsa.report.counts.get('entries without fixes') ?? 0));

    // README: 24012 affected entries in almalinux9; 256 packages in v3.21 main; 410 DSAs with a [bullseye] line.
    const alma = query<{ data: string }>(db, "SELECT data FROM advisories WHERE feed = 'almalinux9.osv.jsonl.gz'");
    assert.equal(alma.reduce((n, x) => n + (JSON.parse(x.data) as { affected: unknown[] }).affected.length, 0), 24012);
    assert.deepEqual(query(db, "SELECT count(DISTINCT package) AS n FROM affected WHERE ecosystem = 'Alpine:v3.21'"), [{ n: 256 }]);
    assert.deepEqual(query(db, "SELECT count(DISTINCT id) AS n FROM affected WHERE source = 'debian-dsa-list' AND ecosystem = 'Debian:11'"), [{ n: 410 }]);
    assert.deepEqual(query(db, "SELECT count(*) AS n FROM advisories WHERE feed = 'almalinux9.osv.jsonl.gz' AND id LIKE 'ALBA-%'"), [{ n: 3 }]);

    // README: the JSON catalog has 1404 entries, the CSV 1460 (21 of the JSON's are Linux Kernel).
    const kev = Object.fromEntries(query<{ feed: string; n: number }>(db, 'SELECT feed, count(*) AS n FROM kev GROUP BY feed').map((x) => [x.feed, x.n]));
    assert.deepEqual(kev, { 'known_exploited_vulnerabilities.json.gz': 1404, 'known_exploited_vulnerabilities-2025-11-17.csv.gz': 1460 });
    assert.deepEqual(query(db, "SELECT count(*) AS n FROM kev WHERE feed = 'known_exploited_vulnerabilities.json.gz' AND vendor_project = 'Linux' AND product = 'Kernel'"), [{ n: 21 }]);
  });

  it('re-importing the same files reports everything unchanged and leaves the tables byte-for-byte the same', async () => {
    const before = dump(db);
    const feedsBefore = await feedList(db);
    const r = await run(feedCommand, ['import', '--db', db, ALMA9, ALPINE, DSA, KEV_JSON, KEV_CSV]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.split('\n'), [
      'almalinux9.osv.jsonl.gz: osv: 0 added, 0 updated, 1783 unchanged',
      'v3.21-main.json.gz: alpine-secdb: 0 added, 0 updated, 1142 unchanged; 1 warning',
      'DSA-list.gz: debian-dsa-list: 0 added, 0 updated, 5383 unchanged',
      'known_exploited_vulnerabilities.json.gz: kev-json: KEV 0 added, 0 updated, 1404 unchanged',
      'known_exploited_vulnerabilities-2025-11-17.csv.gz: kev-csv: KEV 0 added, 0 updated, 1460 unchanged',
      '',
    ]);
    assert.deepEqual(dump(db), before);
    // Only checked_at moves: imported_at says when the data last changed.
    const strip = (rows: FeedRow[]) => rows.map(({ checkedAt: _c, ...rest }) => rest);
    assert.deepEqual(strip(await feedList(db)), strip(feedsBefore));
  });

  it('feed list --json: one object per feed, sorted by name, with the store fields and their types', async () => {
    const rows = await feedList(db);
    assert.deepEqual(
      rows.map((x) => [x.source, x.kind, x.records]),
      [
        ['DSA-list.gz', 'debian-dsa-list', 5383],
        ['almalinux9.osv.jsonl.gz', 'osv', 1783],
        ['known_exploited_vulnerabilities-2025-11-17.csv.gz', 'kev-csv', 1460],
        ['known_exploited_vulnerabilities.json.gz', 'kev-json', 1404],
        ['v3.21-main.json.gz', 'alpine-secdb', 1142],
      ],
    );
    for (const x of rows) {
      assert.deepEqual(Object.keys(x), ['source', 'kind', 'location', 'records', 'newest', 'importedAt', 'checkedAt', 'lastError', 'etag', 'lastModified']);
      assert.ok(x.location?.startsWith(dataPath()), x.location ?? 'null');
      for (const at of [x.importedAt, x.checkedAt]) assert.match(at ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.deepEqual([x.lastError, x.etag, x.lastModified], [null, null, null]);
    }
    const newest = Object.fromEntries(rows.map((x) => [x.source, x.newest]));
    assert.match(newest['almalinux9.osv.jsonl.gz'] ?? '', /^2026-08-21T/);
    assert.equal(newest['DSA-list.gz'], '2023-03-29T00:00:00.000Z');
    assert.equal(newest['known_exploited_vulnerabilities.json.gz'], '2025-08-25T00:00:00.000Z');
    assert.equal(newest['known_exploited_vulnerabilities-2025-11-17.csv.gz'], '2025-11-14T00:00:00.000Z');
    assert.equal(newest['v3.21-main.json.gz'], null, 'secdb has no dates');
  });

  it('feed list (text): a header and one line per feed with its count and status', async () => {
    const r = await run(feedCommand, ['list', '--db', db]);
    assert.equal(r.code, 0);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 6);
    assert.match(lines[0] ?? '', /^source\s+kind\s+records\s+newest\s+checked\s+status$/);
    assert.match(lines[2] ?? '', /^almalinux9\.osv\.jsonl\.gz\s+osv\s+1783\s+2026-08-21\s+\d+\.\dh\s+ok$/);
  });
});

describe('feed import of a directory', () => {
  it('the real alpine-secdb mirror (41 .json.gz files, v3.2 to v3.21 and edge): every file, as when imported one by one', async () => {
    const db = join(dir, 'alpine-dir.db');
    const files = (await readdir(dataPath('alpine-secdb'))).filter((f) => f.endsWith('.json.gz'));
    assert.equal(files.length, 41);
    let expected = 0;
    for (const f of files) expected += (await parseFeedPath(dataPath('alpine-secdb', f))).advisories.length;
    const r = await run(feedCommand, ['import', '--db', db, '--name', 'alpine-secdb', dataPath('alpine-secdb')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^alpine-secdb: alpine-secdb: ${expected} added, 0 updated, 0 unchanged; \\d+ warnings\n$`));
    assert.deepEqual(query(db, 'SELECT count(*) AS n FROM advisories'), [{ n: expected }]);
    const releases = query<{ ecosystem: string }>(db, 'SELECT DISTINCT ecosystem FROM affected ORDER BY ecosystem').map((x) => x.ecosystem);
    assert.equal(releases.length, 21);
    assert.ok(releases.includes('Alpine:v3.2') && releases.includes('Alpine:v3.21') && releases.includes('Alpine:edge'), releases.join(' '));
  });
});

describe('feed import usage errors throw PW_ERR_USAGE (exit 2 from main)', () => {
  const cases: [string, string[]][] = [
    ['no PATH', ['import', '--db', 'x.db']],
    ['--name with two paths', ['import', '--db', 'x.db', '--name', 'a', ALMA9, DSA]],
    ['an unknown option', ['import', '--db', 'x.db', '--frobnicate', ALMA9]],
    ['an unknown subcommand', ['export']],
    ['no subcommand', []],
  ];
  for (const [name, argv] of cases) {
    it(name, async () => {
      await assert.rejects(run(feedCommand, argv), { code: 'PW_ERR_USAGE' });
    });
  }
});

describe('hostile files are refused, nothing stored, the good copy of the feed stays', () => {
  let db = '';
  let good: ReturnType<typeof dump>;
  before(async () => {
    db = join(dir, 'hostile.db');
    const r = await run(feedCommand, ['import', '--db', db, '--name', 'almalinux9', ALMA9]);
    assert.equal(r.code, 0, r.stderr);
    good = dump(db);
  });

  const cases: { name: string; make: (at: string) => Promise<string>; code: string; message: RegExp }[] = [
    {
      name: 'truncated gzip of the real almalinux9 export',
      make: async (at) => {
        const path = join(at, 'almalinux9.osv.jsonl.gz');
        await writeFile(path, (await readFile(ALMA9)).subarray(0, 200_000));
        return path;
      },
      code: 'PW_ERR_FEED_FORMAT',
      message: /gzip data is truncated or corrupt/,
    },
    {
      name: 'truncated zip of real OSV records',
      make: async (at) => {
        const path = join(at, 'all.zip');
        const zip = buildZip(Array.from({ length: 40 }, (_, i) => ({ name: `ALSA-${i}.json`, data: Buffer.from(almaLine(i)) })));
        await writeFile(path, zip.subarray(0, Math.floor(zip.length * 0.6)));
        return path;
      },
      code: 'PW_ERR_FEED_FORMAT',
      message: /no end of central directory record \(truncated or not a zip\)/,
    },
    {
      name: 'zip with an entry ../../etc/passwd',
      make: async (at) => {
        const path = join(at, 'all.zip');
        await writeFile(path, buildZip([{ name: 'ALSA-0.json', data: Buffer.from(almaLine(0)) }, { name: '../../etc/passwd', data: Buffer.from(almaLine(1)) }]));
        return path;
      },
      code: 'PW_ERR_FEED_FORMAT',
      message: /entry name "\.\.\/\.\.\/etc\/passwd" escapes the archive \(path traversal\)/,
    },
    {
      name: `JSONL whose one line is 20 MiB, over the ${DEFAULT_READ_LIMITS.maxLineBytes}-byte line limit`,
      make: async (at) => {
        const path = join(at, 'long.jsonl');
        await jsonlWithLongLine(path, 20 * 1024 * 1024, [], []);
        return path;
      },
      code: 'PW_ERR_INPUT_TOO_LARGE',
      message: /nothing usable, refused: 1 problem\(s\), the first: .*long\.jsonl:1: line is longer than 16777216 bytes; skipped/,
    },
    {
      name: 'OSV record with impossible dates (modified 2022-06-31)',
      make: async (at) => {
        const path = join(at, 'ALSA-2022_4587.json');
        const record = JSON.parse(await readFile(dataPath('osv', 'samples', 'ALSA-2022_4587.json'), 'utf8')) as Record<string, unknown>;
        await writeFile(path, JSON.stringify({ ...record, modified: '2022-06-31T12:52:56Z', published: 'last Tuesday' }));
        return path;
      },
      code: 'PW_ERR_FEED_FORMAT',
      message: /ALSA-2022:4587: modified "2022-06-31T12:52:56Z" is not an RFC 3339 date/,
    },
    {
      name: 'a text file named .json (os-release)',
      make: async (at) => {
        const path = join(at, 'feed.json');
        await writeFile(path, await readFile(dataPath('host-inventory', 'debian12-host.os-release')));
        return path;
      },
      code: 'PW_ERR_FEED_FORMAT',
      message: /feed\.json: not valid JSON/,
    },
    {
      name: 'a text file named .jsonl (os-release): every line refused',
      make: async (at) => {
        const path = join(at, 'feed.jsonl');
        await writeFile(path, await readFile(dataPath('host-inventory', 'debian12-host.os-release')));
        return path;
      },
      code: 'PW_ERR_FEED_FORMAT',
      message: /nothing usable, refused: \d+ problem\(s\), the first: .*feed\.jsonl:1: .*not valid JSON/,
    },
    {
      name: 'a text file of no known format (apt list --upgradable)',
      make: async (at) => {
        const path = join(at, 'upgradable.txt');
        await writeFile(path, await readFile(dataPath('host-inventory', 'debian12-host.apt-list-upgradable.txt')));
        return path;
      },
      code: 'PW_ERR_FEED_FORMAT',
      message: /nothing usable, refused: 1 problem\(s\), the first: .*upgradable\.txt: not a feed format this collector reads/,
    },
    {
      name: 'binary junk (the real DSA-list.gz with its gzip magic cut off)',
      make: async (at) => {
        const path = join(at, 'feed.bin');
        const gz = await readFile(DSA);
        // Not gzip any more: the magic is gone, so it is read as a text feed of binary junk.
        await writeFile(path, gz.subarray(2));
        return path;
      },
      code: 'PW_ERR_FEED_FORMAT',
      message: /not a feed format this collector reads/,
    },
    {
      name: 'directory holding only a symlink loop',
      make: async (at) => {
        const path = join(at, 'loop-dir');
        await mkdir(path);
        await symlink('.', join(path, 'loop'));
        await symlink('self', join(path, 'self'));
        return path;
      },
      code: 'PW_ERR_FEED_FORMAT',
      message: /nothing usable, refused: no record of a known format \(2 symbolic links skipped\)/,
    },
    {
      name: 'a FIFO named like the feed (it would block the import for ever)',
      make: (at) => mkfifo(join(at, 'almalinux9.osv.jsonl.gz')),
      code: 'PW_ERR_NOT_REGULAR_FILE',
      message: /almalinux9\.osv\.jsonl\.gz is neither a regular file nor a directory/,
    },
    {
      name: 'a 1 MiB .jsonl.gz of newlines (1 GiB inflated)',
      make: async (at) => {
        const path = join(at, 'almalinux9.osv.jsonl.gz');
        await writeFile(path, gzipBomb(1 << 20));
        return path;
      },
      code: 'PW_ERR_INFLATE_LIMIT',
      message: /inflates more than 100:1/,
    },
    {
      name: 'a path that does not exist',
      make: (at) => Promise.resolve(join(at, 'missing.jsonl.gz')),
      code: 'PW_ERR_SOURCE_UNAVAILABLE',
      message: /cannot read .*missing\.jsonl\.gz: ENOENT/,
    },
  ];

  for (const c of cases) {
    it(`${c.name}: exit 1, ${c.code}, store unchanged`, { timeout: 60_000 }, async () => {
      const at = await mkdtemp(join(dir, 'case-'));
      const path = await c.make(at);
      const r = await run(feedCommand, ['import', '--db', db, '--name', 'almalinux9', path]);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      const prefix = `${path}: refused, nothing stored: `;
      assert.ok(r.stderr.startsWith(prefix), r.stderr);
      assert.match(r.stderr, c.message);
      assert.ok(r.stderr.endsWith(` (${c.code})\n`), r.stderr);
      assert.equal(r.stderr.split('\n').length, 2, 'one line');
      assert.deepEqual(dump(db), good);
      const feed = (await feedList(db)).find((f) => f.source === 'almalinux9');
      assert.equal(feed?.records, 1783);
      assert.equal(feed.kind, 'osv');
      assert.match(feed.lastError ?? '', c.message);
      await rm(at, { recursive: true, force: true });
    });
  }

  it('feed list then says the last attempt failed and keeps the old count', async () => {
    const r = await run(feedCommand, ['list', '--db', db]);
    const line = r.stdout.split('\n').find((l) => l.startsWith('almalinux9 '));
    assert.match(line ?? '', /^almalinux9\s+osv\s+1783\s+2026-08-21\s+\S+\s+last attempt failed: \d{4}-\d\d-\d\dT\S+Z cannot read .*missing\.jsonl\.gz/);
  });

  it('a good import after the failures clears the error and changes nothing', async () => {
    const r = await run(feedCommand, ['import', '--db', db, '--name', 'almalinux9', ALMA9]);
    assert.equal(r.stdout, 'almalinux9: osv: 0 added, 0 updated, 1783 unchanged\n');
    assert.deepEqual(dump(db), good);
    assert.equal((await feedList(db)).find((f) => f.source === 'almalinux9')?.lastError, null);
  });
});

describe('files with some bad records: the good ones are imported, the bad ones are warnings', () => {
  it('real records around a 20 MiB line: 5 imported, the line skipped with PW_ERR_INPUT_TOO_LARGE', async () => {
    const db = join(dir, 'mixed.db');
    const path = join(dir, 'mixed.jsonl');
    await jsonlWithLongLine(path, 20 * 1024 * 1024, [0, 1, 2].map(almaLine), [3, 4].map(almaLine));
    const r = await run(feedCommand, ['import', '--db', db, path]);
    await rm(path);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'mixed.jsonl: osv: 5 added, 0 updated, 0 unchanged; 1 warning\n');
    assert.equal(r.stderr, `warning: ${path}:4: line is longer than 16777216 bytes; skipped (PW_ERR_INPUT_TOO_LARGE)\n`);
    assert.equal(dump(db).advisories, 5);
  });

  it('a directory with a real record and a symlink loop: the record is imported, the links are not followed', async () => {
    const db = join(dir, 'loop.db');
    const tree = join(dir, 'tree');
    await mkdir(join(tree, 'sub'), { recursive: true });
    await writeFile(join(tree, 'sub', 'ALSA-2022_4587.json'), await readFile(dataPath('osv', 'samples', 'ALSA-2022_4587.json')));
    await symlink('..', join(tree, 'sub', 'up'));
    await symlink('.', join(tree, 'loop'));
    const r = await run(feedCommand, ['import', '--db', db, tree]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'tree: osv: 1 added, 0 updated, 0 unchanged\n');
    assert.deepEqual(query(db, 'SELECT id FROM advisories'), [{ id: 'ALSA-2022:4587' }]);
  });

  for (const type of ['SEMVER', 'GIT', 'DEBIAN_EPOCHLESS']) {
    it(`${type} ranges: an entry with only ${type} is dropped (no finding), one with ECOSYSTEM too keeps the ECOSYSTEM range`, async () => {
      const db = join(dir, `${type}.db`);
      const path = join(dir, `${type}.jsonl`);
      // Two real advisories that do apply to the RHEL 9.5 image (bind-libs, acl).
      const bind = almaRecord('ALSA-2025:1681');
      const acl = almaRecord('ALSA-2026:42736');
      // Only the two bind rpms the image has, so every warning fits the ten printed.
      const installed = bind.affected.filter((a) => ['bind-libs', 'bind-license'].includes((a as unknown as { package: { name: string } }).package.name));
      assert.equal(installed.length, 2);
      const semverOnly = { ...bind, affected: installed.map((a) => ({ ...a, ranges: a.ranges.map((x) => ({ ...x, type })) })) };
      const both = { ...acl, affected: acl.affected.map((a) => ({ ...a, ranges: [...a.ranges.map((x) => ({ ...x, type })), ...a.ranges] })) };
      await writeFile(path, `${JSON.stringify(semverOnly)}\n${JSON.stringify(both)}\n`);
      const r = await run(feedCommand, ['import', '--db', db, path]);
      assert.equal(r.code, 0, r.stderr);
      const expected = installed.length + acl.affected.length;
      assert.equal(r.stdout, `${type}.jsonl: osv: 2 added, 0 updated, 0 unchanged; ${expected} warnings\n`);
      const warnings = r.stderr.trimEnd().split('\n');
      assert.equal(warnings.length, expected);
      assert.ok(warnings.every((w) => w.endsWith('(PW_ERR_FEED_UNSUPPORTED)')), r.stderr);
      assert.ok(r.stderr.includes(`ALSA-2025:1681 AlmaLinux:9/bind-libs: range type ${type} cannot be evaluated; entry skipped`), r.stderr);
      assert.ok(r.stderr.includes(`ALSA-2026:42736 AlmaLinux:9/acl: range type ${type} cannot be evaluated; only the ECOSYSTEM ranges and listed versions are used`), r.stderr);
      assert.deepEqual(query(db, "SELECT count(*) AS n FROM affected WHERE id = 'ALSA-2025:1681'"), [{ n: 0 }]);
      const stored = query<{ data: string }>(db, "SELECT data FROM advisories WHERE id = 'ALSA-2026:42736'")[0];
      const aclEntry = (JSON.parse(stored?.data ?? '{}') as { affected: { package: string; ranges: unknown[] }[] }).affected.find((a) => a.package === 'acl');
      assert.deepEqual(aclEntry?.ranges, [{ introduced: '0', fixed: '2.4.0-1.el9_8', lastAffected: null }]);

      const inv = join(dir, `rhel95-${type}.json`);
      await writeFile(inv, JSON.stringify(inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages())));
      const scan = async (args: string[]): Promise<string[]> => {
        const s = await run(scanCommand, ['--inventory', inv, ...args, '--json', '--now', '2026-11-26T18:00:00Z']);
        return FindingsSchema.parse(JSON.parse(s.stdout)).findings.map((f) => `${f.advisory} ${f.package} ${f.fixed ?? ''}`);
      };
      // The same two records as published: the bind ones raise findings, so their absence below is the unsupported-range rule at work.
      const originals = join(dir, `originals-${type}.jsonl`);
      await writeFile(originals, `${JSON.stringify(bind)}\n${JSON.stringify(acl)}\n`);
      const published = await scan(['--feed', originals]);
      assert.ok(published.includes('ALSA-2025:1681 bind-libs 32:9.16.23-24.el9_5.3'), published.join('\n'));
      assert.ok(published.includes('ALSA-2026:42736 acl 2.4.0-1.el9_8'), published.join('\n'));
      assert.deepEqual(await scan(['--db', db]), published.filter((f) => !f.startsWith('ALSA-2025:1681 ')));
    });
  }
});

describe('feed names: one rule for import, sync and bundles (issue 10)', () => {
  const names: [string, string[]][] = [
    ['a file name with a space and "(1)"', []],
    ['--name with markup', ['--name', '<b>alma</b>']],
    ['--name with a space', ['--name', 'alma linux']],
    ['--name starting with a dot', ['--name', '.alma']],
    ['--name of 129 characters', ['--name', 'a'.repeat(129)]],
  ];
  for (const [label, extra] of names) {
    it(`${label}: refused with PW_ERR_FEED_NAME before anything is read or stored`, async () => {
      const at = await mkdtemp(join(dir, 'name-'));
      const path = join(at, 'almalinux9 (1).osv.jsonl.gz');
      await writeFile(path, await readFile(ALMA9));
      const db = join(at, 'c.db');
      const r = await run(feedCommand, ['import', '--db', db, ...extra, path]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /feed name ".*" \((from --name|the file name: give the feed one with --name)\) is not 1-128 letters, digits and \._@\+- starting with a letter or digit \(PW_ERR_FEED_NAME\)\n$/);
      assert.deepEqual(await feedList(db), []);
    });
  }

  it('the same file under a valid --name goes in, and its bundle exports', async () => {
    const at = await mkdtemp(join(dir, 'name-ok-'));
    const path = join(at, 'almalinux9 (1).osv.jsonl.gz');
    await writeFile(path, await readFile(ALMA9));
    const db = join(at, 'c.db');
    assert.equal((await run(feedCommand, ['import', '--db', db, '--name', 'alma+9@mirror_1.x', path])).code, 0);
    const r = await run(feedCommand, ['export', '--db', db, '--out', join(at, 'f.pwfeeds')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^alma\+9@mirror_1\.x: 1783 advisories, 0 KEV entries$/m);
  });

  it('a feed stored under a bad name before the rule: feed export refuses with PW_ERR_FEED_NAME, naming it, and writes nothing', async () => {
    const at = await mkdtemp(join(dir, 'name-old-'));
    const db = join(at, 'c.db');
    assert.equal((await run(feedCommand, ['import', '--db', db, '--name', 'almalinux9', ALMA9])).code, 0);
    const conn = openDatabase(db);
    // What an older collector let through: foreign keys off, as a rename by hand would be.
    conn.pragma('foreign_keys = OFF');
    conn.exec(`UPDATE feeds SET source = 'alma (1)'; UPDATE advisories SET feed = 'alma (1)'`);
    conn.close();
    await assert.rejects(run(feedCommand, ['export', '--db', db, '--out', join(at, 'f.pwfeeds')]), { code: 'PW_ERR_FEED_NAME', message: /"alma \(1\)"/ });
    assert.deepEqual((await readdir(at)).filter((f) => f.includes('.pwfeeds')), []);
  });
});
