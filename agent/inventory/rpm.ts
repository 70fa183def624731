/**
 * Installed rpm packages, read through the rpm program itself: the database is SQLite
 * (RHEL 9+, Fedora 33+), Berkeley DB (RHEL 7/8) or rpm's own ndb (SUSE), holding binary
 * headers that only librpm reads reliably. rpm runs with `--dbpath` always, because
 * rpm builds differ in their default (Debian's rpm uses ~/.rpmdb), and with `--root`
 * for a mounted root.
 */
import { lstat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { errorMessage } from '../../shared/errors.ts';
import { LIMITS, PackageSchema, type Package } from '../../shared/protocol.ts';
import { displayPath, resolveInRoot, skipCounter, type InventoryContext } from './context.ts';

/** rpm's database directory: RHEL/CentOS up to 9; Fedora 36+ and SUSE (/var/lib/rpm is a link there). */
export const RPM_DB_DIRS = ['/var/lib/rpm', '/usr/lib/sysimage/rpm'] as const;
/** The files that make a directory an rpm database: sqlite, bdb, ndb backends. */
const RPM_DB_FILES = ['rpmdb.sqlite', 'Packages', 'Packages.db'] as const;

// Unit and record separators: no rpm tag value we ask for can contain them, unlike the
// spaces, tabs and newlines a hand-built package may put anywhere.
const FS = '\x1f';
const RS = '\x1e';
export const RPM_QUERY_FORMAT = ['%{NAME}', '%{EPOCH}', '%{VERSION}', '%{RELEASE}', '%{ARCH}', '%{SOURCERPM}'].join(FS) + RS;
/** rpm -qa reads every header; a few thousand packages take seconds on a slow disk. */
const RPM_TIMEOUT_MS = 120_000;
const EXAMPLE_CHARS = 80;
/** rpm prints `(none)` for a tag the header does not have. */
const NONE = '(none)';

function excerpt(value: string): string {
  return JSON.stringify(value.length > EXAMPLE_CHARS ? `${value.slice(0, EXAMPLE_CHARS)}…` : value);
}

/** `openssl-3.0.7-27.el9.src.rpm` -> name `openssl`, version-release `3.0.7-27.el9`. */
function parseSourceRpm(file: string): { name: string; versionRelease: string } | null {
  const base = file.endsWith('.src.rpm') ? file.slice(0, -8) : file.endsWith('.nosrc.rpm') ? file.slice(0, -10) : null;
  if (base === null) return null;
  const releaseDash = base.lastIndexOf('-');
  const versionDash = releaseDash > 0 ? base.lastIndexOf('-', releaseDash - 1) : -1;
  if (versionDash <= 0 || releaseDash - versionDash < 2 || releaseDash === base.length - 1) return null;
  return { name: base.slice(0, versionDash), versionRelease: base.slice(versionDash + 1) };
}

function toPackage(record: string): Package | string | null {
  const fields = record.split(FS);
  if (fields.length !== 6) return `record with ${fields.length} fields instead of 6: ${excerpt(record)}`;
  const [name = '', epoch = '', version = '', release = '', arch = '', sourceRpm = ''] = fields;
  // Imported signing keys are headers in the same database, not software.
  if (name === 'gpg-pubkey') return null;
  const e = epoch === NONE ? '' : `${epoch}:`;
  const evr = `${e}${version}-${release}`;
  let source = name;
  // The source rpm's file name has no epoch; every binary of one build shares it.
  let sourceVersion = evr;
  if (sourceRpm !== NONE) {
    const parsed = parseSourceRpm(sourceRpm);
    if (parsed === null) return `${excerpt(name)}: SOURCERPM ${excerpt(sourceRpm)} is not a source rpm file name`;
    source = parsed.name;
    sourceVersion = `${e}${parsed.versionRelease}`;
  }
  const candidate = { name, version: evr, arch, source, sourceVersion };
  const checked = PackageSchema.safeParse(candidate);
  if (checked.success) return checked.data;
  const issue = checked.error.issues[0];
  const key = String(issue?.path[0] ?? '');
  const bad = (candidate as Record<string, string>)[key] ?? '';
  return `${excerpt(name)}: ${key} ${excerpt(bad)}: ${issue?.message ?? 'invalid'}`;
}

/**
 * Packages from `rpm -qa --qf RPM_QUERY_FORMAT` output. `version` is
 * `[epoch:]version-release`; `source` is the source rpm's name and `sourceVersion` its
 * version-release with the binary's epoch. gpg-pubkey pseudo packages are left out;
 * malformed or truncated records go to `onSkip`. Never throws.
 */
export function parseRpmQuery(stdout: string, onSkip?: (reason: string) => void): Package[] {
  const packages: Package[] = [];
  const records = stdout.split(RS);
  const last = records.pop() ?? '';
  // Output that stops without the record separator was cut short (rpm killed, full disk).
  if (last.trim() !== '') onSkip?.(`truncated record at end of output: ${excerpt(last)}`);
  records.forEach((record, index) => {
    const pkg = toPackage(record);
    if (typeof pkg === 'string') onSkip?.(`record ${index + 1}: ${pkg}`);
    else if (pkg !== null) packages.push(pkg);
  });
  return packages;
}

/**
 * The root's rpm database directory, relative to the root and with links inside the
 * root resolved (rpm --root would follow an absolute link out to the host's database);
 * null when no directory holds database files. An empty /var/lib/rpm, which Debian's
 * rpm package ships, is not a database.
 */
export async function findRpmDatabase(ctx: InventoryContext): Promise<string | null> {
  for (const dir of RPM_DB_DIRS) {
    let real: string;
    try {
      real = await resolveInRoot(ctx.root, dir);
    } catch {
      continue;
    }
    for (const file of RPM_DB_FILES) {
      try {
        await lstat(join(real, file));
      } catch {
        continue;
      }
      return ctx.root === '/' ? real : `/${relative(ctx.root, real)}`;
    }
  }
  return null;
}

/**
 * The installed packages of the root's rpm database; `null` when the root has none, or
 * when it has one but no rpm program to read it (with a warning). rpm failing gives
 * what it printed and a warning.
 */
export async function readRpmPackages(ctx: InventoryContext): Promise<Package[] | null> {
  const dbpath = await findRpmDatabase(ctx);
  if (dbpath === null) return null;
  const args = ['-qa', '--dbpath', dbpath, '--qf', RPM_QUERY_FORMAT];
  if (ctx.root !== '/') args.unshift('--root', ctx.root);
  let result;
  try {
    result = await ctx.run('rpm', args, { timeoutMs: RPM_TIMEOUT_MS });
  } catch (err) {
    ctx.warn({ source: 'rpm', code: 'PW_WARN_RPM_FAILED', message: errorMessage(err).slice(0, LIMITS.text) });
    return [];
  }
  if (result === null) {
    ctx.warn({
      source: 'rpm',
      code: 'PW_WARN_RPM_UNAVAILABLE',
      message: `found an rpm database in ${displayPath(ctx, dbpath)} but no rpm program to read it; install rpm to inventory its packages`,
    });
    return null;
  }
  if (result.status !== 0) {
    const stderr = result.stderr.trim().split('\n').slice(-3).join(' / ');
    ctx.warn({
      source: 'rpm',
      code: 'PW_WARN_RPM_FAILED',
      message: `rpm -qa --dbpath ${displayPath(ctx, dbpath)} exited with status ${result.status}: ${stderr}`.slice(0, LIMITS.text),
    });
  }
  const skips = skipCounter();
  const packages = parseRpmQuery(result.stdout, skips.onSkip);
  skips.warnIfAny(ctx, { source: 'rpm', code: 'PW_WARN_RPM_MALFORMED', what: `malformed or truncated record(s) of rpm -qa --dbpath ${displayPath(ctx, dbpath)}` });
  return packages;
}
