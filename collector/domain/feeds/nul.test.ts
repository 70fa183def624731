import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import { FeedFormatError } from '../../../shared/errors.ts';
import { dataPath } from '../../../shared/testing/data.ts';
import { kevCatalogEntry } from '../../../shared/testing/feed-fixtures.ts';
import type { FeedFormat } from './detect.ts';
import { NUL_REPLACED } from './nul.ts';
import { parseFeedRecord } from './parse.ts';
import { AdvisorySchema, FeedReport, KevEntrySchema } from './types.ts';

const NUL = '\u0000';

const osv = (): Record<string, unknown> => JSON.parse(readFileSync(dataPath('osv', 'samples', 'ALSA-2022_4587.json'), 'utf8')) as Record<string, unknown>;
const osvAffected = (name: string, fixed: string, ecosystem = 'AlmaLinux:9'): unknown[] => [{ package: { ecosystem, name }, ranges: [{ type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed }] }] }];
const KEV_CSV_HEADER = 'cveID,vendorProject,product,vulnerabilityName,dateAdded,shortDescription,requiredAction,dueDate,knownRansomwareCampaignUse,notes,cwes';
const kevCsv = (over: Record<string, string>): string => {
  const e = kevCatalogEntry(over);
  return `${KEV_CSV_HEADER}\n${[e.cveID, e.vendorProject, e.product, e.vulnerabilityName, e.dateAdded, e.shortDescription, e.requiredAction, e.dueDate, e.knownRansomwareCampaignUse, e.notes, ''].map((c) => `"${c}"`).join(',')}\n`;
};
const secdb = (name: string, version: string, id: string): unknown => ({ distroversion: 'v3.21', reponame: 'main', packages: [{ pkg: { name, secfixes: { [version]: [id] } } }] });
const tracker = (pkg: string, description: string, fixed: string): unknown => ({ [pkg]: { 'CVE-2099-0001': { description, releases: { bookworm: { status: 'resolved', fixed_version: fixed, urgency: 'low' } } } } });
const csaf = (title: string): unknown => {
  const doc = JSON.parse(gunzipSync(readFileSync(dataPath('redhat-csaf', 'rhsa-2023_7025.json.gz'))).toString('utf8')) as { document: { title: string } };
  doc.document.title = title;
  return doc;
};
const dsa = (title: string, pkg: string): string => `[01 Aug 2002] DSA-141 ${title}\n\t{CVE-2002-1425}\n\t[bookworm] - ${pkg} 1.5-7\n`;
const oval = (title: string): string =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<oval_definitions><definitions><definition id="oval:com.ubuntu.noble:def:1" class="patch"><metadata><title>${title}</title></metadata></definition></definitions></oval_definitions>`;

/**
 * What becomes of a record with a NUL in one field: its text replaced (the record kept), the
 * record left out, that part dropped and the rest kept (where the parser drops an alias,
 * package or id that breaks its grammar on its own), or the whole file refused (XML: nothing
 * of it is imported, the feed's last good data stays).
 */
type Outcome = { replaced: { field: (out: Out) => string | null | undefined; expected: string } } | 'skipped' | 'part dropped' | 'file refused' | 'not stored';
interface Out {
  advisories: ReturnType<typeof parseFeedRecord>['advisories'];
  kev: ReturnType<typeof parseFeedRecord>['kev'];
}

const ROWS: { format: FeedFormat; field: string; record: () => unknown; outcome: Outcome }[] = [
  { format: 'osv', field: 'summary', record: () => ({ ...osv(), summary: `Important: pcs${NUL} update` }), outcome: { replaced: { field: (o) => o.advisories[0]?.summary, expected: 'Important: pcs\uFFFD update' } } },
  { format: 'osv', field: 'details (the summary when there is none)', record: () => ({ ...osv(), summary: undefined, details: `pcs${NUL}` }), outcome: { replaced: { field: (o) => o.advisories[0]?.summary, expected: 'pcs\uFFFD' } } },
  { format: 'osv', field: 'id', record: () => ({ ...osv(), id: `ALSA-2022:45${NUL}87` }), outcome: 'skipped' },
  { format: 'osv', field: 'an alias', record: () => ({ ...osv(), related: [`CVE-2022-2${NUL}9970`] }), outcome: 'part dropped' },
  { format: 'osv', field: 'a package name', record: () => ({ ...osv(), affected: osvAffected(`pc${NUL}s`, '0.11.1-10.el9') }), outcome: 'part dropped' },
  { format: 'osv', field: 'a fixed version', record: () => ({ ...osv(), affected: osvAffected('pcs', `0.11.1-10${NUL}.el9`) }), outcome: 'part dropped' },
  { format: 'osv', field: 'an ecosystem', record: () => ({ ...osv(), affected: osvAffected('pcs', '0.11.1-10.el9', `AlmaLinux:9${NUL}`) }), outcome: 'part dropped' },
  { format: 'kev-json', field: 'vendorProject', record: () => ({ vulnerabilities: [kevCatalogEntry({ vendorProject: `Ac${NUL}me` })] }), outcome: { replaced: { field: (o) => o.kev[0]?.vendorProject, expected: 'Ac\uFFFDme' } } },
  { format: 'kev-json', field: 'product', record: () => ({ vulnerabilities: [kevCatalogEntry({ product: `Wid${NUL}get` })] }), outcome: { replaced: { field: (o) => o.kev[0]?.product, expected: 'Wid\uFFFDget' } } },
  { format: 'kev-json', field: 'knownRansomwareCampaignUse', record: () => ({ vulnerabilities: [kevCatalogEntry({ knownRansomwareCampaignUse: `Kno${NUL}wn` })] }), outcome: { replaced: { field: (o) => o.kev[0]?.knownRansomwareCampaignUse, expected: 'Kno\uFFFDwn' } } },
  { format: 'kev-json', field: 'shortDescription', record: () => ({ vulnerabilities: [kevCatalogEntry({ shortDescription: `A${NUL}flaw` })] }), outcome: 'not stored' },
  { format: 'kev-json', field: 'cveID', record: () => ({ vulnerabilities: [kevCatalogEntry({ cveID: `CVE-2099-0001${NUL}` })] }), outcome: 'skipped' },
  { format: 'kev-json', field: 'dateAdded', record: () => ({ vulnerabilities: [kevCatalogEntry({ dateAdded: `2099-01-01${NUL}` })] }), outcome: 'skipped' },
  { format: 'kev-csv', field: 'vendorProject', record: () => kevCsv({ vendorProject: `Ac${NUL}me` }), outcome: { replaced: { field: (o) => o.kev[0]?.vendorProject, expected: 'Ac\uFFFDme' } } },
  { format: 'kev-csv', field: 'product', record: () => kevCsv({ product: `Wid${NUL}get` }), outcome: { replaced: { field: (o) => o.kev[0]?.product, expected: 'Wid\uFFFDget' } } },
  { format: 'kev-csv', field: 'knownRansomwareCampaignUse', record: () => kevCsv({ knownRansomwareCampaignUse: `Kno${NUL}wn` }), outcome: { replaced: { field: (o) => o.kev[0]?.knownRansomwareCampaignUse, expected: 'Kno\uFFFDwn' } } },
  { format: 'kev-csv', field: 'cveID', record: () => kevCsv({ cveID: `CVE-2099-0001${NUL}` }), outcome: 'skipped' },
  { format: 'alpine-secdb', field: 'a package name', record: () => secdb(`ao${NUL}m`, '3.1.1-r0', 'CVE-2021-30473'), outcome: 'skipped' },
  { format: 'alpine-secdb', field: 'a fixed version', record: () => secdb('aom', `3.1.1${NUL}-r0`, 'CVE-2021-30473'), outcome: 'skipped' },
  { format: 'alpine-secdb', field: 'an id', record: () => secdb('aom', '3.1.1-r0', `CVE-2021-3047${NUL}3`), outcome: 'part dropped' },
  { format: 'debian-tracker', field: 'description', record: () => tracker('openssl', `a fl${NUL}aw`, '3.0.1-1'), outcome: { replaced: { field: (o) => o.advisories[0]?.summary, expected: 'a fl\uFFFDaw' } } },
  { format: 'debian-tracker', field: 'a package name', record: () => tracker(`open${NUL}ssl`, 'a flaw', '3.0.1-1'), outcome: 'skipped' },
  { format: 'debian-tracker', field: 'a fixed version', record: () => tracker('openssl', 'a flaw', `3.0.1${NUL}-1`), outcome: 'skipped' },
  { format: 'csaf', field: 'the title', record: () => csaf(`Red Hat Security Advisory: ruby${NUL} update`), outcome: { replaced: { field: (o) => o.advisories[0]?.summary, expected: 'Red Hat Security Advisory: ruby\uFFFD update' } } },
  { format: 'debian-dsa-list', field: 'the title', record: () => dsa(`mpack - buffer${NUL} overflow`, 'mpack'), outcome: { replaced: { field: (o) => o.advisories[0]?.summary, expected: 'mpack - buffer\uFFFD overflow' } } },
  { format: 'debian-dsa-list', field: 'a package name', record: () => dsa('mpack - buffer overflow', `mp${NUL}ack`), outcome: 'skipped' },
  // XML 1.0 has no NUL, not even as `&#0;`: the XML parser refuses the document.
  { format: 'ubuntu-oval', field: 'a title', record: () => oval(`USN-1-1 -- x${NUL}y`), outcome: 'file refused' },
];

