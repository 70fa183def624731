/**
 * The running kernel's live patch: which provider, whether a patch is applied, the CVEs it
 * fixes and the loaded patch modules. The collector marks a kernel CVE
 * `mitigated-livepatch` only from this list, so nothing here is inferred from a version
 * number: a CVE is listed only when the provider itself names it.
 *
 * Files (/proc/kcare, /sys/kernel/livepatch) are read inside `ctx.root`. Commands
 * (`kcarectl`, `canonical-livepatch`, `kpatch`) describe the machine they run on, so they
 * run only when `ctx.root` is `/` unless the caller asks otherwise (`runCommands`): the
 * tools of the host say nothing about a mounted image.
 */
import { LIMITS, type Livepatch, type LivepatchProvider } from '../../shared/protocol.ts';
import { errorMessage } from '../../shared/errors.ts';
import { displayPath, type InventoryContext, readRootFile, resolveInRoot } from './context.ts';
import { readdir } from 'node:fs/promises';

const SOURCE = 'livepatch';
/** /proc/kcare files and sysfs attributes are a few KB; a CVE list of 10k ids is ~150 KB. */
const MAX_PROC_BYTES = 4 * 1024 * 1024;
const MAX_COMMAND_OUTPUT = 16 * 1024 * 1024;
const COMMAND_TIMEOUT_MS = 60_000;
/** Module and version strings are names, not prose: anything longer is not what we think. */
const MAX_NAME = LIMITS.name;

const CVE_ID = /\bCVE-\d{4}-\d{4,}\b/gi;

export interface LivepatchOptions {
  /** Run the providers' commands; default: only when inventorying this machine (`/`). */
  runCommands?: boolean;
}

/** Upper-cases, de-duplicates and sorts CVE ids found anywhere in `text`. */
function cvesIn(text: string): string[] {
  return [...new Set([...text.matchAll(CVE_ID)].map((m) => m[0].toUpperCase()))];
}

function sortedUnique(values: Iterable<string>): string[] {
  return [...new Set(values)].sort();
}

/**
 * `/proc/kcare/cvelist`: "a list of CVEs separated by a newline" (TuxCare's scanner
 * integration guide). Lines that are not CVE ids are skipped rather than trusted.
 */
export function parseKcareCvelist(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (/^CVE-\d{4}-\d{4,}$/i.test(line)) out.push(line.toUpperCase());
  }
  return sortedUnique(out);
}

export interface KcareInfo {
  applied: boolean;
  /** The effective kernel version after patching (`kpatch-description: <level>;<version>`). */
  effectiveVersion: string | null;
  patchLevel: string | null;
}

/**
 * `kcarectl --info`: `key: value` lines. `kpatch-state: patch is applied` when a patch is
 * loaded; `kpatch-description: 3;3.16.36-1+deb8u2` carries the patch level and the effective
 * kernel version after `;` (KernelCare prints the same version as "Effective kernel version"
 * on `--update`). An unsupported kernel prints a single "Unknown kernel (...)" line instead.
 */
export function parseKcareInfo(text: string): KcareInfo {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([a-z][a-z-]*):\s*(.*)$/.exec(line.trim());
    if (m?.[1] !== undefined && m[2] !== undefined && !fields.has(m[1])) fields.set(m[1], m[2].trim());
  }
  const applied = fields.get('kpatch-state') === 'patch is applied';
  const description = fields.get('kpatch-description') ?? '';
  const semi = description.lastIndexOf(';');
  const version = semi === -1 ? '' : description.slice(semi + 1).trim();
  const level = semi === -1 ? '' : description.slice(0, semi).trim();
  return {
    applied,
    effectiveVersion: applied && version !== '' && version.length <= MAX_NAME && !/\s/.test(version) ? version : null,
    patchLevel: applied && level !== '' ? level : null,
  };
}

/**
 * `kcarectl --patch-info`: blank-line separated records of `kpatch-*: value` lines, one per
 * patch; `kpatch-cve:` holds one or more ids separated by spaces, or `N/A`.
 */
