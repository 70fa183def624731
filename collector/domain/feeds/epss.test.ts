import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { PatchwardenError } from '../../../shared/errors.ts';
import type { AsyncStore } from '../../store/store.ts';
import type { EpssStore } from '../../store/epss.ts';
import { tempDatabase, asyncAdvisories, asyncEpss } from '../../../shared/testing/store-fixtures.ts';
import { detectFormat } from './detect.ts';
import { parseEpssCsv } from './epss.ts';
import { importFeedPath } from '../../services/feeds/store-import.ts';
import { EPSS_EXCERPT } from '../../../shared/testing/feed-fixtures.ts';
import { FeedReport } from './types.ts';

const text = readFileSync(EPSS_EXCERPT, 'utf8');
const [COMMENT, HEADER, ...LINES] = text.split('\n').filter((l) => l !== '') as [string, string, ...string[]];

describe('parseEpssCsv on the real excerpt of 2026-09-29', () => {
  const report = new FeedReport();
  const set = parseEpssCsv(text, report);

  it('reads the model, the score date and every line, with no warning', () => {
    assert.equal(set.modelVersion, 'v2026.06.15');
    assert.equal(set.scoreDate, '2026-09-29T12:00:22.000Z');
    assert.equal(set.entries.length, LINES.length);
    assert.equal(set.entries.length, 146);
    assert.equal(report.warningCount(), 0);
  });

  const spot: [string, number, number][] = [
    ['CVE-1999-0001', 0.03351, 0.88255],
    ['CVE-2021-38647', 0.99933, 0.9997], // CISA KEV (OMIGOD)
    ['CVE-2021-39144', 0.98124, 0.99912], // CISA KEV (XStream in VMware Cloud Foundation)
    ['CVE-2026-0915', 0.00627, 0.47999], // glibc, ALSA-2026:2786
    ['CVE-2026-64530', 0.00738, 0.52706], // kernel, ALSA-2026:49212
  ];
  for (const [cve, score, percentile] of spot) {
    it(`${cve}: ${score}, percentile ${percentile}`, () => {
      assert.deepEqual(
        set.entries.find((e) => e.cve === cve),
        { cve, score, percentile },
      );
    });
  }

  it('is detected from its content', () => {
    assert.equal(detectFormat('epss_scores-current.csv', text), 'epss-csv');
    assert.equal(detectFormat('list', `${HEADER}\n${LINES[0]}\n`), 'epss-csv', 'a file that lost its comment is still EPSS, and refused by the parser');
  });
});

const file = (...lines: string[]): string => `${lines.join('\n')}\n`;
const REAL = LINES.slice(0, 3);

describe('parseEpssCsv: one bad line is skipped with a warning, the rest kept', () => {
  const cases: { name: string; line: string; message: RegExp }[] = [
    { name: 'a score over 1', line: 'CVE-2021-38647,1.5,0.9997', message: /epss "1\.5" is not a number from 0 to 1/ },
    { name: 'a negative score', line: 'CVE-2021-38647,-0.1,0.9997', message: /epss "-0\.1"/ },
    { name: 'a score that is not a number', line: 'CVE-2021-38647,high,0.9997', message: /epss "high"/ },
    { name: 'NaN', line: 'CVE-2021-38647,NaN,0.9997', message: /epss "NaN"/ },
    { name: 'a percentile over 1', line: 'CVE-2021-38647,0.99933,99.97', message: /percentile "99\.97"/ },
    { name: 'an empty percentile', line: 'CVE-2021-38647,0.99933,', message: /percentile ""/ },
    { name: 'a lower-case CVE id', line: 'cve-2021-38647,0.99933,0.9997', message: /"cve-2021-38647" is not a CVE id/ },
    { name: 'a short CVE id', line: 'CVE-21-38647,0.99933,0.9997', message: /is not a CVE id/ },
    { name: 'markup in the id', line: '<script>alert(1)</script>,0.1,0.1', message: /is not a CVE id/ },
    { name: 'four fields', line: 'CVE-2021-38647,0.99933,0.9997,x', message: /4 fields, the header has 3/ },
    { name: 'the same CVE twice', line: REAL[0] as string, message: /listed twice; the first line is kept/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const report = new FeedReport();
      const set = parseEpssCsv(file(COMMENT, HEADER, ...REAL, c.line), report, 'epss.csv');
      assert.deepEqual(
        set.entries.map((e) => e.cve),
        REAL.map((l) => l.split(',')[0]),
      );
      assert.equal(report.warningCount('PW_ERR_FEED_FORMAT'), 1);
      const w = report.warnings[0];
      assert.ok(w);
      assert.equal(w.source, 'epss.csv:6', 'where: the file and its line');
      assert.match(w.message, c.message);
    });
  }

  it('exponent scores (another writer) and the older +0000 offset are read', () => {
    const set = parseEpssCsv(file('#model_version:v2023.03.01,score_date:2023-03-07T00:00:00+0000', HEADER, 'CVE-2023-0001,4.3e-4,0.1'), new FeedReport());
    assert.equal(set.scoreDate, '2023-03-07T00:00:00.000Z');
    assert.deepEqual(set.entries, [{ cve: 'CVE-2023-0001', score: 0.00043, percentile: 0.1 }]);
  });

  it('CRLF line ends and a blank last line are fine', () => {
    assert.equal(parseEpssCsv([COMMENT, HEADER, ...REAL, ''].join('\r\n'), new FeedReport()).entries.length, 3);
  });
});