/** The path of the first string holding a NUL anywhere in `v`, or null. */
function nulIn(v: unknown, path = '$'): string | null {
  if (typeof v === 'string') return v.includes(NUL) ? path : null;
  if (typeof v !== 'object' || v === null) return null;
  for (const [k, x] of Object.entries(v)) {
    const at = nulIn(x, `${path}.${k}`);
    if (at !== null) return at;
  }
  return null;
}

describe('parseFeedRecord holds every format to the U+0000 rule (nul.ts)', () => {
  for (const row of ROWS) {
    const expect = typeof row.outcome === 'string' ? row.outcome : 'replaced with U+FFFD';
    it(`${row.format}: a NUL in ${row.field}: ${expect}`, () => {
      const report = new FeedReport();
      let out: Out;
      try {
        out = parseFeedRecord(row.format, row.record(), report, 'hostile');
      } catch (err) {
        if (row.outcome === 'file refused') {
          assert.equal((err as { code?: string }).code, 'PW_ERR_FEED_XML');
          return;
        }
        // The parser refused the whole record: what parseFeedPath counts as a record refused.
        assert.equal(row.outcome, 'skipped', `refused where ${expect} was expected: ${String(err)}`);
        assert.ok(err instanceof FeedFormatError, 'a refusal parseFeedPath counts as a record refused');
        return;
      }
      assert.equal(nulIn(out), null, 'nothing the store is given holds a NUL');
      for (const a of out.advisories) AdvisorySchema.parse(a);
      for (const e of out.kev) KevEntrySchema.parse(e);
      if (row.outcome === 'skipped') {
        assert.deepEqual([out.advisories.length, out.kev.length], [0, 0], 'the record is left out');
        assert.ok(report.warningCount('PW_ERR_FEED_FORMAT') + report.warningCount('PW_ERR_INVALID_VERSION') >= 1, 'and the reason reported');
      } else if (row.outcome === 'part dropped') {
        assert.equal(out.advisories.length, 1, 'the rest of the record is kept');
      } else if (row.outcome === 'not stored') {
        assert.equal(out.advisories.length + out.kev.length, 1, 'a field nobody stores changes nothing');
        assert.equal(report.warningCount(), 0);
      } else if (row.outcome === 'file refused') {
        assert.fail('the file was not refused');
      } else {
        assert.equal(row.outcome.replaced.field(out), row.outcome.replaced.expected);
        assert.equal(report.counts.get(NUL_REPLACED), 1);
        assert.equal(report.warningCount('PW_ERR_FEED_FORMAT'), 1);
        assert.match(report.warnings[0]?.message ?? '', /U\+0000 \(NUL\).*replaced with U\+FFFD; record kept/);
      }
    });
  }

  it('a feed bundle line with a NUL in free text is refused by the advisory and KEV schemas', () => {
    assert.equal(KevEntrySchema.safeParse({ cve: 'CVE-2099-0001', dateAdded: '2099-01-01', dueDate: '2099-01-21', vendorProject: `A${NUL}`, product: 'W', knownRansomwareCampaignUse: null }).success, false);
    const a = AdvisorySchema.parse({ source: 'osv', id: 'A-1', aliases: [], summary: 'ok', severity: 'low', published: null, modified: null, affected: [], withdrawn: null });
    assert.equal(AdvisorySchema.safeParse({ ...a, summary: `o${NUL}k` }).success, false);
  });
});
