/**
 * The normalized advisory model every feed parser produces and the store keeps. The
 * parsers guarantee their output passes these schemas; the store may re-validate data it
 * reads back (a hand-edited database, an older migration) with the same schemas.
 *
 * Free text refuses U+0000 (shared/text.ts): the parsers' output is held to it in nul.ts, and
 * a feed bundle's lines, read with these schemas, are too.
 *
 * Ranges have OSV `ECOSYSTEM` semantics, evaluated with the distribution's own version
 * rules (dpkg, rpm, apk): affected when introduced <= v < fixed, or
 * introduced <= v <= lastAffected; introduced `"0"` means from the first version; no
 * upper bound means no fix is published (the correlation's `unfixed`).
 */
import * as z from 'zod';
import { PACKAGE_NAME, SeveritySchema, VERSION } from '../../../shared/protocol.ts';
import type { PatchwardenError } from '../../../shared/errors.ts';
import { noNul } from '../../../shared/text.ts';
import { compileModulePattern, MAX_MODULE_PATTERN } from './livepatch-pattern.ts';

export { SeveritySchema, type Severity } from '../../../shared/protocol.ts';

/**
 * Size limits of one normalized advisory. Real records are far below them: the largest
 * AlmaLinux kernel advisory has 117 affected entries, an Ubuntu kernel CVE a few hundred
 * and osv.dev `versions` lists a few thousand.
 */
export const ADVISORY_LIMITS = Object.freeze({
  id: 256,
  aliases: 10_000,
  summary: 4096,
  affected: 100_000,
  ranges: 1000,
  versions: 100_000,
  ecosystem: 128,
  name: 256,
  version: 256,
});

/** Printable ASCII without spaces: OSV ids, CVE ids, DSA ids and our own synthesized ids. */
export const ADVISORY_ID = /^[\x21-\x7e]+$/;
/** OSV ecosystem names, including the ones with spaces (`Rocky Linux:9`, `SUSE:Linux Enterprise Server 15 SP5`). */
export const FEED_ECOSYSTEM = /^[A-Za-z][\x20-\x7e]*$/;
export const CVE_ID = /^CVE-\d{4}-\d{4,19}$/;

const version = z.string().min(1).max(ADVISORY_LIMITS.version).regex(VERSION, 'not a valid package version');
const advisoryId = z.string().min(1).max(ADVISORY_LIMITS.id).regex(ADVISORY_ID, 'not a valid advisory id');
/** Always normalized to UTC with milliseconds (`Date#toISOString`). */
const isoDateTime = z.iso.datetime();

export const AdvisoryRangeSchema = z
  .strictObject({
    introduced: version.nullable(),
    fixed: version.nullable(),
    lastAffected: version.nullable(),
  })
  .refine((r) => r.fixed === null || r.lastAffected === null, 'a range has either fixed or lastAffected, not both');
export type AdvisoryRange = z.infer<typeof AdvisoryRangeSchema>;

export const AffectedPackageSchema = z
  .strictObject({
    ecosystem: z.string().min(1).max(ADVISORY_LIMITS.ecosystem).regex(FEED_ECOSYSTEM, 'not a valid ecosystem'),
    package: z.string().min(1).max(ADVISORY_LIMITS.name).regex(PACKAGE_NAME, 'not a valid package name'),
    ranges: z.array(AdvisoryRangeSchema).max(ADVISORY_LIMITS.ranges),
    /** Explicit affected versions, when the source lists them (osv.dev does for Ubuntu). */
    versions: z.array(version).max(ADVISORY_LIMITS.versions),
    /**
     * The source states this package in this ecosystem was never affected (Alpine secfixes
     * `"0"`, Debian `fixed_version: "0"`, DSA `<not-affected>`). Kept so the collector can
     * tell "checked, not affected" from "nothing known"; ranges and versions are empty.
     */
    notAffected: z.boolean(),
    /** Why there is no fix, when the source says (CSAF `no_fix_planned`): shown in the finding's `why`. */
    note: noNul(z.string().min(1).max(1024)).optional(),
    /**
     * `package` names a BINARY package, matched against that binary's own installed version
     * (Ubuntu OVAL's dpkginfo tests); otherwise it is the ecosystem's advisory key (a deb
     * source package). The finding is still one per (advisory, source package).
     */
    binary: z.literal(true).optional(),
  })
  .refine((a) => !a.notAffected || (a.ranges.length === 0 && a.versions.length === 0), 'a not-affected entry has no ranges or versions');
