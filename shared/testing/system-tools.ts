/**
 * The system tools that tests compare against, and the Debian package that brings each.
 * A test that needs one takes `{ skip: needs(TOOLS.rpm) }`: with the tool there, it runs;
 * without it, it is skipped with one line naming the package to install. `npm test` under
 * `CI=true` fails a run that skipped anything (scripts/test.ts), so CI, which installs every
 * package listed here (.ci/run), still proves everything. Tests only.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export type Tool =
  | { kind: 'command'; name: string; debian: string }
  | { kind: 'python'; module: string; debian: string }
  | { kind: 'file'; path: string; debian: string };

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
} as const satisfies Record<string, Tool>;

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string): boolean {
  // sbin too: tests run as root in CI, but a developer's PATH may lack it.
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin'];
  return dirs.some((d) => d !== '' && executable(join(d, name)));
}

const known = new Map<string, boolean>();

function present(tool: Tool): boolean {
  const key = JSON.stringify(tool);
  let there = known.get(key);
  if (there === undefined) {
    if (tool.kind === 'command') there = onPath(tool.name);
    else if (tool.kind === 'file') there = executable(tool.path);
    else there = executable(SYSTEM_PYTHON) && spawnSync(SYSTEM_PYTHON, ['-c', `import ${tool.module}`], { stdio: 'ignore', timeout: 30_000 }).status === 0;
    known.set(key, there);
  }
  return there;
}

function label(tool: Tool): string {
  if (tool.kind === 'command') return tool.name;
  if (tool.kind === 'file') return tool.path;
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
