/**
 * Whether the host needs a reboot, and which processes need a restart.
 *
 * Reboot reasons, each with a detail an operator can act on:
 * - `reboot-required-file`: /run/reboot-required exists (Debian's reboot-notifier, Ubuntu's
 *   update-notifier); the packages that asked are in /run/reboot-required.pkgs.
 * - `kernel-update`: the running kernel is older than the newest installed one.
 * - `needs-restarting`: `needs-restarting -r` (dnf-utils/yum-utils, Red Hat family) exits 1.
 * - `init-deleted-libraries`: PID 1 maps a deleted library; only a reboot (or a re-exec of
 *   the init system) clears that.
 *
 * `services` lists the processes that map deleted executables or libraries, the way
 * needrestart and checkrestart find them, grouped by systemd unit: restarting those clears
 * them without a reboot.
 *
 * /run and /proc describe the machine the agent runs on, and `needs-restarting` inspects it:
 * they are read only when inventorying `/` (`live`), never for a mounted image, which has no
 * processes and whose /run is not the host's. The kernel-update reason works for both.
 */
import { readdir } from 'node:fs/promises';
import { errorMessage } from '../../shared/errors.ts';
import { compareVersions } from '../../shared/versions/index.ts';
import { type Kernel, LIMITS, type Reboot } from '../../shared/protocol.ts';
import { displayPath, type InventoryContext, readRootFile, resolveInRoot } from './context.ts';

const SOURCE = 'reboot';
/** A JVM with thousands of mappings has a maps file of a few MB; 64 MiB is far past any. */
const MAX_MAPS_BYTES = 64 * 1024 * 1024;
const MAX_SMALL_FILE = 1024 * 1024;
const PROC_CONCURRENCY = 8;
const MAX_FILES_PER_SERVICE = 1000;
const DETAIL_ITEMS = 10;

export interface RebootOptions {
  /** Read /run and /proc inside ctx.root and run needs-restarting; default: `ctx.root === '/'`. */
  live?: boolean;
}

/**
 * Mappings that are deleted by design, after needrestart's `blacklist_mappings`
 * (/etc/needrestart/needrestart.conf, 3.6) and checkrestart's `isdeletedFile`
 * (debian-goodies 0.88): SysV shared memory, DRM and device nodes (/dev/shm, /dev/zero),
 * memfd, the aio ring, JIT and temporary files (/tmp, /var/tmp, /run), per-user files
 * under /home, and caches and databases that are rewritten while mapped.
 */
const IGNORED_MAPPINGS: readonly RegExp[] = [
  /^\/(SYSV[0-9a-f]{8}|drm(\s|$)|dev\/)/,
  /^\/memfd:/,
  /^\/\[aio\]/,
  /\/orcexec\.\w+$/,
  /\/#\d+$/,
  /\/jna\d+\.tmp$/,
  /^(\/var)?\/tmp\//,
  /^(\/var)?\/run\//,
  /^\/var\/local\/(tmp|run|log)\//,
  /^\/var\/log\//,
  /^\/home\//,
  /^\/i915/,
  /^\/usr\/lib\/locale\//,
  /^\/var\/cache\/fontconfig\//,
  /^\/var\/lib\/(postgresql|sss\/mc|vdr|nagios3\/spool)\//,
  /icon-theme\.cache$/,
  /\/dovecot\.index$/,
];

export function isIgnoredMapping(path: string): boolean {
  return IGNORED_MAPPINGS.some((re) => re.test(path));
}

const MAPS_LINE = /^[0-9a-f]+-[0-9a-f]+\s+(\S{4})\s+[0-9a-f]+\s+[0-9a-f]+:[0-9a-f]+\s+(\d+)\s+(.+)$/;