export function parseKcarePatchInfo(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*kpatch-cve:\s*(.*)$/.exec(line);
    if (m?.[1] !== undefined) out.push(...cvesIn(m[1]));
  }
  return sortedUnique(out);
}

export interface CanonicalLivepatchStatus {
  kernel: string | null;
  /** `Livepatch.State`: `applied`, `nothing-to-apply`, `apply-failed`, ... */
  state: string | null;
  active: boolean;
  /** `Livepatch.Version`, the patch version (`104.1`); the LSN OVAL keys on its major. */
  version: string | null;
  fixedCves: string[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | null {
  return typeof v === 'string' && v !== '' && v.length <= MAX_NAME ? v : null;
}

/**
 * `canonical-livepatch status --verbose --format json`: `{"Status": [{"Kernel", "Running",
 * "Livepatch": {"State", "Version", "Fixes": [{"Name": "cve-2024-1086", "Patched": true}]}}]}`
 * (the shape Landscape relays in `livepatch_info.json.output` and ubuntu-pro-client parses in
 * uaclient/livepatch.py). Fix names are lower case; only fixes marked `Patched` count.
 * Clients before 10.x printed `Fixes` as one text block ("* cve-2016-...\n"); that is read
 * too. The entry for the running kernel is used (`Running: true`), else the first.
 * Returns null when the document has no status entry (livepatch installed but not enabled).
 */
export function parseCanonicalLivepatchStatus(text: string): CanonicalLivepatchStatus | null {
  const doc: unknown = JSON.parse(text);
  if (!isRecord(doc)) throw new TypeError('canonical-livepatch status is not a JSON object');
  const status = doc.Status;
  if (!Array.isArray(status)) return null;
  const entries = status.filter(isRecord);
  const entry = entries.find((e) => e.Running === true) ?? entries[0];
  if (entry === undefined) return null;
  const lp = isRecord(entry.Livepatch) ? entry.Livepatch : {};
  const state = str(lp.State);
  const fixes = lp.Fixes;
  let fixedCves: string[] = [];
  if (Array.isArray(fixes)) {
    fixedCves = sortedUnique(
      fixes.filter(isRecord).flatMap((f) => (f.Patched === true && typeof f.Name === 'string' ? cvesIn(f.Name) : [])),
    );
  } else if (typeof fixes === 'string') {
    fixedCves = sortedUnique(cvesIn(fixes));
  }
  return {
    kernel: str(entry.Kernel),
    state,
    active: state === 'applied',
    version: str(lp.Version),
    fixedCves,
  };
}

export interface KpatchList {
  loaded: { name: string; enabled: boolean }[];
  installed: { name: string; kernel: string | null }[];
}

/**
 * `kpatch list` (dynup/kpatch): a "Loaded patch modules:" section with `name [enabled]`
 * (or `[disabled]`; kpatch before 0.6 printed the bare name) and an "Installed patch
 * modules:" section with `name (kernel-release)`.
 */
export function parseKpatchList(text: string): KpatchList {
  const out: KpatchList = { loaded: [], installed: [] };
  let section: 'loaded' | 'installed' | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (/^Loaded patch modules:/i.test(line)) {
      section = 'loaded';
      continue;
    }
    if (/^Installed patch modules:/i.test(line)) {
      section = 'installed';
      continue;
    }
    const m = /^(\S+)(?:\s+[[(]([^\])]*)[\])])?/.exec(line);
    const name = m?.[1]?.replace(/\.ko$/, '');
    if (section === null || name === undefined || name.length > MAX_NAME) continue;
    const detail = m?.[2]?.trim();
    if (section === 'loaded') out.loaded.push({ name, enabled: detail === undefined || detail === 'enabled' });
    else out.installed.push({ name, kernel: detail === undefined || detail === '' ? null : detail });
  }
  return out;
}

/**
 * Amazon Linux 2 names its kpatch modules after the CVE they fix (`livepatch_CVE_2019_20096`,
 * AWS "Kernel Live Patching on AL2" guide); RHEL names them after the kernel
 * (`kpatch_5_14_0_284_11_1_1_1`) and those yield nothing.
 */
