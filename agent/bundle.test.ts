/**
 * dist/agent.js is one self-contained file that runs on the distributions' own Node 18
 * with no node_modules: copied alone into an empty directory, it must still inventory
 * this machine exactly as dpkg-query sees it.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { InventorySchema } from '../shared/protocol.ts';
import { ensureBuilt } from '../scripts/dist-fresh.ts';
import { NODE18_BIN } from '../scripts/node18-path.ts';

const root = join(import.meta.dirname, '..');
const bundle = join(root, 'dist', 'agent.js');

function installedCount(): number {
  const out = execFileSync('dpkg-query', ['-W', '-f=${db:Status-Abbrev}\\n'], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l[1] === 'i').length;
}

describe('dist/agent.js, copied alone into an empty directory', () => {
  ensureBuilt('agent');
  const dir = mkdtempSync(join(tmpdir(), 'pw-bundle-'));
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const lone = join(dir, 'agent.js');
  copyFileSync(bundle, lone);
  const runtimes: [string, string][] = [
    ['Node 18.19 (Debian 12, Ubuntu 24.04)', NODE18_BIN],
    [`this Node ${process.version}`, process.execPath],
  ];

  for (const [name, node] of runtimes) {
    it(`${name}: inventory --json equals dpkg-query's package count and passes the schema`, () => {
      assert.ok(existsSync(node), `${node} is missing: \`npm test\` fetches it (or \`npm run node18\`)`);
      const r = spawnSync(node, [lone, 'inventory', '--json'], { cwd: dir, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
      assert.ok(r.status === 0 || r.status === 3, `exit ${r.status ?? r.signal ?? '?'}: ${r.stderr}`);
      const inv = InventorySchema.parse(JSON.parse(r.stdout));
      assert.equal(inv.packages.length, installedCount());
      assert.equal(inv.host.ecosystem, 'Debian:12');
    });
  }

  const cli: [string, string[], number, RegExp][] = [
    ['summary without --json', ['inventory'], -1, /^host +\S+ .*\[Debian:12\]\npackages +\d+ deb\n/],
    ['version', ['version'], 0, /^\d+\.\d+\.\d+\n$/],
    ['unknown option is a usage error', ['inventory', '--bogus'], 2, /Unknown option '--bogus'/],
    ['unknown command is a usage error', ['frobnicate'], 2, /unknown command 'frobnicate'/],
    ['--root that is not a directory is a usage error', ['inventory', '--root', join(dir, 'nope')], 2, /is not a directory/],
  ];
  for (const [name, args, code, pattern] of cli) {
    it(name, () => {
      const r = spawnSync(NODE18_BIN, [lone, ...args], { cwd: dir, encoding: 'utf8' });
      if (code >= 0) assert.equal(r.status, code, r.stderr);
      else assert.ok(r.status === 0 || r.status === 3, r.stderr);
      assert.match(r.stdout + r.stderr, pattern);
    });
  }

  it('bundles every dependency: no require() of anything but Node built-ins', () => {
    const text = readFileSync(bundle, 'utf8');
    const required = new Set([...text.matchAll(/\brequire\(["']([^"']+)["']\)/g)].map((m) => m[1] as string));
    // Built-ins only (ws needs querystring, pino diagnostics_channel); ws's optional native addons are stubbed out by scripts/build.ts.
    const foreign = [...required].filter((m) => !isBuiltin(m));
    assert.deepEqual(foreign, []);
    assert.ok(!text.includes('.node"') || !/require\([^)]*\.node["']\)/.test(text), 'no native addon');
  });

});