export type AffectedPackage = z.infer<typeof AffectedPackageSchema>;

/**
 * A live patch that fixes the advisory's CVEs on a running kernel (Ubuntu LSN OVAL): the
 * host is fixed when one of its loaded live-patch modules, from this provider, matches a
 * pattern with a patch level at least `fixedLevel`. Patterns are feed-written regexes, so
 * only the narrow grammar of livepatch-pattern.ts is accepted.
 */
export const LivepatchFixSchema = z.strictObject({
  provider: z.literal('canonical-livepatch'),
  ecosystem: z.string().min(1).max(ADVISORY_LIMITS.ecosystem).regex(FEED_ECOSYSTEM, 'not a valid ecosystem'),
  modules: z
    .array(z.string().min(1).max(MAX_MODULE_PATTERN).refine((p) => compileModulePattern(p) !== null, 'a module pattern outside the accepted grammar'))
    .min(1)
    .max(100),
  fixedLevel: z.number().int().min(0).max(999_999_999),
});
export type LivepatchFix = z.infer<typeof LivepatchFixSchema>;

export const AdvisorySchema = z.strictObject({
  /** Which parser made it: `osv`, `alpine-secdb`, `debian-tracker`, `debian-dsa-list`, `csaf`, `ubuntu-oval`. */
  source: z.string().min(1).max(64).regex(/^[a-z][a-z0-9-]*$/),
  id: advisoryId,
  /** CVE ids and other ids of the same vulnerability, sorted, without duplicates. */
  aliases: z.array(advisoryId).max(ADVISORY_LIMITS.aliases),
  summary: noNul(z.string().max(ADVISORY_LIMITS.summary)).nullable(),
  severity: SeveritySchema,
  published: isoDateTime.nullable(),
  modified: isoDateTime.nullable(),
  affected: z.array(AffectedPackageSchema).max(ADVISORY_LIMITS.affected),
  /** When the source withdrew the advisory; a withdrawn advisory raises no findings. */
  withdrawn: isoDateTime.nullable(),
  /** Ubuntu LSN: raises no finding itself; marks the running kernel's findings of its CVEs mitigated-livepatch. */
  livepatch: LivepatchFixSchema.optional(),
});
export type Advisory = z.infer<typeof AdvisorySchema>;

export const KevEntrySchema = z.strictObject({
  cve: z.string().regex(CVE_ID),
  dateAdded: z.iso.date(),
  dueDate: z.iso.date(),
  vendorProject: noNul(z.string().min(1).max(ADVISORY_LIMITS.name)),
  product: noNul(z.string().min(1).max(ADVISORY_LIMITS.name)),
  /** CISA's words, `Known` or `Unknown`; null when the catalog does not say. */
  knownRansomwareCampaignUse: noNul(z.string().max(64)).nullable(),
});
export type KevEntry = z.infer<typeof KevEntrySchema>;

/** Same shape as the inventory's warnings: where, a stable `PW_ERR_*` code, and what. */
export interface FeedWarning {
  source: string;
  code: string;
  message: string;
}

/** Warnings past this many are only counted: a feed with 100k bad records must not fill memory. */
export const MAX_WARNING_SAMPLES = 1000;

/**
 * What one import saw: per-record problems as warnings (counted by code, the first
 * MAX_WARNING_SAMPLES kept in full) and plain counters a parser chooses to report
 * (packages, fixed versions, ids, skipped entries).
 */
export class FeedReport {
  readonly warnings: FeedWarning[] = [];
  readonly warningCounts = new Map<string, number>();
  readonly counts = new Map<string, number>();

  warn(source: string, error: PatchwardenError): void {
    this.warningCounts.set(error.code, (this.warningCounts.get(error.code) ?? 0) + 1);
    if (this.warnings.length < MAX_WARNING_SAMPLES) this.warnings.push({ source, code: error.code, message: error.message });
  }

  count(what: string, n = 1): void {
    this.counts.set(what, (this.counts.get(what) ?? 0) + n);
  }

  warningCount(code?: string): number {
    if (code !== undefined) return this.warningCounts.get(code) ?? 0;
    let total = 0;
    for (const n of this.warningCounts.values()) total += n;
    return total;
  }
}