export function cvesFromModuleNames(names: readonly string[]): string[] {
  const out: string[] = [];
  for (const n of names) {
    for (const m of n.matchAll(/CVE[_-](\d{4})[_-](\d{4,})/gi)) out.push(`CVE-${m[1] ?? ''}-${m[2] ?? ''}`);
  }
  return sortedUnique(out);
}

async function readText(ctx: InventoryContext, path: string): Promise<string | null> {
  try {
    const buf = await readRootFile(ctx, path, MAX_PROC_BYTES);
    return buf === null ? null : buf.toString('utf8');
  } catch (err) {
    ctx.warn({ source: SOURCE, code: 'PW_WARN_LIVEPATCH_UNREADABLE', message: errorMessage(err) });
    return null;
  }
}

async function listDir(ctx: InventoryContext, path: string): Promise<string[]> {
  try {
    return (await readdir(await resolveInRoot(ctx.root, path))).sort();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') {
      ctx.warn({ source: SOURCE, code: 'PW_WARN_LIVEPATCH_UNREADABLE', message: `cannot list ${displayPath(ctx, path)}: ${errorMessage(err)}` });
    }
    return [];
  }
}

/** Modules under /sys/kernel/livepatch whose `enabled` reads 1 (kernel livepatch ABI). */
async function readSysfsLivepatch(ctx: InventoryContext): Promise<{ enabled: string[]; present: boolean }> {
  const names = await listDir(ctx, '/sys/kernel/livepatch');
  const enabled: string[] = [];
  for (const name of names) {
    if (name.length > MAX_NAME) continue;
    const text = await readText(ctx, `/sys/kernel/livepatch/${name}/enabled`);
    if (text === null) continue;
    const v = text.trim();
    if (v === '1') enabled.push(name);
    else if (v !== '0') {
      ctx.warn({
        source: SOURCE,
        code: 'PW_WARN_LIVEPATCH_MALFORMED',
        message: `${displayPath(ctx, `/sys/kernel/livepatch/${name}/enabled`)} holds ${JSON.stringify(v.slice(0, 32))}, not 0 or 1`,
      });
    }
  }
  return { enabled, present: names.length > 0 };
}

interface ProviderResult {
  provider: LivepatchProvider;
  active: boolean;
  effectiveVersion: string | null;
  fixedCves: string[];
  modules: string[];
}

async function run(ctx: InventoryContext, file: string, args: string[]): Promise<{ stdout: string; status: number } | null> {
  try {
    const r = await ctx.run(file, args, { timeoutMs: COMMAND_TIMEOUT_MS, maxBuffer: MAX_COMMAND_OUTPUT });
    return r === null ? null : { stdout: r.stdout, status: r.status };
  } catch (err) {
    ctx.warn({ source: SOURCE, code: 'PW_WARN_LIVEPATCH_COMMAND_FAILED', message: errorMessage(err) });
    return null;
  }
}

/** The first line of /proc/kcare/effective_version; a /proc/version-style line yields its release. */
function effectiveVersionFrom(text: string): string | null {
  const line = (text.split('\n')[0] ?? '').trim();
  const m = /^Linux version (\S+)/.exec(line);
  const v = m?.[1] ?? line;
  return v !== '' && v.length <= MAX_NAME && !/\s/.test(v) ? v : null;
}

async function readKernelCare(ctx: InventoryContext, runCommands: boolean): Promise<ProviderResult | null> {
  const [effective, cvelist] = await Promise.all([
    readText(ctx, '/proc/kcare/effective_version'),
    readText(ctx, '/proc/kcare/cvelist'),
  ]);
  if (effective !== null || cvelist !== null) {
    const effectiveVersion = effective === null ? null : effectiveVersionFrom(effective);
    const fixedCves = cvelist === null ? [] : parseKcareCvelist(cvelist);
    return { provider: 'kernelcare', active: effectiveVersion !== null || fixedCves.length > 0, effectiveVersion, fixedCves, modules: [] };
  }
  if (!runCommands) return null;
  // The /proc/kcare files appeared with KernelCare 2.x; older agents answer only through kcarectl.
  const info = await run(ctx, 'kcarectl', ['--info']);
  if (info === null) return null;
  const parsed = parseKcareInfo(info.stdout);
  let fixedCves: string[] = [];
  if (parsed.applied) {
    const patches = await run(ctx, 'kcarectl', ['--patch-info']);
    if (patches !== null) fixedCves = parseKcarePatchInfo(patches.stdout);
  }
  return { provider: 'kernelcare', active: parsed.applied, effectiveVersion: parsed.effectiveVersion, fixedCves, modules: [] };
}

