import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { requireDirectory } from './cli-args.ts';

const dir = mkdtempSync(join(tmpdir(), 'pw-cli-args-'));
writeFileSync(join(dir, 'file'), '');
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('requireDirectory', () => {
  it('a directory passes', async () => {
    await requireDirectory('--out', dir);
  });
  const refused: [string, string][] = [
    ['a file', join(dir, 'file')],
    ['a path that does not exist', join(dir, 'missing')],
    ['a path under a file', join(dir, 'file', 'x')],
    ['shell metacharacters, taken as a name', join(dir, '$(reboot); rm -rf ~')],
  ];
  for (const [name, path] of refused) {
    it(`${name}: PW_ERR_USAGE naming the flag and the path`, async () => {
      await assert.rejects(requireDirectory('--out', path), { code: 'PW_ERR_USAGE', message: `--out ${path} is not a directory` });
    });
  }
});
