/**
 * `npm start`: builds dist/ and prints this machine's inventory with the bundled agent,
 * exactly as an operator would run it. (The collector service takes over `npm start`
 * when it exists: issue 4.)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
execFileSync(process.execPath, ['--import', 'tsx', join(root, 'scripts', 'build.ts')], { cwd: root, stdio: 'inherit' });
const r = spawnSync(process.execPath, [join(root, 'dist', 'agent.js'), 'inventory', ...process.argv.slice(2)], { stdio: 'inherit' });
// 3 = partial inventory: the warnings above say what could not be read; not a failure to start.
process.exit(r.status === 3 ? 0 : (r.status ?? 1));
