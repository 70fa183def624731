import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { FeedFormatError } from '../../../shared/errors.ts';
import { parseKevCsv, parseKevJson } from './kev.ts';
import { FeedReport, KevEntrySchema, type KevEntry } from './types.ts';

const KEV = join(import.meta.dirname, '../../../../shared/data/kev');
const jsonText = (): string => gunzipSync(readFileSync(join(KEV, 'known_exploited_vulnerabilities.json.gz'))).toString('utf8');
const csvText = (): string => gunzipSync(readFileSync(join(KEV, 'known_exploited_vulnerabilities-2025-11-17.csv.gz'))).toString('utf8');

function byCve(entries: KevEntry[], cve: string): KevEntry {
  const e = entries.find((x) => x.cve === cve);
  assert.ok(e, `${cve} missing`);
  return e;
}

describe('parseKevJson on the real catalog 2025.08.25', () => {
  const report = new FeedReport();
  const entries = parseKevJson(JSON.parse(jsonText()), report);

  it('1404 entries, 21 Linux Kernel, all valid, no warnings', () => {
    assert.equal(entries.length, 1404);
    assert.equal(entries.filter((e) => e.vendorProject === 'Linux' && e.product === 'Kernel').length, 21);
    assert.equal(report.warningCount(), 0);
    for (const e of entries) KevEntrySchema.parse(e);
  });

  for (const cve of ['CVE-2024-1086', 'CVE-2022-0847', 'CVE-2016-5195']) {
    it(`${cve} is a Linux Kernel entry`, () => {
      const e = byCve(entries, cve);
      assert.equal(e.vendorProject, 'Linux');
      assert.equal(e.product, 'Kernel');
      assert.match(e.knownRansomwareCampaignUse ?? '', /^(Known|Unknown)$/);
    });
  }

  it('CVE-2025-48384 (Git): added 2025-08-25, due 2025-09-15', () => {
    assert.deepEqual(byCve(entries, 'CVE-2025-48384'), {
      cve: 'CVE-2025-48384',
      dateAdded: '2025-08-25',
      dueDate: '2025-09-15',
      vendorProject: 'Git',
      product: 'Git',
      knownRansomwareCampaignUse: 'Unknown',
    });
  });
});

describe('parseKevCsv on the real CSV of 2025-11-17', () => {
  const report = new FeedReport();
  const entries = parseKevCsv(csvText(), report);

  it('1460 entries, all valid, no warnings', () => {
    assert.equal(entries.length, 1460);
    assert.equal(report.warningCount(), 0);
    for (const e of entries) KevEntrySchema.parse(e);
  });

  it('every CVE of the older JSON catalog is in the CSV with the same vendor, product and dateAdded', () => {
    const json = parseKevJson(JSON.parse(jsonText()), new FeedReport());
    const csv = new Map(entries.map((e) => [e.cve, e]));
    for (const j of json) {
      const c = csv.get(j.cve);
      assert.ok(c, `${j.cve} not in the CSV`);
      assert.deepEqual([c.vendorProject, c.product, c.dateAdded], [j.vendorProject, j.product, j.dateAdded], j.cve);
    }
  });

  it('a line break inside a quoted field (in a real row) splits nothing', () => {
    const text = csvText().replace('"Fortinet FortiWeb Path Traversal Vulnerability"', '"Fortinet FortiWeb\nPath Traversal, Vulnerability"');
    const r = new FeedReport();
    const got = parseKevCsv(text, r);
    assert.equal(got.length, 1460);
    assert.equal(r.warningCount(), 0);
    assert.equal(byCve(got, 'CVE-2025-64446').product, 'FortiWeb');
    assert.equal(byCve(got, 'CVE-2025-12480').vendorProject, 'Gladinet');
  });
});

describe('KEV: hostile and broken input', () => {
  const REFUSED: [string, () => void][] = [
    ['JSON without vulnerabilities', () => parseKevJson({ title: 'x' }, new FeedReport())],
    ['JSON vulnerabilities as an object', () => parseKevJson({ vulnerabilities: { a: 1 } }, new FeedReport())],
    ['JSON that is an array', () => parseKevJson([], new FeedReport())],
    ['CSV with a quote never closed', () => parseKevCsv(csvText().replace('"Fortinet FortiWeb Path Traversal Vulnerability"', '"Fortinet FortiWeb'), new FeedReport())],
    ['CSV without a dueDate column', () => parseKevCsv(csvText().replace(',dueDate,', ',due,'), new FeedReport())],
    ['an empty CSV', () => parseKevCsv('', new FeedReport())],
  ];
  for (const [name, run] of REFUSED) {
    it(`refused: ${name}`, () => {
      assert.throws(run, (e: unknown) => e instanceof FeedFormatError && e.code === 'PW_ERR_FEED_FORMAT');
    });
  }

  const realDoc = (): { count: number; vulnerabilities: Record<string, unknown>[] } => JSON.parse(jsonText()) as { count: number; vulnerabilities: Record<string, unknown>[] };
  const SKIPPED: [string, (v: Record<string, unknown>) => void][] = [
    ['dueDate 2025-02-30', (v) => (v.dueDate = '2025-02-30')],
    ['dateAdded "soon"', (v) => (v.dateAdded = 'soon')],
    ['cveID "CVE-XXXX"', (v) => (v.cveID = 'CVE-XXXX')],
    ['cveID a number', (v) => (v.cveID = 48384)],
    ['empty product', (v) => (v.product = ' ')],
  ];
  for (const [name, mutate] of SKIPPED) {
    it(`JSON entry with ${name}: skipped with one warning, 1403 kept`, () => {
      const doc = realDoc();
      mutate(doc.vulnerabilities[0]!);
      const report = new FeedReport();
      const entries = parseKevJson(doc, report);
      assert.equal(entries.length, 1403);
      assert.equal(report.warningCount('PW_ERR_FEED_FORMAT'), 1);
    });
  }

  it('CSV row with an extra field: skipped with one warning', () => {
    const text = csvText().replace('2025-11-21,Unknown,', '2025-11-21,Unknown,extra,');
    const report = new FeedReport();
    assert.equal(parseKevCsv(text, report).length, 1459);
    assert.equal(report.warningCount('PW_ERR_FEED_FORMAT'), 1);
  });

  it('a CVE listed twice: the first is kept, one warning', () => {
    const doc = realDoc();
    doc.vulnerabilities.push({ ...doc.vulnerabilities[0], dueDate: '2030-01-01' });
    doc.count++;
    const report = new FeedReport();
    const entries = parseKevJson(doc, report);
    assert.equal(entries.length, 1404);
    assert.equal(byCve(entries, 'CVE-2025-48384').dueDate, '2025-09-15');
    assert.equal(report.warningCount(), 1);
  });

  it('a count that disagrees with the list is a warning', () => {
    const doc = realDoc();
    doc.count = 5;
    const report = new FeedReport();
    assert.equal(parseKevJson(doc, report).length, 1404);
    assert.equal(report.warningCount(), 1);
  });
});
