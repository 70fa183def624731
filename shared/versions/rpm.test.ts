import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { before, describe, it } from 'node:test';
import { InvalidVersionError } from '../errors.ts';
import { compareRpmVersions, parseRpmEvr, parseRpmEvrOrReason } from './rpm.ts';
import { disagreements as vectorDisagreements, mutateVersion, readOsvScannerVectors, readTsvVectors, seededRandom, type VectorPair } from '../testing/version-vectors.ts';

function cmp(a: string, b: string): -1 | 0 | 1 {
  return compareRpmVersions(parseRpmEvr(a), parseRpmEvr(b));
}

function failing(pairs: readonly VectorPair[]): string[] {
  return vectorDisagreements(pairs, cmp);
}

type RpmEvrTuple = [string | null, string, string | null];
/** rpm's answer for one pair: the sign, or null when rpm refuses a version; and its own splits. */
interface RpmAnswer {
  sign: -1 | 0 | 1 | null;
  a: RpmEvrTuple | null;
  b: RpmEvrTuple | null;
}

/**
 * librpm 4.18 itself, once for all pairs: rpm.ver() is rpm's parseEVR, labelCompare its
 * (epoch, version, release) comparison. /usr/bin/python3 because it is the one that sees the
 * Debian python3-rpm module.
 */
const ORACLE = `
import json, sys, rpm
def split(s):
    try:
        v = rpm.ver(s)
    except ValueError:
        return None
    return [v.e, v.v, v.r]
for line in sys.stdin:
    a, b = line.rstrip("\\n").split("\\t", 1)
    ea, eb = split(a), split(b)
    sign = None if ea is None or eb is None else rpm.labelCompare(tuple(ea), tuple(eb))
    print(json.dumps([sign, ea, eb]))
`;
import { needs, TOOLS } from '../testing/system-tools.ts';

function askRpm(pairs: readonly (readonly [string, string])[]): Promise<RpmAnswer[]> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      '/usr/bin/python3',
      ['-c', ORACLE],
      { timeout: 120_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', env: { ...process.env, PYTHONIOENCODING: 'utf-8' } },
      (err, stdout, stderr) => {
        if (err !== null) {
          reject(new Error(`python3-rpm failed: ${err.message} ${stderr}`, { cause: err }));
          return;
        }
        const out = stdout.split('\n').filter((l) => l !== '');
        if (out.length !== pairs.length) {
          reject(new Error(`python3-rpm answered ${out.length} of ${pairs.length} pairs`));
          return;
        }
        resolve(
          out.map((l) => {
            const [sign, a, b] = JSON.parse(l) as [number | null, RpmEvrTuple | null, RpmEvrTuple | null];
            return { sign: sign === null ? null : sign < 0 ? -1 : sign > 0 ? 1 : 0, a, b };
          }),
        );
      },
    );
    child.stdin?.end(pairs.map(([a, b]) => `${a}\t${b}\n`).join(''));
  });
}

/** Our answer in the oracle's shape, so a mismatch prints both side by side. */
function ours(a: string, b: string): RpmAnswer {
  const pa = parseRpmEvrOrReason(a);
  const pb = parseRpmEvrOrReason(b);
  const tuple = (p: typeof pa, s: string): RpmEvrTuple | null =>
    typeof p === 'string' ? null : [p.epoch === '0' && !/^\d*:/.test(s) ? null : p.epoch, p.version, p.release];
  return {
    sign: typeof pa === 'string' || typeof pb === 'string' ? null : compareRpmVersions(pa, pb),
    a: tuple(pa, a),
    b: tuple(pb, b),
  };
}

function disagreements(pairs: readonly (readonly [string, string])[], answers: readonly RpmAnswer[]): string[] {
  const bad: string[] = [];
  pairs.forEach(([a, b], i) => {
    const want = answers[i];
    const got = ours(a, b);
    if (want === undefined) return;
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      bad.push(`${JSON.stringify(a)} vs ${JSON.stringify(b)}: rpm ${JSON.stringify(want)}, ours ${JSON.stringify(got)}`);
    }
  });
  return bad;
}

