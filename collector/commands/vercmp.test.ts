import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { compareVersions, type VersionScheme } from '../../shared/versions/index.ts';
import { readTsvVectors, readVersionList, seededRandom } from '../../shared/testing/version-vectors.ts';
import { vercmp } from './vercmp.ts';

/** `text` as UTF-8, cut at seeded random byte offsets (through multi-byte characters too). */
function chunked(text: string, seed: number, maxChunk = 4096): Readable {
  const bytes = Buffer.from(text, 'utf8');
  const random = seededRandom(seed);
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; ) {
    const n = 1 + Math.floor(random() * maxChunk);
    chunks.push(bytes.subarray(i, i + n));
    i += n;
  }
  return Readable.from(chunks);
}

/**
 * Collects what vercmp writes. It also checks that vercmp respects backpressure: once write()
 * has returned false, nothing more may be written until 'drain'.
 */
class Sink extends Writable {
  text = '';
  writes = 0;
  fullWrites = 0;
  violations = 0;

  constructor(highWaterMark = 16 * 1024) {
    super({
      highWaterMark,
      write: (chunk: Buffer, _enc, cb) => {
        this.text += chunk.toString('utf8');
        // Completing on a later tick makes the buffer fill up as a slow pipe or terminal would.
        setImmediate(cb);
      },
    });
  }

  override write(chunk: unknown, ...rest: never[]): boolean {
    if (this.writableNeedDrain) this.violations++;
    this.writes++;
    const ok = super.write(chunk, ...rest);
    if (!ok) this.fullWrites++;
    return ok;
  }
}

async function run(scheme: VersionScheme, input: Readable, options?: Parameters<typeof vercmp>[3], highWaterMark?: number) {
  const sink = new Sink(highWaterMark);
  const result = await vercmp(scheme, input, sink, options);
  // The caller owns the output stream (stdout): vercmp must not end it.
  assert.equal(sink.writableEnded, false);
  // Then let the sink work through what is still buffered before reading it.
  await new Promise<void>((resolve) => sink.end(resolve));
  return { result, sink, lines: sink.text.split('\n').slice(0, -1) };
}

describe('vercmp answers every real vector line through a stream', () => {
  const files: [VersionScheme, string][] = [
    ['deb', 'dpkg-compare-versions.tsv'],
    ['rpm', 'rpm-vercmp.tsv'],
    ['apk', 'apk-version-t.tsv'],
  ];
  for (const [scheme, file] of files) {
    it(`${scheme}: ${file}`, async () => {
      const pairs = readTsvVectors(file);
      const text = pairs.map((p) => `${p.a}\t${p.b}\n`).join('');
      const { result, sink, lines } = await run(scheme, chunked(text, pairs.length), { flushAt: 4096 }, 1024);
      assert.deepEqual(result, { lines: pairs.length, invalid: 0 });
      const bad = pairs.filter((p, i) => lines[i] !== String(p.expected)).map((p) => `line ${p.line}: ${p.a} vs ${p.b}`);
      assert.deepEqual(bad, []);
      assert.equal(lines.length, pairs.length);
      assert.equal(sink.violations, 0);
      assert.ok(sink.fullWrites > 0, 'the sink never filled, so backpressure was not exercised');
    });
  }
});

describe('vercmp answers invalid input line by line', () => {
  it('apk: every line of apk-invalid-versions.txt, on either side', async () => {
    const versions = readVersionList('apk-invalid-versions.txt').map((x) => x.version);
    const text = versions.map((v) => `${v}\t1.0-r0\n1.0-r0\t${v}\n`).join('');
    const { result, lines } = await run('apk', chunked(text, 7, 5));
    assert.deepEqual(result, { lines: versions.length * 2, invalid: versions.length * 2 });
    lines.forEach((l, i) => {
      assert.match(l, i % 2 === 0 ? /^invalid left version: '-' not followed by 'r' at offset \d+$/ : /^invalid right version: /);
    });
  });

  const cases: [string, VersionScheme, string, string[], number][] = [
    ['a line without a tab', 'deb', '1.0 1.1\n', ['invalid line has no tab between the two versions'], 1],
    ['an empty line', 'rpm', '\n', ['invalid line has no tab between the two versions'], 1],
    ['a deb version dpkg refuses', 'deb', '1:\t1\n1\t1.0-\n', ['invalid left version: nothing after colon in version number', 'invalid right version: revision number is empty'], 2],
    ['an empty rpm version', 'rpm', '\t1.0-1\n', ['invalid left version: version string is empty'], 1],
    ['CRLF line ends', 'deb', '1.0-1\t1.0-2\r\n2:1\t1:2\r\n', ['-1', '1'], 0],
    ['a last line without a newline', 'rpm', '1.0-1.el9\t1.0-1.el9_1\n1.0^git1\t1.0', ['-1', '1'], 0],
    ['a tab inside the right version', 'deb', '1.0\t1.0\t2\n', ['invalid right version: version string has embedded spaces'], 1],
    ['empty input', 'apk', '', [], 0],
    ['a multi-byte character', 'deb', '1.0\u00e9\t1.0.\n1.0\u20ac\t1.0\u00e9\n', [String(compareVersions('deb', '1.0\u00e9', '1.0.')), String(compareVersions('deb', '1.0\u20ac', '1.0\u00e9'))], 0],
  ];
  for (const [name, scheme, text, want, invalid] of cases) {
    it(`${scheme}: ${name} ${JSON.stringify(text)}`, async () => {
      // One byte per chunk: every split point, including inside the UTF-8 sequences.
      const { result, lines } = await run(scheme, chunked(text, 1, 1));
      assert.deepEqual(lines, want);
      assert.deepEqual(result, { lines: want.length, invalid });
    });
  }

  it('deb: over-long lines are answered and dropped, and the next line still answered', async () => {
    const long = `1.${'0'.repeat(300)}\t1.0\n`;
    const text = `${long}1.0\t1.1\n${'9'.repeat(500)}`;
    const { result, lines } = await run('deb', chunked(text, 3, 64), { maxLineLength: 100 });
    assert.deepEqual(lines, ['invalid line longer than 100 characters', '-1', 'invalid line longer than 100 characters']);
    assert.deepEqual(result, { lines: 3, invalid: 2 });
  });
});
