import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { InvalidVersionError } from '../errors.ts';
import { compareDebVersions, parseDebVersion, parseDebVersionOrReason } from './dpkg.ts';
import { disagreements, mutateVersion, readOsvScannerVectors, readTsvVectors, seededRandom, type VectorPair } from '../testing/version-vectors.ts';

function cmp(a: string, b: string): -1 | 0 | 1 {
  return compareDebVersions(parseDebVersion(a), parseDebVersion(b));
}

function failing(pairs: readonly VectorPair[]): string[] {
  return disagreements(pairs, cmp);
}

interface DpkgRun {
  code: number;
  stderr: string;
}

/** `dpkg --compare-versions -- A op B` (`--` so a version starting with '-' is not an option). */
function dpkgCompare(a: string, op: string, b: string): Promise<DpkgRun> {
  return new Promise((resolve, reject) => {
    execFile('dpkg', ['--compare-versions', '--', a, op, b], { timeout: 10_000, maxBuffer: 64 * 1024 }, (err, _stdout, stderr) => {
      if (err === null) {
        resolve({ code: 0, stderr });
        return;
      }
      if (typeof err.code === 'number') resolve({ code: err.code, stderr });
      else reject(new Error(`dpkg did not run: ${err.message}`, { cause: err }));
    });
  });
}

describe('compareDebVersions agrees with dpkg on every line of the real vectors', () => {
  const files: [string, () => VectorPair[]][] = [
    ['dpkg-compare-versions.tsv', () => readTsvVectors('dpkg-compare-versions.tsv')],
    ['osv-scanner.debian-versions-generated.txt', () => readOsvScannerVectors('osv-scanner.debian-versions-generated.txt')],
    ['osv-scanner.debian-versions.txt', () => readOsvScannerVectors('osv-scanner.debian-versions.txt')],
  ];
  for (const [file, read] of files) {
    it(file, () => {
      const pairs = read();
      assert.ok(pairs.length >= 30, `${file} has only ${pairs.length} pairs`);
      assert.deepEqual(failing(pairs), []);
    });
  }
});

describe('parseDebVersion splits like dpkg (deb-version(7), then checked with dpkg ... eq)', () => {
  // [input, epoch, upstream, revision]: the revision is after the LAST hyphen, the epoch before
  // the FIRST colon, blanks around the string are trimmed, dpkg's warnings are accepted.
  const cases: [string, number, string, string][] = [
    ['1:2.30-3', 1, '2.30', '3'],
    ['2.30', 0, '2.30', ''],
    ['1.2-3-4', 0, '1.2-3', '4'],
    [' \t1.0-1 \t', 0, '1.0', '1'],
    ['0:1:2-3', 0, '1:2', '3'],
    ['+1:2', 1, '2', ''],
    ['-0:2', 0, '2', ''],
    ['007:1.0', 7, '1.0', ''],
    ['2147483647:1', 2147483647, '1', ''],
    ['1.0~rc1-1~deb12u1', 0, '1.0~rc1', '1~deb12u1'],
    ['a1.0', 0, 'a1.0', ''],
    ['1_0', 0, '1_0', ''],
    ['1.0-1_0', 0, '1.0', '1_0'],
    ['1.0\u00e9-1', 0, '1.0\u00e9', '1'],
  ];
  for (const [input, epoch, upstream, revision] of cases) {
    it(JSON.stringify(input), async () => {
      const v = parseDebVersion(input);
      assert.deepEqual(v, { epoch, upstream, revision });
      // An empty revision compares equal to "0", so this form is the same version to dpkg.
      const canonical = `${v.epoch}:${v.upstream}-${v.revision === '' ? '0' : v.revision}`;
      const run = await dpkgCompare(input, 'eq', canonical);
      assert.equal(run.code, 0, `dpkg says ${JSON.stringify(input)} != ${canonical}: ${run.stderr}`);
    });
  }
});

describe('parseDebVersion refuses what dpkg refuses, with dpkg\'s reason', () => {
  const cases = [
    '   ',
    '1 0',
    ':1',
    'a:1',
    '1a:1',
    '-1:1',
    '2147483648:1',
    '99999999999999999999:1',
    '-99999999999999999999:1',
    '1:',
    '1.0-',
    '-1',
    '2:-1',
  ];
  for (const input of cases) {
    it(JSON.stringify(input), async () => {
      const reason = parseDebVersionOrReason(input);
      if (typeof reason !== 'string') assert.fail(`accepted ${JSON.stringify(input)}`);
      const run = await dpkgCompare(input, 'lt', '1');
      assert.equal(run.code, 2);
      assert.ok(run.stderr.includes(`has bad syntax: ${reason}\n`), run.stderr);
      assert.throws(() => parseDebVersion(input), (err: unknown) => err instanceof InvalidVersionError && err.code === 'PW_ERR_INVALID_VERSION');
    });
  }
  // dpkg --compare-versions maps "" to a blank version instead of parsing it; as a package
  // version it is always an error (parseversion's answer), so that is what we give.
  it('"" (empty)', () => {
    assert.equal(parseDebVersionOrReason(''), 'version string is empty');
  });
  // A NUL cannot be passed to dpkg at all.
  it('"1\\u00000"', () => {
    assert.equal(parseDebVersionOrReason('1\u00000'), 'version string contains a NUL byte');
  });
});

