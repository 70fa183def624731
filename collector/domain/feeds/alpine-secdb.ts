/**
 * Alpine secdb (https://secdb.alpinelinux.org/<release>/<repo>.json) -> advisories.
 *
 * One advisory per (release, package, fixed version), not per CVE. A `secfixes` key is
 * one apk upgrade and its list is what that upgrade fixed: "openssl < 3.3.2-r1 is
 * affected by these CVEs" is exactly one range, and a finding naming that upgrade is
 * what the operator acts on. Per CVE would be wrong when a CVE sits under two keys of one
 * package (a first fix and a later complete one): the two ranges cannot be told apart
 * without guessing which fix counts. Kept this way, a host below both fixes gets two
 * findings (both true), a host between them gets the later one.
 *
 * The key `"0"` means "this package was never affected by these CVEs": it becomes an
 * advisory whose affected entry has `notAffected: true`, so the collector can tell
 * "checked, not affected" from "nothing known". A key that apk itself rejects as a
 * version (5 in the real data, e.g. `10.0.11-0`) is skipped with PW_ERR_INVALID_VERSION:
 * comparing against it would give an arbitrary answer.
 *
 * Id strings are free text in practice (`CVE-2018-8897 XSA-260`, `CVE-2018-14881 (BGP)`,
 * `CVE_2019-2426`, `CVE-????-?????`): CVE ids are taken wherever they appear, other
 * advisory ids (XSA-, GHSA-, ...) as whole words, parenthesised notes are dropped, and a
 * token that starts like a CVE but is not one is a counted warning.
 */
import * as z from 'zod';
import { FeedFormatError, InvalidVersionError } from '../../../shared/errors.ts';
import { PACKAGE_NAME, VERSION } from '../../../shared/protocol.ts';
import { apkVersionProblem } from '../../../shared/versions/apk.ts';
import { ADVISORY_LIMITS, type Advisory, type FeedReport } from './types.ts';

export const ALPINE_SOURCE = 'alpine-secdb';

const SecdbSchema = z.looseObject({
  distroversion: z.string().max(64),
  reponame: z.string().max(64).optional(),
  packages: z.array(z.unknown()).max(1_000_000).nullable(),
});

const PackageSchema = z.looseObject({
  pkg: z.looseObject({
    name: z.string().max(ADVISORY_LIMITS.name),
    secfixes: z.record(z.string(), z.array(z.string().max(4096)).max(10_000).nullable()).nullish(),
  }),
});

const CVE_ANYWHERE = /CVE[-_](\d{4})-(\d{4,19})/i;
const OTHER_ID = /^[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+$/;

/** The ids in one secfixes string; see the module comment for the forms seen. */
export function idsOf(raw: string, where: string, report: FeedReport): string[] {
  const ids: string[] = [];
  let depth = 0;
  for (const token of raw.split(/\s+/)) {
    if (token === '') continue;
    const inNote = depth > 0 || token.startsWith('(');
    depth = Math.max(0, depth + (token.split('(').length - 1) - (token.split(')').length - 1));
    if (inNote) continue;
    if (/^CVE/i.test(token)) {
      const m = CVE_ANYWHERE.exec(token);
      if (m === null) report.warn(where, new FeedFormatError(`${JSON.stringify(raw.slice(0, 100))}: ${JSON.stringify(token)} is not a CVE id`));
      else ids.push(`CVE-${m[1] ?? ''}-${m[2] ?? ''}`);
    } else if (OTHER_ID.test(token) && /\d/.test(token) && token.length <= 64) {
      ids.push(token);
    }
  }
  return ids;
}

/**
 * Parses one secdb document. Throws FeedFormatError when the document itself is not a
 * secdb file (no `distroversion`, `packages` not a list, an unknown release name);
 * per-package and per-version problems are warnings in `report`. Counters in `report`:
 * `packages`, `fixed versions` (secfixes keys, `"0"` included), `ids` (raw id strings),
 * `not affected` (`"0"` keys).
 */
export function parseAlpineSecdb(doc: unknown, report: FeedReport, where = 'alpine secdb'): Advisory[] {
  const parsed = SecdbSchema.safeParse(doc);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new FeedFormatError(`${where}: not an Alpine secdb document (${issue === undefined ? 'bad shape' : `${issue.path.map(String).join('.')}: ${issue.message}`})`);
  }
  const release = parsed.data.distroversion;
  if (!/^(v\d+\.\d+|edge)$/.test(release)) throw new FeedFormatError(`${where}: distroversion ${JSON.stringify(release)} is not an Alpine release (v3.21, edge)`);
  const ecosystem = `Alpine:${release}`;
  const advisories: Advisory[] = [];
  for (const [index, raw] of (parsed.data.packages ?? []).entries()) {
    report.count('packages');
    const p = PackageSchema.safeParse(raw);
    if (!p.success) {
      report.warn(`${where} packages[${index}]`, new FeedFormatError(`not a secdb package entry: ${p.error.issues[0]?.message ?? 'bad shape'}`));
      continue;
    }
    const { name, secfixes } = p.data.pkg;
    const at = `${where} ${ecosystem}/${name}`;
    if (!PACKAGE_NAME.test(name)) {
      report.warn(at, new FeedFormatError(`package name ${JSON.stringify(name.slice(0, 64))} is not an apk name; skipped`));
      continue;
    }
    for (const [fixed, list] of Object.entries(secfixes ?? {})) {
      report.count('fixed versions');
      report.count('ids', list?.length ?? 0);
      const problem = fixed === '0' ? null : fixed.length > ADVISORY_LIMITS.version || !VERSION.test(fixed) ? 'not a version string' : apkVersionProblem(fixed);
      if (problem !== null) {
        report.warn(at, new InvalidVersionError(`fixed version ${JSON.stringify(fixed.slice(0, 64))} is not a valid apk version (${problem}); skipped`));
        continue;
      }
      const id = `${ecosystem}/${name}/${fixed}`;
      if (id.length > ADVISORY_LIMITS.id) {
        report.warn(at, new FeedFormatError(`package name and version together are too long for an advisory id; skipped`));
        continue;
      }
      const aliases = [...new Set((list ?? []).flatMap((id) => idsOf(id, `${at} ${fixed}`, report)))].sort().slice(0, ADVISORY_LIMITS.aliases);
      const notAffected = fixed === '0';
      if (notAffected) report.count('not affected');
      advisories.push({
        source: ALPINE_SOURCE,
        id,
        aliases,
        summary: null,
        severity: 'unknown',
        published: null,
        modified: null,
        affected: [
          {
            ecosystem,
            package: name,
            ranges: notAffected ? [] : [{ introduced: '0', fixed, lastAffected: null }],
            versions: [],
            notAffected,
          },
        ],
        withdrawn: null,
      });
    }
  }
  return advisories;
}
