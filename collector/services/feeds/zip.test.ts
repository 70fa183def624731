import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FeedFormatError, InputTooLargeError } from '../../../shared/errors.ts';
import { buildZip } from '../../../shared/testing/feed-fixtures.ts';
import { crc32, isUnsafeEntryName, ZipArchive } from './zip.ts';
import { needs, TOOLS } from '../../../shared/testing/system-tools.ts';

const run = promisify(execFile);
const SAMPLES = join(import.meta.dirname, '../../../../shared/data/osv');
const SAMPLE_FILES = ['samples-osv.dev/DSA-3029-1.json', 'samples-osv.dev/UBUNTU-CVE-2025-38094.json', 'samples/ALSA-2026_A009.json'];

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-zip-'));
  for (const f of SAMPLE_FILES) await copyFile(join(SAMPLES, f), join(dir, f.split('/').pop() ?? f));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function readAll(path: string): Promise<Map<string, Buffer>> {
  const zip = await ZipArchive.open(path);
  try {
    const out = new Map<string, Buffer>();
    for (const e of zip.entries) out.set(e.name, await zip.read(e));
    return out;
  } finally {
    await zip.close();
  }
}

function isCode(cls: typeof FeedFormatError | typeof InputTooLargeError, code: string) {
  return (e: unknown) => e instanceof cls && e.code === code;
}

describe('crc32', () => {
  const CASES: [string, number][] = [
    ['', 0],
    ['123456789', 0xcbf43926],
    ['The quick brown fox jumps over the lazy dog', 0x414fa339],
  ];
  for (const [input, expected] of CASES) {
    it(`${JSON.stringify(input)} -> ${expected.toString(16)}`, () => {
      assert.equal(crc32(Buffer.from(input)), expected);
    });
  }
});

describe('isUnsafeEntryName', () => {
  const CASES: [string, boolean][] = [
    ['DSA-3029-1.json', false],
    ['debian/DSA-3029-1.json', false],
    ['a..b.json', false],
    ['../../etc/passwd', true],
    ['a/../../b', true],
    ['..\\..\\windows\\system.ini', true],
    ['/etc/passwd', true],
    ['\\share\\x', true],
    ['C:/x.json', true],
    ['nul\0byte', true],
    ['', true],
  ];
  for (const [name, expected] of CASES) {
    it(`${JSON.stringify(name)} -> ${expected}`, () => {
      assert.equal(isUnsafeEntryName(name), expected);
    });
  }
});

describe('ZipArchive with archives made by Info-ZIP zip from the real OSV samples', { skip: needs(TOOLS.zip) }, () => {
  const VARIANTS: [string, string[]][] = [
    ['deflate', ['-q', '-X']],
    ['stored (-0)', ['-q', '-X', '-0']],
    ['forced ZIP64 (-fz)', ['-q', '-X', '-fz']],
  ];
  for (const [label, flags] of VARIANTS) {
    it(`${label}: every entry reads back byte for byte`, async () => {
      const zipPath = join(dir, `${label.replace(/\W/g, '_')}.zip`);
      const names = SAMPLE_FILES.map((f) => f.split('/').pop() ?? f);
      await run('zip', [...flags, zipPath, ...names], { cwd: dir, timeout: 30_000, maxBuffer: 1 << 20 });
      const got = await readAll(zipPath);
      assert.deepEqual([...got.keys()].sort(), [...names].sort());
      for (const n of names) assert.deepEqual(got.get(n), await readFile(join(dir, n)));
    });
  }
});

