/**
 * The running kernel, the package that provides it, and every kernel installed on disk.
 *
 * The running kernel is what `uname -r`/`uname -v` report (os.release()/os.version()). For a
 * mounted root (`ctx.root !== '/'`) the kernel running here is the host's, not the image's:
 * the caller passes `running` (the CLI's `--kernel-release`), and without it the release is
 * left empty with a warning rather than borrowed from the host.
 *
 * The package is found by the distribution's own naming, never guessed from a similar
 * version: a running kernel that no installed package provides (a hand-built kernel, the
 * kernel a hypervisor injects into a VM) has `package: null`, and the collector raises no
 * package findings for it.
 *
 * `installed` lists each kernel once per release, merged from the package database and from
 * /boot/vmlinu[xz]-<release> and /lib/modules/<release> (and /usr/lib/modules); it is sorted
 * newest first by the distribution's version rules, and readReboot relies on that order.
 */
import { lstat, readdir, stat } from 'node:fs/promises';
import { release as osRelease, version as osVersion } from 'node:os';
import { compareVersions, type VersionScheme } from '../../shared/versions/index.ts';
import { errorMessage } from '../../shared/errors.ts';
import {
  type InstalledKernel,
  type Kernel,
  type KernelPackage,
  LIMITS,
  type Package,
  type PackageFormat,
  VERSION,
} from '../../shared/protocol.ts';
import { displayPath, type InventoryContext, resolveInRoot } from './context.ts';

const SOURCE = 'kernel';
const MAX_INSTALLED = 1000;

export interface RunningKernel {
  /** `uname -r`, e.g. `6.1.0-18-amd64`, `5.14.0-427.13.1.el9_4.x86_64`, `6.6.58-0-lts`. */
  release: string;
  /** `uname -v`, e.g. `#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)`. */
  version: string;
}

interface PackagedKernel {
  pkg: Package;
  release: string;
  /** Lower wins when two packages claim one release (RHEL installs `kernel` and `kernel-core`). */
  rank: number;
}

/** A kernel release as a directory or file name: starts with a digit, no path tricks. */
function isRelease(s: string): boolean {
  return s.length <= LIMITS.name && /^\d/.test(s) && VERSION.test(s) && !s.includes('..');
}

/**
 * Debian and Ubuntu: `linux-image-<release>` (Debian signs it; the unsigned build is
 * `linux-image-<release>-unsigned`, Ubuntu's is `linux-image-unsigned-<release>`).
 * Meta packages (`linux-image-amd64`), debug symbols (`-dbg`) and the signing template
 * are not kernels.
 */
function debKernel(pkg: Package): PackagedKernel | null {
  const m = /^linux-image-(unsigned-)?(.+?)(-unsigned)?$/.exec(pkg.name);
  const release = m?.[2];
  if (m === null || release === undefined || !isRelease(release) || release.endsWith('-dbg')) return null;
  return { pkg, release, rank: m[1] === undefined && m[3] === undefined ? 0 : 1 };
}

/**
 * Red Hat family: the release is `version-release.arch` of the package that ships vmlinuz
 * (`kernel-core` since EL8, `kernel` before, `kernel-uek` on Oracle Linux), plus the
 * variant suffix RHEL 9 appends (`+rt`, `+debug`, `+64k`).
 */
const RPM_KERNELS: ReadonlyMap<string, { suffix: string; rank: number }> = new Map([
  ['kernel-core', { suffix: '', rank: 0 }],
  ['kernel', { suffix: '', rank: 1 }],
  ['kernel-uek-core', { suffix: '', rank: 2 }],
  ['kernel-uek', { suffix: '', rank: 3 }],
  ['kernel-rt-core', { suffix: '+rt', rank: 4 }],
  ['kernel-debug-core', { suffix: '+debug', rank: 5 }],
  ['kernel-64k-core', { suffix: '+64k', rank: 6 }],
]);

function rpmKernel(pkg: Package): PackagedKernel | null {
  const kind = RPM_KERNELS.get(pkg.name);
  if (kind === undefined) return null;
  // uname -r carries no epoch.
  const vr = pkg.version.replace(/^\d+:/, '');
  const release = `${vr}.${pkg.arch}${kind.suffix}`;
  return isRelease(release) ? { pkg, release, rank: kind.rank } : null;
}

