/**
 * CISA's Known Exploited Vulnerabilities catalog, JSON
 * (`known_exploited_vulnerabilities.json`, schema in the same repository) or CSV (same
 * columns) -> KevEntry[]. A finding is flagged `kev` when its CVE is listed; KEV's
 * `dueDate` is the federal remediation deadline, which the due-date policy may use.
 * Bad entries (no valid CVE id, impossible dates, empty vendor or product) are skipped
 * with a warning; a document that is not a catalog at all is refused.
 */
import * as z from 'zod';
import { FeedFormatError } from '../../../shared/errors.ts';
import { parseCsv } from './csv.ts';
import { normalizeDate } from './dates.ts';
import { ADVISORY_LIMITS, CVE_ID, type FeedReport, type KevEntry } from './types.ts';

const CatalogSchema = z.looseObject({
  catalogVersion: z.string().optional(),
  count: z.number().int().nonnegative().optional(),
  vulnerabilities: z.array(z.unknown()).max(1_000_000),
});

const EntrySchema = z.looseObject({
  cveID: z.string().max(64),
  vendorProject: z.string().max(ADVISORY_LIMITS.name),
  product: z.string().max(ADVISORY_LIMITS.name),
  dateAdded: z.string().max(64),
  dueDate: z.string().max(64),
  knownRansomwareCampaignUse: z.string().max(64).nullish(),
});
type RawEntry = z.infer<typeof EntrySchema>;

function entry(raw: RawEntry, where: string, report: FeedReport): KevEntry | null {
  const problem = (message: string): null => {
    report.warn(`${where} ${raw.cveID.slice(0, 32)}`, new FeedFormatError(`${message}; entry skipped`));
    return null;
  };
  if (!CVE_ID.test(raw.cveID)) return problem(`cveID ${JSON.stringify(raw.cveID.slice(0, 32))} is not a CVE id`);
  const dateAdded = normalizeDate(raw.dateAdded);
  const dueDate = normalizeDate(raw.dueDate);
  if (dateAdded === null) return problem(`dateAdded ${JSON.stringify(raw.dateAdded.slice(0, 32))} is not a date`);
  if (dueDate === null) return problem(`dueDate ${JSON.stringify(raw.dueDate.slice(0, 32))} is not a date`);
  const vendorProject = raw.vendorProject.trim();
  const product = raw.product.trim();
  if (vendorProject === '' || product === '') return problem('vendorProject or product is empty');
  if (vendorProject.length > ADVISORY_LIMITS.name || product.length > ADVISORY_LIMITS.name) return problem('vendorProject or product is too long');
  const ransomware = raw.knownRansomwareCampaignUse?.trim() ?? '';
  return { cve: raw.cveID, dateAdded, dueDate, vendorProject, product, knownRansomwareCampaignUse: ransomware === '' ? null : ransomware };
}

function dedupe(entries: KevEntry[], where: string, report: FeedReport): KevEntry[] {
  const seen = new Set<string>();
  return entries.filter((e) => {
    if (!seen.has(e.cve)) {
      seen.add(e.cve);
      return true;
    }
    report.warn(`${where} ${e.cve}`, new FeedFormatError('listed twice; the first entry is kept'));
    return false;
  });
}

/** The KEV JSON catalog. Throws FeedFormatError when `vulnerabilities` is not a list. */
export function parseKevJson(doc: unknown, report: FeedReport, where = 'kev json'): KevEntry[] {
  const catalog = CatalogSchema.safeParse(doc);
  if (!catalog.success) throw new FeedFormatError(`${where}: not a KEV catalog (${catalog.error.issues[0]?.message ?? 'bad shape'})`);
  const { vulnerabilities, count } = catalog.data;
  if (count !== undefined && count !== vulnerabilities.length) {
    report.warn(where, new FeedFormatError(`catalog says ${count} entries and lists ${vulnerabilities.length}`));
  }
  const out: KevEntry[] = [];
  for (const [i, raw] of vulnerabilities.entries()) {
    const parsed = EntrySchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      report.warn(`${where} vulnerabilities[${i}]`, new FeedFormatError(`not a KEV entry (${issue?.path.map(String).join('.') ?? ''}: ${issue?.message ?? 'bad shape'}); skipped`));
      continue;
    }
    const e = entry(parsed.data, where, report);
    if (e !== null) out.push(e);
  }
  return dedupe(out, where, report);
}

const REQUIRED_COLUMNS = ['cveID', 'vendorProject', 'product', 'dateAdded', 'dueDate'] as const;

/** The KEV CSV. Throws FeedFormatError for broken quoting or a header without the KEV columns. */
export function parseKevCsv(text: string, report: FeedReport, where = 'kev csv'): KevEntry[] {
  const [header, ...rows] = parseCsv(text, where);
  if (header === undefined) throw new FeedFormatError(`${where}: empty file`);
  const column = (name: string): number => header.indexOf(name);
  for (const name of REQUIRED_COLUMNS) {
    if (column(name) === -1) throw new FeedFormatError(`${where}: no ${name} column in the header`);
  }
  const ransomware = column('knownRansomwareCampaignUse');
  const out: KevEntry[] = [];
  for (const [i, row] of rows.entries()) {
    // Data rows start on line 2; quoted line breaks make this an approximation for messages only.
    if (row.length !== header.length) {
      report.warn(`${where} row ${i + 1}`, new FeedFormatError(`${row.length} fields, the header has ${header.length}; skipped`));
      continue;
    }
    const cell = (k: number): string => row[k] ?? '';
    const e = entry(
      {
        cveID: cell(column('cveID')),
        vendorProject: cell(column('vendorProject')),
        product: cell(column('product')),
        dateAdded: cell(column('dateAdded')),
        dueDate: cell(column('dueDate')),
        knownRansomwareCampaignUse: ransomware === -1 ? null : cell(ransomware),
      },
      where,
      report,
    );
    if (e !== null) out.push(e);
  }
  return dedupe(out, where, report);
}
