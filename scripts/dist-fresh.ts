/**
 * Builds dist/ when an output is missing or older than the sources it is made from, and
 * says why. The bundle tests and the benchmarks use it, so they never run a stale build.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const INPUTS: Readonly<Record<'agent' | 'collector', readonly string[]>> = {
  agent: ['agent', 'shared'],
  collector: ['collector', 'shared'],
};
const BUILD_FILES = ['scripts/build.ts', 'package.json', 'package-lock.json'];

/** Newest non-test source of the given output. */
function newestSource(dirs: readonly string[]): { path: string; mtimeMs: number } {
  let newest = { path: '', mtimeMs: 0 };
  const consider = (path: string): void => {
    const m = statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? 0;
    if (m > newest.mtimeMs) newest = { path, mtimeMs: m };
  };
  for (const f of BUILD_FILES) consider(join(ROOT, f));
  for (const d of dirs) {
    for (const e of readdirSync(join(ROOT, d), { recursive: true, withFileTypes: true })) {
      if (e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) consider(join(e.parentPath, e.name));
    }
  }
  return newest;
}

/** dist/<which>.js, rebuilt first when stale; `built` says why it was rebuilt, or null. */
export function ensureBuilt(which: 'agent' | 'collector'): { path: string; built: string | null } {
  const path = join(ROOT, 'dist', `${which}.js`);
  const builtAt = statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? null;
  const src = newestSource(INPUTS[which]);
  if (builtAt !== null && builtAt >= src.mtimeMs) return { path, built: null };
  const why = builtAt === null ? `dist/${which}.js was missing` : `${relative(ROOT, src.path)} is newer than dist/${which}.js`;
  const t = performance.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'build.ts')], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
    timeout: 300_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  if (r.error !== undefined || r.status !== 0) {
    throw new Error(`build failed (${r.error?.message ?? `exit ${r.status ?? r.signal ?? '?'}`}): ${r.stderr}`);
  }
  return { path, built: `rebuilt first in ${Math.round(performance.now() - t)} ms: ${why}` };
}
