import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { mkfifo } from './testing/fifo.ts';
import { withRegularFile } from './regular-file.ts';

describe('withRegularFile: anything but a regular file is refused before it is read', () => {
  const cases: { name: string; make: (d: string) => Promise<string>; code: string | null; message?: RegExp }[] = [
    { name: 'a regular file', make: async (d) => (await writeFile(join(d, 'a.pwreport'), 'x'), join(d, 'a.pwreport')), code: null },
    { name: 'a symbolic link to a regular file', make: async (d) => (await writeFile(join(d, 't'), 'x'), await symlink('t', join(d, 'l.pwreport')), join(d, 'l.pwreport')), code: null },
    { name: 'a FIFO with no writer', make: (d) => mkfifo(join(d, 'f.pwreport')), code: 'PW_ERR_NOT_REGULAR_FILE', message: /is a FIFO, not a regular file/ },
    { name: 'a symbolic link to a FIFO', make: async (d) => (await mkfifo(join(d, 'f')), await symlink('f', join(d, 'lf.pwinstr')), join(d, 'lf.pwinstr')), code: 'PW_ERR_NOT_REGULAR_FILE' },
    { name: 'a directory named like a file', make: async (d) => (await mkdir(join(d, 'x.pwreport')), join(d, 'x.pwreport')), code: 'PW_ERR_NOT_REGULAR_FILE', message: /is a directory/ },
    { name: 'a character device (/dev/zero, never ends)', make: () => Promise.resolve('/dev/zero'), code: 'PW_ERR_NOT_REGULAR_FILE', message: /character device/ },
    { name: 'a missing path', make: (d) => Promise.resolve(join(d, 'missing')), code: 'PW_ERR_SOURCE_UNAVAILABLE', message: /ENOENT/ },
  ];
  for (const c of cases) {
    it(`${c.name}: ${c.code ?? 'read'}`, { timeout: 10_000 }, async (t) => {
      const d = await mkdtemp(join(tmpdir(), 'pw-regular-'));
      t.after(() => rm(d, { recursive: true, force: true }));
      const path = await c.make(d);
      const read = withRegularFile(path, async (h) => (await h.readFile()).toString());
      if (c.code === null) assert.equal(await read, 'x');
      else await assert.rejects(read, (e: unknown) => (e as { code?: string }).code === c.code && (c.message === undefined || c.message.test((e as Error).message)));
    });
  }
});