async function readCanonicalLivepatch(ctx: InventoryContext): Promise<ProviderResult | null> {
  // `--verbose` makes older clients include the Fixes list (ubuntu-pro-client passes it too).
  // The snap's binary is not on the PATH of every service manager, hence the full path.
  const args = ['status', '--verbose', '--format', 'json'];
  const r = (await run(ctx, 'canonical-livepatch', args)) ?? (await run(ctx, '/snap/bin/canonical-livepatch', args));
  if (r === null) return null;
  let parsed: CanonicalLivepatchStatus | null = null;
  try {
    parsed = parseCanonicalLivepatchStatus(r.stdout);
  } catch (err) {
    // A disabled client exits non-zero with a human message on stdout: installed, not patching.
    if (r.status === 0) {
      ctx.warn({ source: SOURCE, code: 'PW_WARN_LIVEPATCH_MALFORMED', message: `canonical-livepatch status: ${errorMessage(err)}` });
    }
  }
  if (parsed === null) return { provider: 'canonical-livepatch', active: false, effectiveVersion: null, fixedCves: [], modules: [] };
  return {
    provider: 'canonical-livepatch',
    active: parsed.active,
    effectiveVersion: parsed.version,
    fixedCves: parsed.active ? parsed.fixedCves : [],
    modules: [],
  };
}

async function readKpatch(ctx: InventoryContext): Promise<ProviderResult | null> {
  const r = await run(ctx, 'kpatch', ['list']);
  if (r === null) return null;
  const list = parseKpatchList(r.stdout);
  const loaded = list.loaded.filter((m) => m.enabled).map((m) => m.name);
  return { provider: 'kpatch', active: loaded.length > 0, effectiveVersion: null, fixedCves: cvesFromModuleNames(loaded), modules: loaded };
}

function capped(ctx: InventoryContext, what: string, values: string[]): string[] {
  if (values.length <= LIMITS.list) return values;
  ctx.warn({ source: SOURCE, code: 'PW_WARN_LIVEPATCH_TRUNCATED', message: `${values.length} ${what}, kept the first ${LIMITS.list}` });
  return values.slice(0, LIMITS.list);
}

/**
 * Providers are tried in order KernelCare, Canonical Livepatch, kpatch, then the bare kernel
 * livepatch sysfs. KernelCare and Canonical Livepatch refuse to run together (TuxCare's
 * docs), so the first one found is the provider; the modules are the union of what sysfs
 * and kpatch report, because Ubuntu's LSN OVAL matches on the loaded module names.
 */
export async function readLivepatch(ctx: InventoryContext, options: LivepatchOptions = {}): Promise<Livepatch> {
  const runCommands = options.runCommands ?? ctx.root === '/';
  const sysfs = await readSysfsLivepatch(ctx);
  let found = await readKernelCare(ctx, runCommands);
  if (found === null && runCommands) found = await readCanonicalLivepatch(ctx);
  if (found === null && runCommands) found = await readKpatch(ctx);
  if (found === null && sysfs.present) {
    found = { provider: 'livepatch', active: sysfs.enabled.length > 0, effectiveVersion: null, fixedCves: [], modules: [] };
  }
  if (found === null) return { provider: 'none', active: false, effectiveVersion: null, fixedCves: [], modules: [] };
  return {
    provider: found.provider,
    active: found.active,
    effectiveVersion: found.effectiveVersion,
    fixedCves: capped(ctx, 'fixed CVEs', found.fixedCves),
    modules: capped(ctx, 'live patch modules', sortedUnique([...sysfs.enabled, ...found.modules])),
  };
}