/** The sign dpkg gives, from two runs (lt, then eq). */
async function dpkgSign(a: string, b: string): Promise<-1 | 0 | 1> {
  const lt = await dpkgCompare(a, 'lt', b);
  assert.notEqual(lt.code, 2, lt.stderr);
  if (lt.code === 0) return -1;
  const eq = await dpkgCompare(a, 'eq', b);
  return eq.code === 0 ? 0 : 1;
}

describe('compareDebVersions on the ordering rules, judged by the real dpkg', () => {
  const pairs: [string, string][] = [
    ['1.0~rc1', '1.0'],
    ['1.0~~', '1.0~'],
    ['1.0~', '1.0'],
    ['1.0', '1.0a'],
    ['1.0a', '1.0+'],
    ['1.0+', '1.0.'],
    ['1.0Z', '1.0a'],
    ['1.0\u00e9', '1.0.'],
    ['1.0\u00e9', '1.0z'],
    ['1.0\u00e9', '1.0~'],
    ['1.0\u00e9', '1.0\u00e8'],
    ['1.0\u20ac', '1.0\u00e9'],
    ['1.0\u{1f600}', '1.0\u00ff'],
    ['1.00000000000000000000000000001', '1.1'],
    ['1.99999999999999999999999', '1.100000000000000000000000'],
    ['1.18446744073709551617', '1.18446744073709551616'],
    ['1.01', '1.1'],
    ['1.0-0', '1.0'],
    ['0:1.0', '1.0'],
    ['1:0.1', '9.9'],
    ['1.0-1ubuntu1', '1.0-1+deb12u1'],
    ['2.7.4+reloaded2-13ubuntu1', '2.7.4+reloaded2-13+deb9u1'],
  ];
  for (const [a, b] of pairs) {
    it(`${JSON.stringify(a)} vs ${JSON.stringify(b)}`, async () => {
      const want = await dpkgSign(a, b);
      assert.equal(cmp(a, b), want);
      assert.equal(cmp(b, a), want === 0 ? 0 : -want);
    });
  }
});

describe('differential: compareDebVersions against the real dpkg', () => {
  it('240 seeded pairs from the vectors and their mutations', async () => {
    const random = seededRandom(0x5eed_deb);
    const pool = readTsvVectors('dpkg-compare-versions.tsv').flatMap((p) => [p.a, p.b]);
    const pickReal = (): string => pool[Math.floor(random() * pool.length)] ?? '0';
    // Characters that exercise every rule: '~', letters vs punctuation, ':', '-', blanks, non-ASCII.
    const alphabet = '0123456789~~.+-:abzAZ_ \u00e9\u20ac0';
    const ops = ['lt', 'le', 'eq', 'ne', 'ge', 'gt'] as const;
    const holds = (r: number, op: (typeof ops)[number]): boolean =>
      op === 'lt' ? r < 0 : op === 'le' ? r <= 0 : op === 'eq' ? r === 0 : op === 'ne' ? r !== 0 : op === 'ge' ? r >= 0 : r > 0;
    const cases: { a: string; op: (typeof ops)[number]; b: string }[] = [];
    while (cases.length < 240) {
      const a = pickReal();
      const kind = random();
      // Half compare a version with a mutation of itself (close pairs find the edge cases).
      let b = kind < 0.5 ? mutateVersion(a, alphabet, random) : pickReal();
      let a2 = a;
      if (random() < 0.3) a2 = mutateVersion(a, alphabet, random);
      if (kind > 0.9) b = a2.replace(/^(\d+:)?/, (m) => (m === '' ? '0:' : ''));
      // dpkg --compare-versions reads "" as a blank version, not as an error (see above).
      if (a2 === '' || b === '') continue;
      cases.push({ a: a2, op: ops[Math.floor(random() * ops.length)] ?? 'lt', b });
    }
    const mismatches: string[] = [];
    let invalidSeen = 0;
    // Two at a time: the machine's cores are shared.
    for (let i = 0; i < cases.length; i += 2) {
      const batch = cases.slice(i, i + 2);
      const runs = await Promise.all(batch.map((c) => dpkgCompare(c.a, c.op, c.b)));
      batch.forEach((c, k) => {
        const run = runs[k];
        if (run === undefined) return;
        const pa = parseDebVersionOrReason(c.a);
        const pb = parseDebVersionOrReason(c.b);
        const label = `${JSON.stringify(c.a)} ${c.op} ${JSON.stringify(c.b)}`;
        if (typeof pa === 'string' || typeof pb === 'string') {
          invalidSeen++;
          const [bad, reason] = typeof pa === 'string' ? [c.a, pa] : [c.b, typeof pb === 'string' ? pb : ''];
          if (run.code !== 2 || !run.stderr.includes(`version '${bad}' has bad syntax: ${reason}`)) {
            mismatches.push(`${label}: we refuse (${reason}), dpkg exit ${run.code}: ${run.stderr.trim()}`);
          }
          return;
        }
        const want = holds(compareDebVersions(pa, pb), c.op) ? 0 : 1;
        if (run.code !== want) mismatches.push(`${label}: we say exit ${want}, dpkg exit ${run.code}: ${run.stderr.trim()}`);
      });
    }
    assert.deepEqual(mismatches, []);
    // The mutations must actually reach the refusal paths, or the test is weaker than it looks.
    assert.ok(invalidSeen > 5, `only ${invalidSeen} invalid versions generated`);
  });
});