/**
 * Alpine: `linux-<flavor>` at `<pkgver>-r<pkgrel>` installs /lib/modules/<pkgver>-<pkgrel>-<flavor>
 * (the kernel APKBUILDs set the local version to `-$pkgrel-$_flavor`), so 6.6.58-r0 of
 * linux-lts runs as 6.6.58-0-lts.
 */
const APK_FLAVORS = new Set(['lts', 'virt', 'edge', 'stable', 'rpi', 'rpi2', 'rpi4']);

function apkKernel(pkg: Package): PackagedKernel | null {
  const m = /^linux-([a-z0-9]+)$/.exec(pkg.name);
  const flavor = m?.[1];
  if (flavor === undefined || !APK_FLAVORS.has(flavor)) return null;
  const v = /^(.+)-r(\d+)$/.exec(pkg.version);
  if (v?.[1] === undefined || v[2] === undefined) return null;
  const release = `${v[1]}-${v[2]}-${flavor}`;
  return isRelease(release) ? { pkg, release, rank: 0 } : null;
}

function packagedKernels(packages: readonly Package[], format: PackageFormat | null): PackagedKernel[] {
  const pick = format === 'deb' ? debKernel : format === 'rpm' ? rpmKernel : format === 'apk' ? apkKernel : null;
  if (pick === null) return [];
  const out: PackagedKernel[] = [];
  for (const p of packages) {
    const k = pick(p);
    if (k !== null) out.push(k);
  }
  return out;
}

/**
 * Debian's kernel images are built by `linux-signed-<arch>` (or `linux` for the unsigned
 * ones), Ubuntu's by `linux-signed[-<flavour>]`; the security trackers and OSV list the
 * kernel under the unsigned source (`linux`, `linux-hwe-6.8`), so that is the source
 * reported. The signed wrapper's own version (`6.1.192+2`) is not a kernel version, so the
 * image's version (`6.1.192-2`, equal to `linux`'s) is reported.
 */
export function kernelSourceName(format: PackageFormat | null, source: string): string {
  if (format !== 'deb') return source;
  if (/^linux-signed-(amd64|arm64|i386|armhf|armel|ppc64el|s390x|riscv64|mips64el)$/.test(source)) return 'linux';
  const m = /^linux-signed(-.+)?$/.exec(source);
  return m === null ? source : `linux${m[1] ?? ''}`;
}

async function listDir(ctx: InventoryContext, path: string): Promise<string[]> {
  try {
    return await readdir(await resolveInRoot(ctx.root, path));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') {
      ctx.warn({ source: SOURCE, code: 'PW_WARN_KERNEL_UNREADABLE', message: `cannot list ${displayPath(ctx, path)}: ${errorMessage(err)}` });
    }
    return [];
  }
}

async function exists(ctx: InventoryContext, path: string, want: 'file' | 'dir' | 'any'): Promise<boolean> {
  try {
    const real = await resolveInRoot(ctx.root, path);
    const info = await stat(real).catch(async () => lstat(real));
    return want === 'any' || (want === 'file' ? info.isFile() : info.isDirectory());
  } catch {
    return false;
  }
}

/** `/boot/vmlinuz-<release>` (and `vmlinux-` on ppc64/s390x). Alpine's `vmlinuz-lts` names a flavor, not a release. */
async function bootReleases(ctx: InventoryContext): Promise<string[]> {
  const out: string[] = [];
  for (const name of await listDir(ctx, '/boot')) {
    const m = /^vmlinu[xz]-(.+)$/.exec(name);
    const release = m?.[1];
    // RHEL's rescue image (vmlinuz-0-rescue-<machine-id>) is a copy of an older kernel.
    if (release === undefined || !isRelease(release) || release.includes('-rescue-') || release.endsWith('.old')) continue;
    if (await exists(ctx, `/boot/${name}`, 'file')) out.push(release);
  }
  return out;
}

/**
 * `/lib/modules/<release>` and `/usr/lib/modules/<release>`, but only trees a kernel package
 * still owns: removing a kernel leaves directories behind (DKMS builds, `updates/`), and a
 * leftover must not pass for an installed kernel. Files only the kernel package ships mark a
 * real one.
 */
