import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { FeedFormatError } from '../../../shared/errors.ts';
import { idsOf, parseAlpineSecdb } from './alpine-secdb.ts';
import { AdvisorySchema, FeedReport } from './types.ts';

const DATA = join(import.meta.dirname, '../../../../shared/data');
const SECDB = join(DATA, 'alpine-secdb');

function secdb(file: string): unknown {
  return JSON.parse(gunzipSync(readFileSync(join(SECDB, file))).toString('utf8'));
}

describe('parseAlpineSecdb on the real v3.21 files', () => {
  // Counts from ../shared/data/README.md.
  const FILES: [string, number, number, number, number][] = [
    ['v3.21-main.json.gz', 256, 1142, 2533, 0],
    ['v3.21-community.json.gz', 414, 1619, 5422, 2],
  ];
  for (const [file, packages, fixedVersions, ids, invalid] of FILES) {
    it(`${file}: ${packages} packages, ${fixedVersions} fixed versions, ${ids} ids, ${invalid} invalid apk versions`, () => {
      const report = new FeedReport();
      const advisories = parseAlpineSecdb(secdb(file), report, file);
      assert.equal(report.counts.get('packages'), packages);
      assert.equal(report.counts.get('fixed versions'), fixedVersions);
      assert.equal(report.counts.get('ids'), ids);
      assert.equal(report.warningCount('PW_ERR_INVALID_VERSION'), invalid);
      assert.equal(advisories.length, fixedVersions - invalid);
      assert.equal(new Set(advisories.map((a) => a.id)).size, advisories.length);
      // Every package shows up, either with advisories or in a warning (croc's only key is invalid).
      const seen = new Set(advisories.map((a) => `${file} Alpine:v3.21/${a.affected[0]?.package ?? ''}`));
      for (const w of report.warnings) if (w.code === 'PW_ERR_INVALID_VERSION') seen.add(w.source);
      assert.equal(seen.size, packages);
      for (const a of advisories) {
        AdvisorySchema.parse(a);
        assert.equal(a.affected.length, 1);
        assert.equal(a.affected[0]?.ecosystem, 'Alpine:v3.21');
      }
      const notAffected = advisories.filter((a) => a.affected[0]?.notAffected === true);
      assert.equal(notAffected.length, report.counts.get('not affected') ?? 0);
      assert.ok(notAffected.every((a) => a.id.endsWith('/0') && a.affected[0]?.ranges.length === 0));
    });
  }

  it('v3.21 main: aom 3.9.1-r0 fixes CVE-2024-5171; apache2 2.4.26-r0 fixes five CVEs', () => {
    const advisories = parseAlpineSecdb(secdb('v3.21-main.json.gz'), new FeedReport());
    const aom = advisories.find((a) => a.id === 'Alpine:v3.21/aom/3.9.1-r0');
    assert.deepEqual(aom, {
      source: 'alpine-secdb',
      id: 'Alpine:v3.21/aom/3.9.1-r0',
      aliases: ['CVE-2024-5171'],
      summary: null,
      severity: 'unknown',
      published: null,
      modified: null,
      affected: [{ ecosystem: 'Alpine:v3.21', package: 'aom', ranges: [{ introduced: '0', fixed: '3.9.1-r0', lastAffected: null }], versions: [], notAffected: false }],
      withdrawn: null,
    });
    const apache = advisories.find((a) => a.id === 'Alpine:v3.21/apache2/2.4.26-r0');
    assert.deepEqual(apache?.aliases, ['CVE-2017-3167', 'CVE-2017-3169', 'CVE-2017-7659', 'CVE-2017-7668', 'CVE-2017-7679']);
  });

  it('v3.21 community: the two invalid keys are croc 10.0.11-0 and quickjs 2021-03-27-r5', () => {
    const report = new FeedReport();
    parseAlpineSecdb(secdb('v3.21-community.json.gz'), report, 'community');
    const invalid = report.warnings.filter((w) => w.code === 'PW_ERR_INVALID_VERSION').map((w) => w.source);
    assert.deepEqual(invalid, ['community Alpine:v3.21/croc', 'community Alpine:v3.21/quickjs']);
  });

  it('all 41 files: the versions refused are exactly the 5 in apk-invalid-versions.txt', () => {
    const expected = readFileSync(join(DATA, 'version-vectors/apk-invalid-versions.txt'), 'utf8')
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'));
    const refused = new Set<string>();
    const files = readdirSync(SECDB).filter((f) => f.endsWith('.json.gz'));
    assert.equal(files.length, 41);
    for (const f of files) {
      const report = new FeedReport();
      for (const a of parseAlpineSecdb(secdb(f), report, f)) AdvisorySchema.parse(a);
      for (const w of report.warnings) {
        const m = /fixed version "([^"]+)"/.exec(w.message);
        if (w.code === 'PW_ERR_INVALID_VERSION' && m?.[1] !== undefined) refused.add(m[1]);
      }
    }
    assert.deepEqual([...refused].sort(), [...expected].sort());
  });
});

