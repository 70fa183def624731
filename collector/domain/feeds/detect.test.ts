import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FeedFormatError } from '../../../shared/errors.ts';
import { detectFormat, type FeedFormat } from './detect.ts';
import { parseFeedRecord } from './parse.ts';
import { readFeedFile } from '../../services/feeds/reader.ts';
import { FeedReport } from './types.ts';

const DATA = join(import.meta.dirname, '../../../../shared/data');

describe('detectFormat + parseFeedRecord on every kind of real feed file', () => {
  // [path, format, advisories, kev entries, warnings]; v3.21 main's one warning is the
  // real id string "CVE-46838" (linux-lts 6.6.13-r1), which is not a CVE id.
  const CASES: [string, FeedFormat, number, number, number][] = [
    ['osv/almalinux10.osv.jsonl.gz', 'osv', 660, 0, 0],
    ['osv/samples-osv.dev/DSA-3029-1.json', 'osv', 1, 0, 0],
    ['osv/samples', 'osv', 3, 0, 0],
    ['alpine-secdb/v3.21-main.json.gz', 'alpine-secdb', 1142, 0, 1],
    ['alpine-secdb/v3.3-community.json.gz', 'alpine-secdb', 0, 0, 0],
    ['debian/tracker-json-subset.vunnel-fixture.json', 'debian-tracker', 6, 0, 0],
    ['debian/DSA-list-subset.vunnel-fixture.txt', 'debian-dsa-list', 7, 0, 0],
    ['debian/DLA-list.gz', 'debian-dsa-list', 3530, 0, 0],
    ['kev/known_exploited_vulnerabilities.json.gz', 'kev-json', 0, 1404, 0],
    ['kev/known_exploited_vulnerabilities-2025-11-17.csv.gz', 'kev-csv', 0, 1460, 0],
    // 48 kernel USNs, 207 package USNs and 5 LSNs.
    ['oval/com.ubuntu.noble.usn.oval.xml.gz', 'ubuntu-oval', 260, 0, 0],
  ];
  for (const [path, format, advisories, kev, warnings] of CASES) {
    it(`${path} -> ${format}: ${advisories} advisories, ${kev} KEV entries, ${warnings} warnings`, async () => {
      const report = new FeedReport();
      let detected: FeedFormat | null = null;
      let a = 0;
      let k = 0;
      for await (const { name, record } of readFeedFile(join(DATA, path), { report })) {
        detected ??= detectFormat(name, record);
        const parsed = parseFeedRecord(detected, record, report, name);
        a += parsed.advisories.length;
        k += parsed.kev.length;
      }
      assert.equal(detected, format);
      assert.equal(a, advisories);
      assert.equal(k, kev);
      assert.equal(report.warningCount(), warnings);
    });
  }
});

describe('detectFormat refuses what it does not know', () => {
  const CASES: [string, unknown][] = [
    ['a number', 42],
    ['null', null],
    ['an array', [{ id: 'DSA-1-1' }]],
    ['an OSV-like object without modified', { id: 'DSA-1-1' }],
    ['an empty object', {}],
    ['a package map without releases', { openssl: { 'CVE-2024-6119': { description: 'x' } } }],
    ['plain text', 'hello\nworld\n'],
    ['a CSV without the KEV columns', 'cve,date\nCVE-2024-1,2024-01-01\n'],
    ['an HTML page (a captive portal, an error page)', '<!DOCTYPE html>\n<html><body>Sign in</body></html>'],
  ];
  for (const [name, record] of CASES) {
    it(name, () => {
      assert.throws(() => detectFormat('input', record), (e: unknown) => e instanceof FeedFormatError && e.code === 'PW_ERR_FEED_FORMAT');
    });
  }
});
