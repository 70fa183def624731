/**
 * Installed Alpine (and Wolfi) packages, read from apk's installed database directly.
 * The format is apk-tools' v2 "FDB" text (apk-package(5), wiki "Apk spec"): one stanza
 * per package, separated by an empty line, every line `X:value` with a one-letter key.
 * `P` name, `V` version, `A` arch, `o` origin (the aport that built it); the many `F`,
 * `R`, `Z` file lines are read past.
 */
import { lstat } from 'node:fs/promises';
import { PackageSchema, type Package } from '../../shared/protocol.ts';
import { displayPath, readDatabaseFile, resolveInRoot, skipCounter, type InventoryContext } from './context.ts';

/**
 * apk-tools 3 defaults to /usr/lib/apk/db but keeps using /lib/apk/db where it exists
 * (apk-tools de9baf91, "change default db location to /usr, but detect and use /lib if
 * exists"); usr-merged Wolfi has /lib -> usr/lib.
 */
export const APK_INSTALLED_PATHS = ['/lib/apk/db/installed', '/usr/lib/apk/db/installed'] as const;

const NL = 10;
const COLON = 58;
const EXAMPLE_CHARS = 80;

function excerpt(value: string): string {
  return JSON.stringify(value.length > EXAMPLE_CHARS ? `${value.slice(0, EXAMPLE_CHARS)}…` : value);
}

interface Stanza {
  P?: string;
  V?: string;
  A?: string;
  o?: string;
}

/** The fields we need of the stanza in [start, end), or why it cannot be trusted. */
function readStanza(text: string, start: number, end: number): Stanza | string {
  const fields: Stanza = {};
  let i = start;
  while (i < end) {
    let eol = text.indexOf('\n', i);
    if (eol === -1 || eol > end) eol = end;
    // apk itself refuses such a line ("FDB format error"), so the stanza is not apk's.
    if (eol - i < 2 || text.charCodeAt(i + 1) !== COLON) return `line without a field letter: ${excerpt(text.slice(i, Math.min(eol, i + EXAMPLE_CHARS + 1)))}`;
    const key = text[i];
    if (key === 'P' || key === 'V' || key === 'A' || key === 'o') {
      if (fields[key] !== undefined) return `duplicate ${key}: field`;
      fields[key] = text.slice(i + 2, eol);
    }
    i = eol + 1;
  }
  return fields;
}

function toPackage(fields: Stanza): Package | string {
  const { P: name, V: version, A: arch } = fields;
  if (name === undefined) return 'no P: (name) field';
  if (version === undefined) return `${excerpt(name)}: no V: (version) field`;
  if (arch === undefined) return `${excerpt(name)}: no A: (arch) field`;
  // A package built outside aports may have no origin: it is its own source.
  const candidate = { name, version, arch, source: fields.o ?? name, sourceVersion: version };
  const parsed = PackageSchema.safeParse(candidate);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const key = String(issue?.path[0] ?? '');
  const bad = (candidate as Record<string, string>)[key] ?? '';
  return `${excerpt(name)}: ${key} ${excerpt(bad)}: ${issue?.message ?? 'invalid'}`;
}

/**
 * Packages of an apk installed database, in file order. Stanzas that are malformed,
 * truncated or fail the wire schema are passed to `onSkip` and left out; never throws.
 */
export function parseApkInstalled(text: string, onSkip?: (reason: string) => void): Package[] {
  const packages: Package[] = [];
  const n = text.length;
  let line = 1;
  let counted = 0;
  const lineAt = (offset: number): number => {
    for (let i = text.indexOf('\n', counted); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
    counted = offset;
    return line;
  };
  let pos = 0;
  while (pos < n) {
    if (text.charCodeAt(pos) === NL) {
      pos++;
      continue;
    }
    let end = text.indexOf('\n\n', pos);
    let next = end + 2;
    if (end === -1) {
      // apk ends every line with a newline; a file that stops mid-line was cut short.
      if (text.charCodeAt(n - 1) !== NL) {
        onSkip?.(`line ${lineAt(pos)}: truncated stanza at end of file: ${excerpt(text.slice(pos, pos + EXAMPLE_CHARS))}`);
        break;
      }
      end = n - 1;
      next = n;
    }
    const stanza = readStanza(text, pos, end);
    const pkg = typeof stanza === 'string' ? stanza : toPackage(stanza);
    if (typeof pkg === 'string') onSkip?.(`line ${lineAt(pos)}: ${pkg}`);
    else packages.push(pkg);
    pos = next;
  }
  return packages;
}

/** The root's apk installed database path, or null when it has none. */
export async function findApkDatabase(ctx: InventoryContext): Promise<string | null> {
  for (const path of APK_INSTALLED_PATHS) {
    try {
      await lstat(await resolveInRoot(ctx.root, path));
      return path;
    } catch {
      // Not there (or not reachable): try the next location.
    }
  }
  return null;
}

/**
 * The installed packages of the root's apk database; `null` when it has none. An
 * unreadable database gives `[]` and a warning: the host is still an apk host.
 */
export async function readApkPackages(ctx: InventoryContext): Promise<Package[] | null> {
  const path = await findApkDatabase(ctx);
  if (path === null) return null;
  const data = await readDatabaseFile(ctx, path, 'apk', 'PW_WARN_APK_UNREADABLE');
  if (data === 'unreadable') return [];
  if (data === null) return null;
  const skips = skipCounter();
  const packages = parseApkInstalled(data.toString('utf8'), skips.onSkip);
  skips.warnIfAny(ctx, { source: 'apk', code: 'PW_WARN_APK_MALFORMED', what: `malformed or truncated stanza(s) in ${displayPath(ctx, path)}` });
  return packages;
}
