/**
 * Builds dist/agent.js (one self-contained CommonJS file: every dependency bundled, no
 * native module, Node 18+) and dist/collector.js (better-sqlite3 stays in node_modules).
 *
 * Why CommonJS when the sources are ESM: operators copy agent.js alone onto servers whose
 * Node is 18 (Debian 12, Ubuntu 24.04). Node 18 treats a lone .js file as CommonJS and has
 * no ESM syntax detection, so an ESM bundle would fail there. dist/package.json pins
 * `"type": "commonjs"` so the repo's own `"type": "module"` does not apply inside dist/.
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'tsup';

const root = join(import.meta.dirname, '..');
const outDir = join(root, 'dist');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };

const common = {
  format: 'cjs' as const,
  platform: 'node' as const,
  outDir,
  sourcemap: false,
  clean: false,
  silent: true,
  splitting: false,
  outExtension: () => ({ js: '.js' }),
  banner: { js: '#!/usr/bin/env node' },
};

mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'package.json'), '{ "type": "commonjs" }\n');

await build({
  ...common,
  entry: { agent: join(root, 'agent/main.ts') },
  target: 'node18',
  noExternal: [/.*/],
  minify: true,
  esbuildPlugins: [
    {
      // ws tries require('bufferutil') and require('utf-8-validate') (optional native
      // addons) inside try/catch and falls back to plain JS. Left as they are, the bundle
      // would require packages that never exist beside agent.js (and would load a stray
      // global copy); resolved to a module that throws, ws always takes its JS path.
      name: 'without-ws-native-addons',
      setup(b) {
        b.onResolve({ filter: /^(bufferutil|utf-8-validate)$/ }, (args) => ({ path: args.path, namespace: 'absent-addon' }));
        b.onLoad({ filter: /.*/, namespace: 'absent-addon' }, (args) => ({ contents: `throw new Error(${JSON.stringify(`${args.path} is not bundled`)});`, loader: 'js' }));
      },
    },
  ],
});

await build({
  ...common,
  entry: { collector: join(root, 'collector/main.ts') },
  target: 'node20',
  // Native modules stay in node_modules. bufferutil is ws's C unmasking: every frame an
  // agent sends is masked, and unmasking a 240 KB report in JS was the collector's largest
  // cost for full reports (scripts/bench-fleet.ts profile).
  external: ['better-sqlite3', 'bufferutil'],
  noExternal: [/^(?!(better-sqlite3|bufferutil)$).*/],
});

for (const f of ['agent.js', 'collector.js']) chmodSync(join(outDir, f), 0o755);
process.stdout.write(`built dist/agent.js and dist/collector.js (${version})\n`);
