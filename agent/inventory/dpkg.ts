/**
 * Installed Debian/Ubuntu packages, read from dpkg's status file itself: dpkg-query is
 * missing from distroless images and mounted roots, and the file is the database.
 * The format is deb822 (deb-control(5), dpkg's lib/dpkg/parse.c): stanzas separated by
 * an empty line, `Name: value` fields, continuation lines start with a space or a tab.
 */
import { lstat, readdir } from 'node:fs/promises';
import { PackageSchema, type Package } from '../../shared/protocol.ts';
import { displayPath, readDatabaseFile, resolveInRoot, skipCounter, type InventoryContext } from './context.ts';

export const DPKG_STATUS_PATH = '/var/lib/dpkg/status';
/** dpkg's journal: each file is a stanza written since the last checkpoint into `status`. */
const DPKG_UPDATES_DIR = '/var/lib/dpkg/updates';

const NL = 10;
const SPACE = 32;
const TAB = 9;
/** Enough of a bad value for an operator to recognise it, short enough for a log line. */
const EXAMPLE_CHARS = 80;

type Field = 'package' | 'status' | 'source' | 'version' | 'architecture';

function fieldOf(name: string): Field | null {
  switch (name) {
    case 'Package':
      return 'package';
    case 'Status':
      return 'status';
    case 'Source':
      return 'source';
    case 'Version':
      return 'version';
    case 'Architecture':
      return 'architecture';
  }
  // Field names are case-insensitive (deb822(5)); dpkg writes them capitalised, so only
  // the rare other spellings pay for the lower-casing. 12 = "architecture".
  if (name.length > 12) return null;
  switch (name.toLowerCase()) {
    case 'package':
      return 'package';
    case 'status':
      return 'status';
    case 'source':
      return 'source';
    case 'version':
      return 'version';
    case 'architecture':
      return 'architecture';
    default:
      return null;
  }
}

const WANTS = new Set(['unknown', 'install', 'hold', 'deinstall', 'purge']);
// `hold` and `hold-reinstreq` are the pre-1.6 spellings dpkg still reads (parsehelp.c).
const EFLAGS = new Set(['ok', 'reinstreq', 'hold', 'hold-reinstreq']);
const STATUSES = new Set([
  'not-installed',
  'config-files',
  'half-installed',
  'unpacked',
  'half-configured',
  'triggers-awaited',
  'triggers-pending',
  'installed',
]);

function excerpt(value: string): string {
  return JSON.stringify(value.length > EXAMPLE_CHARS ? `${value.slice(0, EXAMPLE_CHARS)}…` : value);
}

type Stanza = Partial<Record<Field, string>>;

/** The fields we need of the stanza in [start, end), or why it cannot be trusted. */
function readStanza(text: string, start: number, end: number): Stanza | string {
  const fields: Stanza = {};
  let current: Field | null = null;
  let colon = -1;
  let i = start;
  while (i < end) {
    let eol = text.indexOf('\n', i);
    if (eol === -1 || eol > end) eol = end;
    const c = text.charCodeAt(i);
    if (c === SPACE || c === TAB) {
      if (i === start) return 'continuation line before the first field';
      // Package, Version, Status and friends are single-line; a folded one is not dpkg's.
      if (current !== null) return `${current} field spans several lines`;
    } else {
      // indexOf is many times faster than a character loop; reusing a colon found past
      // this line keeps a colon-free binary blob from being searched once per line.
      if (colon < i) colon = text.indexOf(':', i);
      if (colon === -1 || colon >= eol || colon === i) return `line without a field name: ${excerpt(text.slice(i, Math.min(eol, i + EXAMPLE_CHARS + 1)))}`;
      const len = colon - i;
      // Only names as long as ours are worth a string: most fields are skipped unread.
      current = len === 6 || len === 7 || len === 12 ? fieldOf(text.slice(i, colon)) : null;
      if (current !== null) {
        if (fields[current] !== undefined) return `duplicate ${current} field`;
        fields[current] = text.slice(colon + 1, eol).trim();
      }
    }
    i = eol + 1;
  }
  return fields;
}

/** Where a stanza starts, counted lazily: only skipped stanzas need a line number. */
class LineCounter {
  private offset = 0;
  private line = 1;
  constructor(private readonly text: string) {}
  at(offset: number): number {
    for (let i = this.text.indexOf('\n', this.offset); i !== -1 && i < offset; i = this.text.indexOf('\n', i + 1)) this.line++;
    this.offset = offset;
    return this.line;
  }
}

/** `Source: name` or `Source: name (version)`: the version is given only when it differs. */
const SOURCE_FIELD = /^(\S+)(?:[ \t]+\(([^()\s]+)\))?$/;

function toPackage(fields: Stanza): Package | string {
  const { package: name, version, architecture: arch } = fields;
  if (name === undefined) return 'no Package field';
  if (version === undefined) return `${excerpt(name)}: no Version field`;
  if (arch === undefined) return `${excerpt(name)}: no Architecture field`;
  let source = name;
  let sourceVersion = version;
  if (fields.source !== undefined) {
    const m = SOURCE_FIELD.exec(fields.source);
    if (m === null) return `${excerpt(name)}: malformed Source field ${excerpt(fields.source)}`;
    source = m[1] ?? name;
    sourceVersion = m[2] ?? version;
  }
  const parsed = PackageSchema.safeParse({ name, version, arch, source, sourceVersion });
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const key = String(issue?.path[0] ?? '');
  const bad = ({ name, version, arch, source, sourceVersion } as Record<string, string>)[key] ?? '';
  return `${excerpt(name)}: ${key} ${excerpt(bad)}: ${issue?.message ?? 'invalid'}`;
}