/**
 * Deleted executable mappings in a proc(5) maps file: the kernel appends ` (deleted)` to the
 * path of a file unlinked (or replaced by a package upgrade) while mapped. Like needrestart,
 * only executable mappings (`x` in the permissions) of real files (inode != 0) count: a
 * library's code segment is mapped r-x, so each deleted library and binary shows up once.
 */
export function deletedMappings(text: string): string[] {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const m = MAPS_LINE.exec(line);
    if (m === null) continue;
    const [, perms = '', inode = '0', rawPath = ''] = m;
    if (!perms.includes('x') || inode === '0' || !rawPath.endsWith(' (deleted)')) continue;
    const path = rawPath.slice(0, -' (deleted)'.length);
    if (!path.startsWith('/') || path.length > LIMITS.path || isIgnoredMapping(path)) continue;
    out.add(path);
  }
  return [...out].sort();
}

/**
 * The systemd service a process belongs to, from /proc/PID/cgroup (`id:controllers:path`),
 * as needrestart reads it: the unified hierarchy (`0::`) or the `name=systemd` one; the last
 * path component when it is a `.service`. Login sessions (`session-N.scope`) and the
 * per-user manager (`user@UID.service` and everything under it) are not system services.
 */
export function unitFromCgroup(text: string): string | null {
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (m === null) continue;
    const [, id, controllers, path = ''] = m;
    if (id !== '0' && controllers !== 'name=systemd') continue;
    if (/^(?:\/[^/]+\.slice)*\/user-\d+\.slice\/session-[^/]+\.scope/.test(path)) return null;
    if (/^(?:\/[^/]+\.slice)*\/user@\d+\.service/.test(path)) return null;
    const unit = /\/([^/]+\.service)$/.exec(path)?.[1];
    if (unit !== undefined && unit.length <= LIMITS.name) return unit;
  }
  return null;
}

/** /run/reboot-required.pkgs: one package per line, appended once per request (duplicates). */
export function parseRebootRequiredPkgs(text: string): string[] {
  const out = new Set<string>();
  for (const raw of text.split('\n')) {
    const name = raw.trim();
    if (/^[A-Za-z0-9][A-Za-z0-9+._:-]*$/.test(name) && name.length <= LIMITS.name) out.add(name);
  }
  return [...out];
}

/** The `  * <package>` lines of `needs-restarting -r`: the core packages updated since boot. */
export function parseNeedsRestarting(stdout: string): string[] {
  const out: string[] = [];
  for (const line of stdout.split('\n')) {
    // dnf5 prints the list on one line on some terminals ("  * dbus-broker  * kernel").
    for (const m of line.matchAll(/\*\s+([A-Za-z0-9_.+-]+)/g)) if (m[1] !== undefined) out.push(m[1]);
  }
  return [...new Set(out)];
}

function listed(items: readonly string[]): string {
  const shown = items.slice(0, DETAIL_ITEMS).join(', ');
  return items.length > DETAIL_ITEMS ? `${shown} and ${items.length - DETAIL_ITEMS} more` : shown;
}

async function readSmall(ctx: InventoryContext, path: string): Promise<string | null> {
  try {
    const buf = await readRootFile(ctx, path, MAX_SMALL_FILE);
    return buf === null ? null : buf.toString('utf8');
  } catch (err) {
    ctx.warn({ source: SOURCE, code: 'PW_WARN_REBOOT_UNREADABLE', message: errorMessage(err) });
    return null;
  }
}

async function rebootRequiredFile(ctx: InventoryContext): Promise<string | null> {
  const flag = await readSmall(ctx, '/run/reboot-required');
  if (flag === null) return null;
  const pkgs = await readSmall(ctx, '/run/reboot-required.pkgs');
  const names = pkgs === null ? [] : parseRebootRequiredPkgs(pkgs);
  return names.length === 0 ? '/run/reboot-required exists' : `/run/reboot-required exists, requested by ${listed(names)}`;
}

