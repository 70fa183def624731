/**
 * The Debian security tracker's JSON (https://security-tracker.debian.org/tracker/data/json):
 * source package -> CVE (or TEMP-…) -> {description, releases: {codename: {status,
 * fixed_version, urgency, nodsa, repositories}}} -> one advisory per (CVE, source
 * package), id `DEBIAN-CVE-2024-6119/openssl` (osv.dev's `DEBIAN-` prefix for tracker
 * data, plus the package, since the tracker judges each package separately), one affected
 * entry per release.
 *
 * Per release:
 * - `resolved` with `fixed_version` `"0"`: the release never had the vulnerable code ->
 *   `notAffected` (kept so "checked, not affected" differs from "nothing known");
 * - `resolved` with a version: affected below it;
 * - `open`: affected, no fix published (the correlation's `unfixed`), whatever `nodsa`
 *   says (that only means no DSA will be issued; the package stays vulnerable);
 * - `undetermined`: the team has not checked yet; treated as `open`, counted as
 *   `undetermined`, because for a compliance report "maybe affected" must not read as
 *   "not affected".
 * Urgency gives the severity (the highest over the releases): `unimportant` low, `low`,
 * `medium`, `high`; `not yet assigned` and `end-of-life` unknown. A trailing `*`/`**`
 * marks an urgency taken from NVD; the word still counts.
 */
import * as z from 'zod';
import { FeedFormatError, FeedUnsupportedError, InvalidVersionError } from '../../../shared/errors.ts';
import { PACKAGE_NAME, VERSION } from '../../../shared/protocol.ts';
import { validateVersion } from '../../../shared/versions/index.ts';
import { debianEcosystem } from './debian-releases.ts';
import { maxSeverity, severityFromWord } from './severity.ts';
import { ADVISORY_ID, ADVISORY_LIMITS, CVE_ID, type Advisory, type AffectedPackage, type FeedReport, type Severity } from './types.ts';

export const DEBIAN_TRACKER_SOURCE = 'debian-tracker';

const ReleaseSchema = z.looseObject({
  status: z.string().max(64),
  fixed_version: z.string().max(ADVISORY_LIMITS.version).optional(),
  urgency: z.string().max(64).optional(),
});

const EntrySchema = z.looseObject({
  description: z.string().nullish(),
  // The tracker writes an empty list instead of an empty object when no release is tracked.
  releases: z.union([z.record(z.string(), z.unknown()), z.array(z.never()).max(0)]),
});

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A Debian version both our wire grammar and dpkg accept; the reason otherwise. */
export function debianVersionProblem(v: string): string | null {
  if (v.length > ADVISORY_LIMITS.version || !VERSION.test(v)) return 'not a version string';
  return validateVersion('deb', v);
}

function release(codename: string, raw: unknown, pkg: string, at: string, report: FeedReport): { entry: AffectedPackage; urgency: Severity } | null {
  const ecosystem = debianEcosystem(codename);
  if (ecosystem === null) {
    report.warn(at, new FeedUnsupportedError(`release ${JSON.stringify(codename.slice(0, 32))} is not a known Debian codename; skipped`));
    return null;
  }
  const r = ReleaseSchema.safeParse(raw);
  if (!r.success) {
    report.warn(`${at} ${codename}`, new FeedFormatError(`not a release entry: ${r.error.issues[0]?.message ?? 'bad shape'}`));
    return null;
  }
  const { status, fixed_version: fixed, urgency } = r.data;
  const severity = urgency === undefined ? 'unknown' : (severityFromWord(urgency) ?? 'unknown');
  const base = { ecosystem, package: pkg, versions: [] };
  switch (status) {
    case 'resolved': {
      if (fixed === undefined) {
        report.warn(`${at} ${codename}`, new FeedFormatError('resolved without a fixed_version; skipped'));
        return null;
      }
      if (fixed === '0') return { entry: { ...base, ranges: [], notAffected: true }, urgency: severity };
      const problem = debianVersionProblem(fixed);
      if (problem !== null) {
        report.warn(`${at} ${codename}`, new InvalidVersionError(`fixed_version ${JSON.stringify(fixed.slice(0, 64))} is not a Debian version (${problem}); skipped`));
        return null;
      }
      return { entry: { ...base, ranges: [{ introduced: '0', fixed, lastAffected: null }], notAffected: false }, urgency: severity };
    }
    case 'undetermined':
    case 'open':
      // Undetermined is read as open: see the module comment.
      if (status === 'undetermined') report.count('undetermined');
      return { entry: { ...base, ranges: [{ introduced: '0', fixed: null, lastAffected: null }], notAffected: false }, urgency: severity };
    default:
      report.warn(`${at} ${codename}`, new FeedUnsupportedError(`status ${JSON.stringify(status)} is not open, resolved or undetermined; skipped`));
      return null;
  }
}

/**
 * Parses the whole tracker JSON. Throws FeedFormatError when the document is not a
 * package -> issue map; per-package, per-issue and per-release problems are warnings.
 * Counters: `packages`, `issues` ((package, id) pairs), `undetermined`,
 * `issues without releases`.
 */
export function parseDebianTracker(doc: unknown, report: FeedReport, where = 'debian tracker'): Advisory[] {
  if (!isPlainObject(doc)) throw new FeedFormatError(`${where}: not a Debian tracker document (expected an object of source packages)`);
  const advisories: Advisory[] = [];
  for (const [pkg, issues] of Object.entries(doc)) {
    report.count('packages');
    const atPkg = `${where} ${pkg.slice(0, 64)}`;
    if (pkg.length > ADVISORY_LIMITS.name || !PACKAGE_NAME.test(pkg)) {
      report.warn(atPkg, new FeedFormatError('not a Debian source package name; skipped'));
      continue;
    }
    if (!isPlainObject(issues)) {
      report.warn(atPkg, new FeedFormatError('expected an object of issues; skipped'));
      continue;
    }
    for (const [id, raw] of Object.entries(issues)) {
      report.count('issues');
      const at = `${atPkg} ${id.slice(0, 64)}`;
      if (id.length > 64 || !ADVISORY_ID.test(id)) {
        report.warn(at, new FeedFormatError('issue id is not printable; skipped'));
        continue;
      }
      const entry = EntrySchema.safeParse(raw);
      if (!entry.success) {
        report.warn(at, new FeedFormatError(`not an issue entry: ${entry.error.issues[0]?.path.map(String).join('.') ?? ''} ${entry.error.issues[0]?.message ?? ''}`));
        continue;
      }
      const affected: AffectedPackage[] = [];
      let severity: Severity = 'unknown';
      for (const [codename, r] of Array.isArray(entry.data.releases) ? [] : Object.entries(entry.data.releases)) {
        const got = release(codename, r, pkg, at, report);
        if (got === null) continue;
        affected.push(got.entry);
        severity = maxSeverity(severity, got.urgency);
      }
      if (affected.length === 0) {
        report.count('issues without releases');
        continue;
      }
      const advisoryId = `DEBIAN-${id}/${pkg}`;
      if (advisoryId.length > ADVISORY_LIMITS.id) {
        report.warn(at, new FeedFormatError('package name and id together are too long for an advisory id; skipped'));
        continue;
      }
      const description = entry.data.description ?? null;
      advisories.push({
        source: DEBIAN_TRACKER_SOURCE,
        id: advisoryId,
        aliases: CVE_ID.test(id) ? [id] : [],
        summary: description === null || description === '' ? null : description.slice(0, ADVISORY_LIMITS.summary),
        severity,
        published: null,
        modified: null,
        affected,
        withdrawn: null,
      });
    }
  }
  return advisories;
}