describe('parseEpssCsv: a file it cannot trust is refused whole (PW_ERR_FEED_FORMAT)', () => {
  const cases: { name: string; input: string; message: RegExp }[] = [
    { name: 'no comment line (the header first)', input: file(HEADER, ...REAL), message: /first line is not FIRST's "#model_version/ },
    { name: 'no header', input: file(COMMENT, ...REAL), message: /the header is "CVE-1999-0001/ },
    { name: 'columns in another order', input: file(COMMENT, 'cve,percentile,epss', ...REAL), message: /the header is "cve,percentile,epss"/ },
    { name: 'an extra column', input: file(COMMENT, 'cve,epss,percentile,date', ...REAL), message: /the header is/ },
    { name: 'a score date that does not exist', input: file('#model_version:v2026.06.15,score_date:2026-02-30T12:00:00Z', HEADER, ...REAL), message: /score_date "2026-02-30T12:00:00Z" is not a date-time/ },
    { name: 'a model version with markup', input: file('#model_version:<b>x</b>,score_date:2026-09-29T12:00:22Z', HEADER, ...REAL), message: /first line is not/ },
    { name: 'an empty file', input: '', message: /first line is not/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.throws(
        () => parseEpssCsv(c.input, new FeedReport()),
        (e: unknown) => e instanceof PatchwardenError && e.code === 'PW_ERR_FEED_FORMAT' && c.message.test(e.message),
      );
    });
  }
});

async function storeWithExcerpt(t: TestContext): Promise<{ store: AsyncStore['advisories']; epss: EpssStore; dir: string }> {
  const { db, path } = await tempDatabase(t, 'epss');
  const store = asyncAdvisories(db);
  const gz = join(path, '..', 'epss_scores-current.csv.gz');
  await writeFile(gz, gzipSync(readFileSync(EPSS_EXCERPT)));
  const r = await importFeedPath(store, gz, { name: 'first-epss' });
  assert.equal(r.epss?.stored, 146);
  return { store, epss: asyncEpss(db), dir: join(path, '..') };
}

describe('feed import of an EPSS file (real SQLite file)', () => {
  it('stores the gzip’d excerpt, says so, and stores nothing new when it is imported again', async (t) => {
    const { store, epss, dir } = await storeWithExcerpt(t);
    assert.deepEqual(await epss.get('CVE-2021-38647'), { score: 0.99933, percentile: 0.9997 });
    const feed = (await store.feeds()).find((f) => f.source === 'first-epss');
    assert.ok(feed);
    assert.deepEqual({ kind: feed.kind, records: feed.records, newest: feed.newest }, { kind: 'epss-csv', records: 146, newest: '2026-09-29T12:00:22.000Z' });
    const again = await importFeedPath(store, join(dir, 'epss_scores-current.csv.gz'), { name: 'first-epss' });
    assert.deepEqual({ stored: again.epss?.stored, unchanged: again.epss?.unchanged }, { stored: 0, unchanged: true });
  });

  const refusals: { name: string; write: (p: string) => Promise<void>; code: string }[] = [
    {
      // A real comment and header, then newlines packed about 1000:1 (the reader's cap is 100:1 past 1 MiB).
      name: 'a gzip bomb',
      write: (p) => writeFile(p, gzipSync(Buffer.concat([Buffer.from(`${COMMENT}\n${HEADER}\n`), Buffer.alloc(16 * 1024 * 1024, 0x0a)]), { level: 9 })),
      code: 'PW_ERR_INFLATE_LIMIT',
    },
    { name: 'a truncated gzip', write: (p) => writeFile(p, gzipSync(readFileSync(EPSS_EXCERPT)).subarray(0, 400)), code: 'PW_ERR_FEED_FORMAT' },
    { name: 'columns in another order', write: (p) => writeFile(p, file(COMMENT, 'cve,percentile,epss', ...LINES)), code: 'PW_ERR_FEED_FORMAT' },
    { name: 'every line bad', write: (p) => writeFile(p, file(COMMENT, HEADER, 'CVE-2021-38647,2,2', 'x,0.1,0.1')), code: 'PW_ERR_FEED_FORMAT' },
    { name: 'an HTML error page', write: (p) => writeFile(p, '<html><body>503 Service Unavailable</body></html>\n'), code: 'PW_ERR_FEED_FORMAT' },
  ];
  for (const r of refusals) {
    it(`${r.name} is refused with ${r.code}; the stored set stays as it was`, async (t) => {
      const { store, epss, dir } = await storeWithExcerpt(t);
      const before = { meta: await epss.meta(), all: [...(await epss.all())] };
      const bad = join(dir, 'epss_scores-current.csv.gz');
      await r.write(bad);
      await assert.rejects(importFeedPath(store, bad, { name: 'first-epss' }), (e: unknown) => e instanceof PatchwardenError && e.code === r.code);
      assert.deepEqual({ meta: await epss.meta(), all: [...(await epss.all())] }, before);
      assert.match((await store.feeds()).find((f) => f.source === 'first-epss')?.lastError ?? '', /./, 'the failure is on the feed');
    });
  }
});
