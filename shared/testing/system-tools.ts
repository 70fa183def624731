/**
 * The system tools that tests compare against, and the Debian package that brings each.
 * A test that needs one takes `{ skip: needs(TOOLS.rpm) }`: with the tool there, it runs;
 * without it, it is skipped with one line naming the package to install. `npm test` under
 * `CI=true` fails a run that skipped anything (scripts/test.ts), so CI, which installs every
 * package listed here (.ci/run), still proves everything. Tests only.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readdirSync, realpathSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';

export type Tool =
  | { kind: 'command'; name: string; debian: string }
  | { kind: 'python'; module: string; debian: string }
  | { kind: 'file'; path: string; debian: string }
  | { kind: 'postgres'; debian: string };

/** Python modules are looked up with the distribution's python3, as the tests run them. */
export const SYSTEM_PYTHON = '/usr/bin/python3';

export const TOOLS = {
  rpm: { kind: 'command', name: 'rpm', debian: 'rpm' },
  rpmbuild: { kind: 'command', name: 'rpmbuild', debian: 'rpm' },
  pythonRpm: { kind: 'python', module: 'rpm', debian: 'python3-rpm' },
  pythonApt: { kind: 'python', module: 'apt_pkg', debian: 'python3-apt' },
  prometheusClient: { kind: 'python', module: 'prometheus_client', debian: 'python3-prometheus-client' },
  needrestart: { kind: 'command', name: 'needrestart', debian: 'needrestart' },
  checkrestart: { kind: 'command', name: 'checkrestart', debian: 'debian-goodies' },
  zip: { kind: 'command', name: 'zip', debian: 'zip' },
  systemdAnalyze: { kind: 'command', name: 'systemd-analyze', debian: 'systemd' },
  chromium: { kind: 'file', path: '/usr/bin/chromium', debian: 'chromium' },
  openssl: { kind: 'command', name: 'openssl', debian: 'openssl' },
  dpkgDeb: { kind: 'command', name: 'dpkg-deb', debian: 'dpkg' },
  /** initdb and postgres (shared/testing/postgres.ts), and as root a `postgres` user to run them. */
  postgres: { kind: 'postgres', debian: 'postgresql' },
} as const satisfies Record<string, Tool>;

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function whereOnPath(name: string): string | undefined {
  // sbin too: tests run as root in CI, but a developer's PATH may lack it.
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin'];
  return dirs.find((d) => d !== '' && executable(join(d, name)));
}

function onPath(name: string): boolean {
  return whereOnPath(name) !== undefined;
}

/** Debian keeps each major version's server binaries off PATH, in /usr/lib/postgresql/N/bin. */
const DEBIAN_POSTGRES = '/usr/lib/postgresql';

/**
 * The directory holding initdb, postgres and pg_ctl: the newest of Debian's
 * /usr/lib/postgresql/N/bin, else the one an initdb on PATH resolves to; null without one.
 */
export function postgresBinDir(): string | null {
  const complete = (dir: string): boolean => ['initdb', 'postgres'].every((b) => executable(join(dir, b)));
  let versions: number[] = [];
  try {
    versions = readdirSync(DEBIAN_POSTGRES)
      .filter((v) => /^\d+$/.test(v))
      .map(Number)
      .sort((a, b) => b - a);
  } catch {
    // No Debian layout: try PATH.
  }
  for (const v of versions) {
    const dir = join(DEBIAN_POSTGRES, String(v), 'bin');
    if (complete(dir)) return dir;
  }
  const onPathDir = whereOnPath('initdb');
  if (onPathDir === undefined) return null;
  // Debian's /usr/bin/initdb-like links point into the versioned directory, where postgres is.
  const dir = dirname(realpathSync(join(onPathDir, 'initdb')));
  return complete(dir) ? dir : null;
}

/** The user a root test process runs PostgreSQL as (it refuses to run as root); Debian's package makes it. */
export const POSTGRES_USER = 'postgres';

/** uid and gid of `name`, or null when there is no such user. */
export function userIds(name: string): { uid: number; gid: number } | null {
  // One lookup through NSS, as id(1) does: name:password:uid:gid:...
  const entry = spawnSync('getent', ['passwd', name], { encoding: 'utf8', timeout: 10_000 });
  const [, , uid, gid] = entry.status === 0 ? entry.stdout.trim().split(':') : [];
  if (uid === undefined || gid === undefined || !/^\d+$/.test(uid) || !/^\d+$/.test(gid)) return null;
  return { uid: Number(uid), gid: Number(gid) };
}

function postgresUsable(): boolean {
  if (postgresBinDir() === null) return false;
  if (process.getuid?.() !== 0) return true;
  return onPath('runuser') && userIds(POSTGRES_USER) !== null;
}

const known = new Map<string, boolean>();

function present(tool: Tool): boolean {
  const key = JSON.stringify(tool);
  let there = known.get(key);
  if (there === undefined) {
    if (tool.kind === 'command') there = onPath(tool.name);
    else if (tool.kind === 'file') there = executable(tool.path);
    else if (tool.kind === 'postgres') there = postgresUsable();
    else there = executable(SYSTEM_PYTHON) && spawnSync(SYSTEM_PYTHON, ['-c', `import ${tool.module}`], { stdio: 'ignore', timeout: 30_000 }).status === 0;
    known.set(key, there);
  }
  return there;
}

function label(tool: Tool): string {
  if (tool.kind === 'command') return tool.name;
  if (tool.kind === 'file') return tool.path;
  if (tool.kind === 'postgres') return process.getuid?.() === 0 ? `PostgreSQL (initdb, postgres; a ${POSTGRES_USER} user and runuser, as root)` : 'PostgreSQL (initdb, postgres)';
  return `python3's ${tool.module}`;
}

/**
 * `false` when every tool is there, else the one-line skip reason naming what is missing
 * and the Debian packages that bring it. For node:test's `skip` option.
 */
export function needs(...tools: Tool[]): string | false {
  const missing = tools.filter((t) => !present(t));
  if (missing.length === 0) return false;
  const packages = [...new Set(missing.map((t) => t.debian))];
  return `needs ${missing.map(label).join(', ')}: apt-get install ${packages.join(' ')}`;
}