describe('idsOf on id strings from the real secdb files', () => {
  const CASES: [string, string[], number][] = [
    ['CVE-2024-8418', ['CVE-2024-8418'], 0],
    ['CVE-2018-8897 XSA-260', ['CVE-2018-8897', 'XSA-260'], 0],
    ['CVE-2018-3639   XSA-263', ['CVE-2018-3639', 'XSA-263'], 0],
    ['CVE-2017-5753 CVE-2017-5715 CVE-2017-5754 XSA-254 XPTI', ['CVE-2017-5753', 'CVE-2017-5715', 'CVE-2017-5754', 'XSA-254'], 0],
    ['CVE-2018-14881 (BGP)', ['CVE-2018-14881'], 0],
    ['CVE-2018-10103 (SMB - partially fixed, but SMB printing disabled)', ['CVE-2018-10103'], 0],
    ['CVE-2020-14342 (Not affected, requires --with-systemd)', ['CVE-2020-14342'], 0],
    ['CVE_2019-2426', ['CVE-2019-2426'], 0],
    ['CVE-2021-35940.patch', ['CVE-2021-35940'], 0],
    ['CVE-2017-17434-1', ['CVE-2017-17434'], 0],
    ['CVE-2024-56326 GHSA-q2x7-8rv6-6q7h', ['CVE-2024-56326', 'GHSA-q2x7-8rv6-6q7h'], 0],
    ['GNUTLS-SA-2020-03-31 CVE-2020-11501', ['GNUTLS-SA-2020-03-31', 'CVE-2020-11501'], 0],
    ['DW202402-001', ['DW202402-001'], 0],
    ['wnpa-sec-2017-18', ['wnpa-sec-2017-18'], 0],
    ['CVE-????-????? XSA-312', ['XSA-312'], 1],
    ['CVE N/A ZBX-11023', ['ZBX-11023'], 1],
    ['CVE-46838', [], 1],
  ];
  for (const [raw, expected, warnings] of CASES) {
    it(`${JSON.stringify(raw)} -> ${JSON.stringify(expected)}${warnings > 0 ? ', 1 warning' : ''}`, () => {
      const report = new FeedReport();
      assert.deepEqual(idsOf(raw, 'test', report), expected);
      assert.equal(report.warningCount('PW_ERR_FEED_FORMAT'), warnings);
    });
  }
});

describe('parseAlpineSecdb refuses bad documents, skips bad entries', () => {
  const real = (): Record<string, unknown> => secdb('v3.21-main.json.gz') as Record<string, unknown>;
  const REFUSED: [string, unknown][] = [
    ['not an object', 'v3.21'],
    ['packages is a string', { ...real(), packages: 'aom' }],
    ['distroversion missing', { ...real(), distroversion: undefined }],
    ['distroversion is not a release', { ...real(), distroversion: 'v3.21; DROP TABLE' }],
  ];
  for (const [name, doc] of REFUSED) {
    it(`refused: ${name}`, () => {
      assert.throws(() => parseAlpineSecdb(doc, new FeedReport()), (e: unknown) => e instanceof FeedFormatError && e.code === 'PW_ERR_FEED_FORMAT');
    });
  }

  const SKIPPED: [string, unknown, string][] = [
    ['secfixes is a string', { pkg: { name: 'aom', secfixes: '3.1.1-r0' } }, 'PW_ERR_FEED_FORMAT'],
    ['the id list is a number', { pkg: { name: 'aom', secfixes: { '3.1.1-r0': 5 } } }, 'PW_ERR_FEED_FORMAT'],
    ['name with a space', { pkg: { name: 'aom ; x', secfixes: { '3.1.1-r0': ['CVE-2021-30473'] } } }, 'PW_ERR_FEED_FORMAT'],
    ['fixed version with a shell fragment', { pkg: { name: 'aom', secfixes: { '$(reboot)': ['CVE-2021-30473'] } } }, 'PW_ERR_INVALID_VERSION'],
  ];
  for (const [name, entry, code] of SKIPPED) {
    it(`skipped with ${code}: ${name}; the real packages around it are kept`, () => {
      const doc = real();
      const packages = doc.packages as unknown[];
      const report = new FeedReport();
      const advisories = parseAlpineSecdb({ ...doc, packages: [packages[0], entry, packages[1]] }, report);
      assert.equal(report.warningCount(code), 1);
      assert.deepEqual([...new Set(advisories.map((a) => a.affected[0]?.package))], ['aom', 'apache2']);
    });
  }
});