/**
 * `installed` is sorted newest first (readKernel), so a running kernel found below the top is
 * older than the newest. A running kernel that is not installed at all (its package was
 * replaced, as `apk upgrade` does; or one a hypervisor injects; or a hand-built one) is
 * compared by release string with dpkg's ordering, as needrestart and grub order releases:
 * only an older one raises the reason, because rebooting a VM whose kernel is newer than
 * anything in /boot changes nothing. needrestart reports KSTA=3 whenever the two differ.
 */
export function kernelUpdateDetail(kernel: Pick<Kernel, 'release' | 'installed'>): string | null {
  const newest = kernel.installed[0];
  if (newest === undefined || kernel.release === '' || newest.release === kernel.release) return null;
  const at = kernel.installed.findIndex((k) => k.release === kernel.release);
  let older = at > 0;
  if (at === -1) {
    try {
      older = compareVersions('deb', kernel.release, newest.release) < 0;
    } catch {
      // A release dpkg cannot order says nothing either way.
      older = false;
    }
  }
  return older ? `running ${kernel.release}, newest installed ${newest.release}` : null;
}

async function needsRestarting(ctx: InventoryContext): Promise<string | null> {
  let r;
  try {
    r = await ctx.run('needs-restarting', ['-r'], { timeoutMs: 120_000, maxBuffer: MAX_SMALL_FILE });
  } catch (err) {
    ctx.warn({ source: SOURCE, code: 'PW_WARN_REBOOT_COMMAND_FAILED', message: errorMessage(err) });
    return null;
  }
  if (r === null || r.status === 0) return null;
  const pkgs = parseNeedsRestarting(r.stdout);
  if (r.status === 1 && (pkgs.length > 0 || /Reboot is required/.test(r.stdout))) {
    return pkgs.length === 0 ? 'needs-restarting -r: reboot required' : `needs-restarting -r: ${listed(pkgs)} updated since boot`;
  }
  // Exit 1 is also how yum/dnf report their own errors (no repository access, a missing plugin).
  const why = (r.stderr.trim() || r.stdout.trim()).split('\n')[0] ?? '';
  ctx.warn({ source: SOURCE, code: 'PW_WARN_REBOOT_COMMAND_FAILED', message: `needs-restarting -r exited ${r.status}: ${why.slice(0, 200)}` });
  return null;
}

interface ProcessHit {
  pid: number;
  command: string | null;
  unit: string | null;
  files: string[];
}

function errnoOf(err: unknown): string | undefined {
  const cause = (err as { cause?: unknown }).cause;
  return (cause as NodeJS.ErrnoException | undefined)?.code ?? (err as NodeJS.ErrnoException).code;
}

async function scanProcess(ctx: InventoryContext, pid: number, unreadable: number[]): Promise<ProcessHit | null> {
  let maps: Buffer | null;
  try {
    maps = await readRootFile(ctx, `/proc/${pid}/maps`, MAX_MAPS_BYTES);
  } catch (err) {
    const code = errnoOf(err);
    // The process exited between readdir and open: nothing to report.
    if (code === 'ESRCH' || code === 'ENOENT') return null;
    if (code === 'EACCES' || code === 'EPERM') unreadable.push(pid);
    else ctx.warn({ source: SOURCE, code: 'PW_WARN_REBOOT_PROC_UNREADABLE', message: errorMessage(err) });
    return null;
  }
  if (maps === null) return null;
  const files = deletedMappings(maps.toString('utf8'));
  if (files.length === 0) return null;
  const [comm, cgroup] = await Promise.all([
    readRootFile(ctx, `/proc/${pid}/comm`, 4096).catch(() => null),
    readRootFile(ctx, `/proc/${pid}/cgroup`, MAX_SMALL_FILE).catch(() => null),
  ]);
  const command = comm?.toString('utf8').trim() ?? '';
  return {
    pid,
    command: command === '' ? null : command.slice(0, LIMITS.name),
    unit: cgroup === null ? null : unitFromCgroup(cgroup.toString('utf8')),
    files,
  };
}