describe('compareRpmVersions agrees with rpm 4.18 on every line of the real vectors', () => {
  const files: [string, () => VectorPair[]][] = [
    ['rpm-vercmp.tsv', () => readTsvVectors('rpm-vercmp.tsv')],
    ['osv-scanner.redhat-versions.txt', () => readOsvScannerVectors('osv-scanner.redhat-versions.txt')],
  ];
  for (const [file, read] of files) {
    it(file, () => {
      const pairs = read();
      assert.ok(pairs.length >= 100, `${file} has only ${pairs.length} pairs`);
      assert.deepEqual(failing(pairs), []);
    });
  }
});

describe('rpm rules, judged by the real librpm (one python3-rpm process)', { skip: needs(TOOLS.pythonRpm) }, () => {
  const pairs: [string, string][] = [
    ['1.0~rc1', '1.0'],
    ['1.0~rc1', '1.0~rc2'],
    ['1.0~~', '1.0~'],
    ['1.0^git1', '1.0'],
    ['1.0^git1', '1.0.1'],
    ['1.0^git1', '1.0^git2'],
    ['1.0~rc1^git1', '1.0~rc1'],
    ['1.0^', '1.0'],
    ['1.0', '1.0-1'],
    ['1.0', '1.0-'],
    ['1.0-', '1.0-0'],
    ['1:1.0', '2.0'],
    [':1.0', '0:1.0'],
    ['0010:1', '9:1'],
    ['a:1-2', 'a:1-2'],
    ['1:2:3', '1:2.3'],
    ['1.0a', '1.0.1'],
    ['1.a', '1.1'],
    ['1.0', '1_0'],
    ['1..0', '1.0'],
    ['00010', '10'],
    ['1.0\u00e9', '1.0'],
    ['1.0\u00e9', '1.0.'],
    ['99999999999999999999999.1', '99999999999999999999998.9'],
    ['5.14.0-611.54.6.el9_7', '5.14.0-611.54.6.el9_7.1'],
    ['2.4.21-9.EL', '2.4.21-9.0.1.EL'],
    ['1.0-1.el9', '1.0-1.el9_1'],
    ['abc', 'abd'],
    ['ABC', 'abc'],
    ['', '1'],
  ];
  let answers: RpmAnswer[] = [];
  before(async () => {
    answers = await askRpm(pairs);
  });
  pairs.forEach(([a, b], i) => {
    it(`${JSON.stringify(a)} vs ${JSON.stringify(b)}`, () => {
      assert.deepEqual(ours(a, b), answers[i]);
    });
  });
});

describe('parseRpmEvr refusals', () => {
  const cases: [string, string][] = [
    ['', 'version string is empty'],
    // A NUL cannot be handed to librpm (C strings).
    ['1\u00000', 'version string contains a NUL byte'],
  ];
  for (const [input, reason] of cases) {
    it(JSON.stringify(input), () => {
      assert.equal(parseRpmEvrOrReason(input), reason);
      assert.throws(() => parseRpmEvr(input), (err: unknown) => err instanceof InvalidVersionError && err.code === 'PW_ERR_INVALID_VERSION');
    });
  }
});

describe('differential: compareRpmVersions and parseRpmEvr against librpm', { skip: needs(TOOLS.pythonRpm) }, () => {
  it('2000 seeded pairs from the vectors and their mutations, in one process', async () => {
    const random = seededRandom(0x5eed_0e1);
    const pool = [
      ...readTsvVectors('rpm-vercmp.tsv').flatMap((p) => [p.a, p.b]),
      ...readOsvScannerVectors('osv-scanner.redhat-versions.txt').flatMap((p) => [p.a, p.b]),
    ];
    const pick = (): string => pool[Math.floor(random() * pool.length)] ?? '0';
    // Every class rpmvercmp distinguishes: digits, letters, '~', '^', separators, ':', '-', non-ASCII.
    const alphabet = '0123456789~^.-:_+abzAZ \u00e90';
    const pairs: [string, string][] = [];
    while (pairs.length < 2000) {
      let a = pick();
      if (random() < 0.3) a = mutateVersion(a, alphabet, random);
      const b = random() < 0.6 ? mutateVersion(a, alphabet, random) : pick();
      // Tab and newline are the oracle's own separators.
      if (/[\t\n\r]/.test(a + b)) continue;
      pairs.push([a, b]);
    }
    const answers = await askRpm(pairs);
    assert.deepEqual(disagreements(pairs, answers), []);
    const equal = answers.filter((x) => x.sign === 0).length;
    assert.ok(equal > 20, `only ${equal} equal pairs: the mutations are not reaching the tie rules`);
  });
});
