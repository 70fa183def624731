/**
 * `npm test`: type check, lint, build, then every `*.test.ts` under node:test.
 * Node 20's `--test` does not expand globs, so the files are collected here.
 * `npm test -- FILE...` runs only the given test files (no type check, lint or build).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = join(import.meta.dirname, '..');
const roots = ['agent', 'collector', 'shared', 'scripts', 'systemd'];

function collect(dir: string, out: string[]): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) collect(path, out);
    else if (entry.name.endsWith('.test.ts')) out.push(relative(root, path));
  }
}

function step(name: string, cmd: string, args: string[]): void {
  process.stdout.write(`# ${name}\n`);
  execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });
}

const given = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const onlyUnit = process.argv.includes('--only-unit');
let files: string[] = [];
if (given.length > 0) {
  files = given;
} else {
  for (const r of roots) collect(join(root, r), files);
  files.sort();
  if (!onlyUnit) {
    const bin = join(root, 'node_modules', '.bin');
    try {
      step('type check', join(bin, 'tsc'), ['-p', 'tsconfig.json']);
      step('lint', join(bin, 'eslint'), ['--max-warnings', '0', '.']);
      step('build', process.execPath, ['--import', 'tsx', 'scripts/build.ts']);
    } catch {
      process.exit(1);
    }
  }
}

const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', ...files], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, PATCHWARDEN_TEST: '1' },
});
process.exit(result.status ?? 1);