async function moduleReleases(ctx: InventoryContext): Promise<string[]> {
  const out: string[] = [];
  for (const base of ['/lib/modules', '/usr/lib/modules']) {
    for (const release of await listDir(ctx, base)) {
      if (!isRelease(release)) continue;
      const dir = `${base}/${release}`;
      for (const marker of ['vmlinuz', 'kernel', 'modules.builtin', 'modules.order']) {
        if (await exists(ctx, `${dir}/${marker}`, 'any')) {
          out.push(release);
          break;
        }
      }
    }
  }
  return out;
}

function schemeForReleases(format: PackageFormat | null): VersionScheme {
  // Release strings are not package versions; like needrestart (nr_kernel_vcmp_rpm on Red Hat,
  // a dpkg-like order elsewhere) and grub, order them with rpm rules on rpm systems and dpkg
  // rules everywhere else. Alpine's 6.6.58-0-lts is not an apk version but is a valid dpkg one.
  return format === 'rpm' ? 'rpm' : 'deb';
}

/** -1/0/1: `a` older/same/newer than `b`. Package versions first, release strings second. */
export function compareInstalledKernels(format: PackageFormat | null, a: InstalledKernel, b: InstalledKernel): -1 | 0 | 1 {
  if (format !== null && a.version !== null && b.version !== null) {
    try {
      const c = compareVersions(format, a.version, b.version);
      if (c !== 0) return c;
    } catch {
      // A version the package manager itself would refuse: fall through to the releases.
    }
  }
  return compareVersions(schemeForReleases(format), a.release, b.release);
}

function sortNewestFirst(ctx: InventoryContext, format: PackageFormat | null, kernels: InstalledKernel[]): InstalledKernel[] {
  try {
    return [...kernels].sort((a, b) => compareInstalledKernels(format, b, a));
  } catch (err) {
    ctx.warn({ source: SOURCE, code: 'PW_WARN_KERNEL_UNORDERED', message: `installed kernels left unsorted: ${errorMessage(err)}` });
    return kernels;
  }
}

function runningKernel(ctx: InventoryContext, running: RunningKernel | undefined): RunningKernel {
  if (running !== undefined) return running;
  if (ctx.root === '/') return { release: osRelease(), version: osVersion() };
  ctx.warn({
    source: SOURCE,
    code: 'PW_WARN_KERNEL_NOT_RUNNING',
    message: `${ctx.root} is a mounted root: the kernel running here is the host's, not its own; pass --kernel-release to name the kernel it runs`,
  });
  return { release: '', version: '' };
}

export async function readKernel(
  ctx: InventoryContext,
  packages: Package[],
  format: PackageFormat | null,
  running?: RunningKernel,
): Promise<Omit<Kernel, 'livepatch'>> {
  const run = runningKernel(ctx, running);
  const packaged = packagedKernels(packages, format).sort((a, b) => a.rank - b.rank);

  const byRelease = new Map<string, InstalledKernel>();
  for (const k of packaged) {
    if (!byRelease.has(k.release)) byRelease.set(k.release, { name: k.pkg.name, version: k.pkg.version, release: k.release });
  }
  const [boot, modules] = await Promise.all([bootReleases(ctx), moduleReleases(ctx)]);
  for (const release of [...boot, ...modules]) {
    if (!byRelease.has(release)) byRelease.set(release, { name: null, version: null, release });
  }

  let installed = sortNewestFirst(ctx, format, [...byRelease.values()]);
  if (installed.length > MAX_INSTALLED) {
    ctx.warn({ source: SOURCE, code: 'PW_WARN_KERNEL_TRUNCATED', message: `${installed.length} installed kernels, kept the newest ${MAX_INSTALLED}` });
    installed = installed.slice(0, MAX_INSTALLED);
  }

  const provider = run.release === '' ? undefined : packaged.find((k) => k.release === run.release);
  const pkg: KernelPackage | null =
    provider === undefined
      ? null
      : { name: provider.pkg.name, source: kernelSourceName(format, provider.pkg.source), version: provider.pkg.version };

  return {
    release: run.release.slice(0, LIMITS.name),
    version: run.version.slice(0, LIMITS.text),
    package: pkg,
    installed,
  };
}