/**
 * Installed packages of a dpkg status file, in file order. "Installed" is dpkg's own
 * `installed` state with an `ok` error flag, whatever the selection (`install`, `hold`,
 * `deinstall` marked but not yet removed): `rc` leftovers, half-installed and unpacked
 * packages are not on the system as a whole package. Stanzas that are malformed,
 * truncated or fail the wire schema are passed to `onSkip` and left out; never throws.
 */
export function parseDpkgStatus(text: string, onSkip?: (reason: string) => void): Package[] {
  const packages: Package[] = [];
  const lines = new LineCounter(text);
  const n = text.length;
  let pos = 0;
  while (pos < n) {
    if (text.charCodeAt(pos) === NL) {
      pos++;
      continue;
    }
    let end = text.indexOf('\n\n', pos);
    let next = end + 2;
    if (end === -1) {
      // dpkg ends every stanza with a newline; a file that stops mid-line was cut short,
      // and a cut `Version: 1.2` would still look valid.
      if (text.charCodeAt(n - 1) !== NL) {
        onSkip?.(`line ${lines.at(pos)}: truncated stanza at end of file: ${excerpt(text.slice(pos, pos + EXAMPLE_CHARS))}`);
        break;
      }
      end = n - 1;
      next = n;
    }
    const stanza = readStanza(text, pos, end);
    if (typeof stanza === 'string') {
      onSkip?.(`line ${lines.at(pos)}: ${stanza}`);
    } else if (stanza.status === undefined) {
      onSkip?.(`line ${lines.at(pos)}: ${stanza.package === undefined ? 'no Package field' : `${excerpt(stanza.package)}: no Status field`}`);
    } else {
      const words = stanza.status.split(' ');
      const [want = '', eflag = '', state = ''] = words;
      if (words.length !== 3 || !WANTS.has(want) || !EFLAGS.has(eflag) || !STATUSES.has(state)) {
        onSkip?.(`line ${lines.at(pos)}: ${excerpt(stanza.package ?? '')}: malformed Status field ${excerpt(stanza.status)}`);
      } else if (eflag === 'ok' && state === 'installed') {
        const pkg = toPackage(stanza);
        if (typeof pkg === 'string') onSkip?.(`line ${lines.at(pos)}: ${pkg}`);
        else packages.push(pkg);
      }
    }
    pos = next;
  }
  return packages;
}

/** Whether the root has a dpkg database at all (a file or anything else at its path). */
export async function hasDpkgDatabase(ctx: InventoryContext): Promise<boolean> {
  try {
    await lstat(await resolveInRoot(ctx.root, DPKG_STATUS_PATH));
    return true;
  } catch {
    return false;
  }
}

/**
 * The installed packages of the root's dpkg database; `null` when it has none. An
 * unreadable status file gives `[]` and a warning: the host is still a dpkg host.
 */
export async function readDpkgPackages(ctx: InventoryContext): Promise<Package[] | null> {
  const data = await readDatabaseFile(ctx, DPKG_STATUS_PATH, 'dpkg', 'PW_WARN_DPKG_UNREADABLE');
  if (data === 'unreadable') return [];
  if (data === null) return null;
  // dpkg writes a blank line after every stanza, the last one too: a file that ends
  // otherwise was cut short (a full disk, a copy interrupted), and packages are missing.
  const n = data.length;
  if (n > 0 && !(data[n - 1] === 0x0a && data[n - 2] === 0x0a)) {
    ctx.warn({
      source: 'dpkg',
      code: 'PW_WARN_DPKG_TRUNCATED',
      message: `${displayPath(ctx, DPKG_STATUS_PATH)} does not end with the blank line dpkg writes after every stanza: it was cut short and packages may be missing`,
    });
  }
  const skips = skipCounter();
  const packages = parseDpkgStatus(data.toString('utf8'), skips.onSkip);
  skips.warnIfAny(ctx, { source: 'dpkg', code: 'PW_WARN_DPKG_MALFORMED', what: `malformed or truncated stanza(s) in ${displayPath(ctx, DPKG_STATUS_PATH)}` });
  await warnPendingJournal(ctx);
  return packages;
}

/**
 * dpkg records each change in updates/NNNN and folds them into `status` when it finishes;
 * entries left there mean dpkg is running or was interrupted, and `status` may list older
 * versions than are on disk. dpkg-query merges them; we report it instead.
 */
async function warnPendingJournal(ctx: InventoryContext): Promise<void> {
  let names: string[];
  try {
    names = await readdir(await resolveInRoot(ctx.root, DPKG_UPDATES_DIR));
  } catch {
    return;
  }
  const pending = names.filter((name) => /^\d+$/.test(name)).length;
  if (pending === 0) return;
  ctx.warn({
    source: 'dpkg',
    code: 'PW_WARN_DPKG_INTERRUPTED',
    message: `${pending} dpkg journal entr${pending === 1 ? 'y' : 'ies'} in ${displayPath(ctx, DPKG_UPDATES_DIR)} not yet merged into the status file: dpkg is running or was interrupted (run "dpkg --configure -a"); versions reported may be older than installed`,
  });
}
