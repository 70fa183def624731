/**
 * A real Debian 12 root for the end-to-end patch test: `debootstrap --variant=minbase
 * bookworm` from deb.debian.org, so every package is at its point-release version and
 * bookworm-security has upgrades for some of them. Building one takes minutes, so the root
 * is kept as a tarball under .cache/debootstrap/ (or $PATCHWARDEN_DEBOOTSTRAP_CACHE) with a
 * sha256 beside it; a test extracts a fresh copy into a temp directory for each run.
 *
 * Test support only: never imported by the agent itself.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { onPath } from '../../agent/inventory/context.ts';

export const SUITE = 'bookworm';
export const MIRROR = 'http://deb.debian.org/debian';
export const SECURITY_MIRROR = 'http://deb.debian.org/debian-security';

/** Bumped when the recipe below changes, so an old cache is rebuilt rather than trusted. */
const RECIPE = 1;
const SOURCES_LIST = `deb ${MIRROR} ${SUITE} main\ndeb ${SECURITY_MIRROR} ${SUITE}-security main\n`;
/** minbase from a nearby mirror takes 1-3 minutes here; a slow mirror gets 15. */
const BUILD_TIMEOUT_MS = 15 * 60_000;
const TAR_TIMEOUT_MS = 5 * 60_000;
const ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C', DEBIAN_FRONTEND: 'noninteractive' };

export function defaultCacheDir(): string {
  return process.env.PATCHWARDEN_DEBOOTSTRAP_CACHE ?? join(import.meta.dirname, '..', '..', '.cache', 'debootstrap');
}

interface CacheMeta {
  recipe: number;
  suite: string;
  mirror: string;
  sha256: string;
  builtAt: string;
  buildSeconds: number;
}

export interface CachedRoot {
  tarball: string;
  /** Whether this call built it (false: reused an intact cache). */
  built: boolean;
  /** Time spent building (or, when reused, the original build's time, from the cache's record). */
  buildSeconds: number;
}

function run(file: string, args: readonly string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, env: ENV, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error === null) resolve(stdout);
      else reject(new Error(`${file} ${args.join(' ')} failed: ${error.message}\n${(stdout + stderr).slice(-4000)}`, { cause: error }));
    });
  });
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Why the end-to-end test cannot run here, or null when it can: it needs root (debootstrap
 * and chroot), debootstrap itself, and the Debian mirror.
 */
export async function debootstrapUnavailable(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'not running as root (debootstrap and chroot need root)';
  if (!(await onPath('debootstrap', ENV))) return 'debootstrap is not installed (apt-get install debootstrap)';
  if (!(await onPath('chroot', ENV))) return 'chroot is not installed';
  try {
    const response = await fetch(`${MIRROR}/dists/${SUITE}/InRelease`, { method: 'HEAD', signal: AbortSignal.timeout(10_000) });
    if (!response.ok) return `${MIRROR} answered ${response.status} for ${SUITE}'s InRelease`;
  } catch (err) {
    return `${MIRROR} is unreachable: ${(err as Error).message}`;
  }
  return null;
}

async function intactCache(dir: string): Promise<CacheMeta | null> {
  let meta: CacheMeta;
  try {
    meta = JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as CacheMeta;
  } catch {
    return null;
  }
  if (meta.recipe !== RECIPE || meta.suite !== SUITE || meta.mirror !== MIRROR) return null;
  try {
    return (await sha256File(join(dir, 'root.tar.gz'))) === meta.sha256 ? meta : null;
  } catch {
    return null;
  }
}

/**
 * The cached root's tarball, building it first when the cache is missing, from another
 * recipe, or does not match its checksum (an interrupted build, a truncated copy).
 */
export async function ensureDebianRoot(cacheDir = defaultCacheDir()): Promise<CachedRoot> {
  const tarball = join(cacheDir, 'root.tar.gz');
  const cached = await intactCache(cacheDir);
  if (cached !== null) return { tarball, built: false, buildSeconds: cached.buildSeconds };

  await mkdir(cacheDir, { recursive: true });
  const build = join(cacheDir, `build-${process.pid}`);
  await removeRoot(build);
  const started = process.hrtime.bigint();
  try {
    await run('debootstrap', ['--variant=minbase', SUITE, build, MIRROR], BUILD_TIMEOUT_MS);
    await writeFile(join(build, 'etc/apt/sources.list'), SOURCES_LIST);
    // Package lists are kept in the tarball: the test's `apt-get update` then fetches
    // only what changed since. Downloaded .debs are not.
    await run('chroot', [build, 'apt-get', 'update', '-q'], BUILD_TIMEOUT_MS);
    await run('chroot', [build, 'apt-get', 'clean'], TAR_TIMEOUT_MS);
    const partial = `${tarball}.partial-${process.pid}`;
    await run('tar', ['--numeric-owner', '--xattrs', '-czf', partial, '-C', build, '.'], TAR_TIMEOUT_MS);
    const buildSeconds = Number(process.hrtime.bigint() - started) / 1e9;
    const meta: CacheMeta = { recipe: RECIPE, suite: SUITE, mirror: MIRROR, sha256: await sha256File(partial), builtAt: new Date().toISOString(), buildSeconds };
    await rm(join(cacheDir, 'meta.json'), { force: true });
    await rename(partial, tarball);
    // meta.json last: its presence with a matching checksum is what "intact" means.
    await writeFile(join(cacheDir, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
    return { tarball, built: true, buildSeconds };
  } finally {
    await removeRoot(build);
  }
}

/** Mount points at or under `dir`, deepest first, from /proc/self/mounts (octal escapes decoded). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mounts', 'utf8');
  const points = text
    .split('\n')
    .map((line) => line.split(' ')[1])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return points.sort((a, b) => b.length - a.length);
}

/**
 * Unmounts whatever is still mounted inside a root (debootstrap mounts proc and sys during
 * its second stage and a killed run can leave them), then deletes it: a recursive delete
 * that crossed into a bind-mounted /proc or /sys would be deleting the host's.
 */
export async function removeRoot(dir: string): Promise<void> {
  for (const point of await mountsUnder(dir)) await run('umount', ['--lazy', point], TAR_TIMEOUT_MS);
  if ((await mountsUnder(dir)).length > 0) throw new Error(`${dir} still has mounts; not deleting it`);
  await rm(dir, { recursive: true, force: true });
}

/** Extracts the cached root into `dest` (an empty directory) with owners, modes and device nodes as built. */
export async function extractRoot(tarball: string, dest: string): Promise<void> {
  await mkdir(dest, { recursive: true });
  await run('tar', ['--numeric-owner', '--xattrs', '-xzpf', tarball, '-C', dest], TAR_TIMEOUT_MS);
  // The cached copy carries the resolver of the machine that built it. Removed first: a
  // symlink there (to /run/...) would make the write land on this host's file.
  await rm(join(dest, 'etc/resolv.conf'), { force: true });
  await writeFile(join(dest, 'etc/resolv.conf'), await readFile('/etc/resolv.conf'));
}
