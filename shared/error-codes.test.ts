/**
 * Every error and warning code the code can emit has a row in README.md's table (the
 * fastify habit): an operator who sees a code can look it up.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const root = join(import.meta.dirname, '..');

function sourceCodes(): Set<string> {
  const codes = new Set<string>();
  for (const dir of ['agent', 'collector', 'shared', 'scripts']) {
    for (const e of readdirSync(join(root, dir), { withFileTypes: true, recursive: true })) {
      if (!e.isFile() || !e.name.endsWith('.ts') || e.name.endsWith('.test.ts')) continue;
      for (const m of readFileSync(join(e.parentPath, e.name), 'utf8').matchAll(/'(PW_(?:ERR|WARN)_[A-Z0-9_]+)'/g)) codes.add(m[1] as string);
    }
  }
  return codes;
}

describe('README error table', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const documented = new Set([...readme.matchAll(/^\| `(PW_(?:ERR|WARN)_[A-Z0-9_]+)` \|/gm)].map((m) => m[1] as string));
  const codes = sourceCodes();
  it('finds the codes in the source', () => {
    assert.ok(codes.size > 20, `${codes.size} codes`);
  });
  for (const code of [...codes].sort()) {
    it(`documents ${code}`, () => {
      assert.ok(documented.has(code), `${code} has no row in README.md's error table`);
    });
  }
});
