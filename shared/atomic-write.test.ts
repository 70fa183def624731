import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { writeFileAtomic } from './atomic-write.ts';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'pw-atomic-'));
  t.after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

describe('writeFileAtomic', () => {
  for (const mode of [0o600, 0o644, 0o640]) {
    it(`a new file gets mode ${mode.toString(8)} whatever the umask, and no temporary file stays`, async (t) => {
      const dir = tempDir(t);
      const old = process.umask(0o077);
      try {
        await writeFileAtomic(join(dir, 'f'), 'hello\n', mode);
      } finally {
        process.umask(old);
      }
      assert.equal(readFileSync(join(dir, 'f'), 'utf8'), 'hello\n');
      assert.equal(statSync(join(dir, 'f')).mode & 0o777, mode);
      assert.deepEqual(readdirSync(dir), ['f']);
    });
  }

  it('an existing file is replaced whole, mode included', async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'f'), 'old contents that are longer', { mode: 0o666 });
    await writeFileAtomic(join(dir, 'f'), Buffer.from('new'), 0o600);
    assert.equal(readFileSync(join(dir, 'f'), 'utf8'), 'new');
    assert.equal(statSync(join(dir, 'f')).mode & 0o777, 0o600);
  });

  it('a target that is a directory: the rename fails, the directory is intact and the temporary file is removed', async (t) => {
    const dir = tempDir(t);
    mkdirSync(join(dir, 'target'));
    writeFileSync(join(dir, 'target', 'inside'), 'x');
    await assert.rejects(writeFileAtomic(join(dir, 'target'), 'data', 0o600), { code: 'EISDIR' });
    assert.deepEqual(readdirSync(dir), ['target']);
    assert.deepEqual(readdirSync(join(dir, 'target')), ['inside']);
  });

  it('a missing directory is an ENOENT error, not a crash', async (t) => {
    const dir = tempDir(t);
    await assert.rejects(writeFileAtomic(join(dir, 'nope', 'f'), 'data', 0o600), { code: 'ENOENT' });
  });
});