describe('ZipArchive refuses hostile and broken archives', () => {
  const json = Buffer.from('{"id":"DSA-3029-1"}');

  it('truncated: the last 10 bytes cut off', async () => {
    const whole = buildZip([{ name: 'a.json', data: json }]);
    const p = join(dir, 'cut10.zip');
    await writeFile(p, whole.subarray(0, whole.length - 10));
    await assert.rejects(ZipArchive.open(p), isCode(FeedFormatError, 'PW_ERR_FEED_FORMAT'));
  });

  it('truncated: the real zip cut in half', { skip: needs(TOOLS.zip) }, async () => {
    const p = join(dir, 'half.zip');
    await run('zip', ['-q', '-X', p, 'ALSA-2026_A009.json'], { cwd: dir, timeout: 30_000, maxBuffer: 1 << 20 });
    const whole = await readFile(p);
    await writeFile(p, whole.subarray(0, whole.length >> 1));
    await assert.rejects(ZipArchive.open(p), isCode(FeedFormatError, 'PW_ERR_FEED_FORMAT'));
  });

  it('not a zip at all (a JSON file)', async () => {
    await assert.rejects(ZipArchive.open(join(dir, 'DSA-3029-1.json')), isCode(FeedFormatError, 'PW_ERR_FEED_FORMAT'));
  });

  for (const name of ['../../etc/passwd', '/etc/passwd', 'ok/../../../root/.ssh/authorized_keys', '..\\..\\boot.ini', 'C:/Windows/x.json']) {
    it(`path traversal: entry ${JSON.stringify(name)} refuses the whole archive`, async () => {
      const p = join(dir, 'traversal.zip');
      await writeFile(p, buildZip([{ name: 'good.json', data: json }, { name, data: json }]));
      await assert.rejects(ZipArchive.open(p), (e: unknown) => e instanceof FeedFormatError && /path traversal/.test(e.message));
    });
  }

  it('bad CRC: read throws, the good entry before it reads fine', async () => {
    const p = join(dir, 'crc.zip');
    await writeFile(p, buildZip([{ name: 'good.json', data: json }, { name: 'bad.json', data: json, crc32: 0x12345678 }]));
    const zip = await ZipArchive.open(p);
    try {
      const [good, bad] = zip.entries;
      assert.deepEqual(await zip.read(good!), json);
      await assert.rejects(zip.read(bad!), (e: unknown) => e instanceof FeedFormatError && /CRC-32/.test(e.message));
    } finally {
      await zip.close();
    }
  });

  it('zip bomb by declared size: 2 MiB of zeros over a 1 MiB entry limit', async () => {
    const p = join(dir, 'declared.zip');
    await writeFile(p, buildZip([{ name: 'zeros.json', data: Buffer.alloc(2 << 20) }]));
    await assert.rejects(ZipArchive.open(p, { maxEntryBytes: 1 << 20 }), isCode(InputTooLargeError, 'PW_ERR_INPUT_TOO_LARGE'));
  });

  it('zip bomb by lying header: 4 MiB of zeros declared as 100 bytes', async () => {
    const p = join(dir, 'liar.zip');
    await writeFile(p, buildZip([{ name: 'zeros.json', data: Buffer.alloc(4 << 20), uncompressedSize: 100 }]));
    const zip = await ZipArchive.open(p);
    try {
      await assert.rejects(zip.read(zip.entries[0]!), isCode(InputTooLargeError, 'PW_ERR_INPUT_TOO_LARGE'));
    } finally {
      await zip.close();
    }
  });

  it('a compressed size over the entry limit is refused before anything is allocated', async () => {
    const p = join(dir, 'bigcompressed.zip');
    // 64 KiB of noise deflates to about 64 KiB; the header claims 10 KiB, under the 16 KiB limit.
    await writeFile(p, buildZip([{ name: 'noise.json', data: randomBytes(64 * 1024), uncompressedSize: 10 * 1024 }]));
    await assert.rejects(ZipArchive.open(p, { maxEntryBytes: 16 * 1024 }), (e: unknown) => e instanceof InputTooLargeError && /compressed bytes/.test(e.message));
  });

  it('zip bomb by ratio: a declared size deflate cannot reach from its compressed size', async () => {
    const p = join(dir, 'ratio.zip');
    await writeFile(p, buildZip([{ name: 'x.json', data: json, uncompressedSize: 50 * 1024 * 1024 }]));
    await assert.rejects(ZipArchive.open(p), isCode(InputTooLargeError, 'PW_ERR_INPUT_TOO_LARGE'));
  });

  it('overlapping entries: two central records for one local header', async () => {
    const one = buildZip([{ name: 'a.json', data: json }]);
    // Duplicate the single central record so both point at offset 0.
    const eocd = one.subarray(one.length - 22);
    const cdSize = eocd.readUInt32LE(12);
    const cdOffset = eocd.readUInt32LE(16);
    const cd = one.subarray(cdOffset, cdOffset + cdSize);
    const end = Buffer.from(eocd);
    end.writeUInt16LE(2, 8);
    end.writeUInt16LE(2, 10);
    end.writeUInt32LE(cdSize * 2, 12);
    const p = join(dir, 'overlap.zip');
    await writeFile(p, Buffer.concat([one.subarray(0, cdOffset), cd, cd, end]));
    await assert.rejects(ZipArchive.open(p), (e: unknown) => e instanceof FeedFormatError && /overlapping/.test(e.message));
  });

  it('corrupt deflate data', async () => {
    const good = buildZip([{ name: 'a.json', data: Buffer.from(JSON.stringify({ pad: 'x'.repeat(5000) })) }]);
    const bad = Buffer.from(good);
    bad.fill(0xff, 40, 60);
    const p = join(dir, 'corrupt.zip');
    await writeFile(p, bad);
    const zip = await ZipArchive.open(p);
    try {
      await assert.rejects(zip.read(zip.entries[0]!), isCode(FeedFormatError, 'PW_ERR_FEED_FORMAT'));
    } finally {
      await zip.close();
    }
  });

  it('encrypted entry is marked unsupported, not read', async () => {
    const p = join(dir, 'enc.zip');
    await writeFile(p, buildZip([{ name: 'a.json', data: json, flags: 0x1 }]));
    const zip = await ZipArchive.open(p);
    try {
      const entry = zip.entries[0]!;
      assert.equal(entry.unsupported, 'encrypted');
      await assert.rejects(zip.read(entry), isCode(FeedFormatError, 'PW_ERR_FEED_FORMAT'));
    } finally {
      await zip.close();
    }
  });
});