async function listPids(ctx: InventoryContext): Promise<number[]> {
  try {
    const names = await readdir(await resolveInRoot(ctx.root, '/proc'));
    return names.filter((n) => /^\d+$/.test(n)).map(Number).filter((n) => n > 0).sort((a, b) => a - b);
  } catch (err) {
    ctx.warn({ source: SOURCE, code: 'PW_WARN_REBOOT_PROC_UNREADABLE', message: `cannot list ${displayPath(ctx, '/proc')}: ${errorMessage(err)}` });
    return [];
  }
}

/** Every process that maps a deleted executable file; PID 1 included. */
export async function processesMappingDeletedFiles(ctx: InventoryContext): Promise<ProcessHit[]> {
  const pids = await listPids(ctx);
  const hits: ProcessHit[] = [];
  const unreadable: number[] = [];
  for (let i = 0; i < pids.length; i += PROC_CONCURRENCY) {
    const batch = await Promise.all(pids.slice(i, i + PROC_CONCURRENCY).map((pid) => scanProcess(ctx, pid, unreadable)));
    for (const h of batch) if (h !== null) hits.push(h);
  }
  if (unreadable.length > 0) {
    ctx.warn({
      source: SOURCE,
      code: 'PW_WARN_REBOOT_PROC_UNREADABLE',
      message: `permission denied reading the memory maps of ${unreadable.length} process(es) (PID ${listed(unreadable.map(String))}): reading another user's maps needs root or CAP_SYS_PTRACE, and a security module can refuse even root`,
    });
  }
  return hits;
}

function groupServices(hits: readonly ProcessHit[]): Reboot['services'] {
  const groups = new Map<string, { unit: string | null; pids: number[]; command: string | null; files: Set<string> }>();
  for (const h of hits) {
    const key = h.unit === null ? `pid:${h.pid}` : `unit:${h.unit}`;
    let g = groups.get(key);
    if (g === undefined) {
      g = { unit: h.unit, pids: [], command: h.command, files: new Set() };
      groups.set(key, g);
    }
    g.pids.push(h.pid);
    for (const f of h.files) g.files.add(f);
  }
  return [...groups.values()]
    .map((g) => ({ unit: g.unit, pids: g.pids.sort((a, b) => a - b), command: g.command, files: [...g.files].sort().slice(0, MAX_FILES_PER_SERVICE) }))
    .sort((a, b) => (a.unit ?? '\uffff').localeCompare(b.unit ?? '\uffff') || (a.pids[0] ?? 0) - (b.pids[0] ?? 0))
    .slice(0, LIMITS.list);
}

export async function readReboot(ctx: InventoryContext, kernel: Pick<Kernel, 'release' | 'installed'>, options: RebootOptions = {}): Promise<Reboot> {
  const live = options.live ?? ctx.root === '/';
  const reasons: Reboot['reasons'] = [];

  if (live) {
    const file = await rebootRequiredFile(ctx);
    if (file !== null) reasons.push({ kind: 'reboot-required-file', detail: file });
  }
  const kernelDetail = kernelUpdateDetail(kernel);
  if (kernelDetail !== null) reasons.push({ kind: 'kernel-update', detail: kernelDetail });
  if (!live) return { required: reasons.length > 0, reasons, services: [] };

  const nr = await needsRestarting(ctx);
  if (nr !== null) reasons.push({ kind: 'needs-restarting', detail: nr });

  const hits = await processesMappingDeletedFiles(ctx);
  const init = hits.find((h) => h.pid === 1);
  if (init !== undefined) {
    reasons.push({ kind: 'init-deleted-libraries', detail: `PID 1 (${init.command ?? 'init'}) maps deleted ${listed(init.files)}` });
  }
  const services = groupServices(hits.filter((h) => h.pid !== 1));
  return { required: reasons.length > 0, reasons, services };
}
