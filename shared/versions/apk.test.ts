import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { apkVersionProblem, compareApkVersions, isValidApkVersion } from './apk.ts';
import { readOsvScannerVectors, readTsvVectors, readVersionList, VECTORS_DIR, type VectorPair } from '../testing/version-vectors.ts';

/**
 * The hand-written osv-scanner lines that apk-tools 2.14.10 itself answers differently (the
 * file's comments say so: they follow apk-tools 3 or an older 2.x). ../shared/data/README.md
 * names exactly these six.
 */
const KNOWN_EXCEPTIONS = new Set(['1-r-0 < 1-r0', '1-r-1 < 1-r0', '1.2.0A < 1.2.0d', '1.2.0D < 1.2.0d', '1 > 1-ruff', '1-ruff2 = 1--ruff1']);

const OP = { '-1': '<', '0': '=', '1': '>' } as const;

function failing(pairs: readonly VectorPair[]): string[] {
  const bad: string[] = [];
  for (const p of pairs) {
    const got = compareApkVersions(p.a, p.b);
    const back = compareApkVersions(p.b, p.a);
    if (got !== p.expected || back !== -p.expected) bad.push(`${p.a} ${OP[p.expected]} ${p.b}`);
  }
  return bad;
}

describe('compareApkVersions agrees with apk-tools 2.14.10 on every line of the real vectors', () => {
  const files: [string, () => VectorPair[], number][] = [
    ['apk-version-t.tsv', () => readTsvVectors('apk-version-t.tsv'), 4000],
    ['osv-scanner.alpine-versions-generated.txt', () => readOsvScannerVectors('osv-scanner.alpine-versions-generated.txt'), 10000],
    ['osv-scanner.alpine-versions.txt', () => readOsvScannerVectors('osv-scanner.alpine-versions.txt'), 500],
  ];
  for (const [file, read, atLeast] of files) {
    it(file, () => {
      const pairs = read();
      assert.ok(pairs.length >= atLeast, `${file} has only ${pairs.length} pairs`);
      const bad = failing(pairs);
      const unexpected = bad.filter((l) => !KNOWN_EXCEPTIONS.has(l));
      assert.deepEqual(unexpected, []);
      if (file === 'osv-scanner.alpine-versions.txt') {
        // All six must still be there: if one agreed, the exception list would be hiding nothing.
        assert.deepEqual(new Set(bad), KNOWN_EXCEPTIONS);
      }
    });
  }
});

describe('isValidApkVersion rejects every line of apk-invalid-versions.txt (apk version -c)', () => {
  for (const { line, version } of readVersionList('apk-invalid-versions.txt')) {
    it(`line ${line}: ${version}`, () => {
      assert.equal(isValidApkVersion(version), false);
      assert.match(apkVersionProblem(version) ?? '', /^'-' not followed by 'r' at offset \d+$/);
    });
  }
});

describe('isValidApkVersion over every fixed version in the real Alpine secdb', () => {
  it('rejects exactly the versions listed in apk-invalid-versions.txt', () => {
    const dir = join(VECTORS_DIR, '..', 'alpine-secdb');
    const versions = new Set<string>();
    for (const f of readdirSync(dir)) {
      if (!f.endsWith('.json.gz')) continue;
      const db = JSON.parse(gunzipSync(readFileSync(join(dir, f))).toString('utf8')) as {
        packages: { pkg: { secfixes?: Record<string, unknown> } }[];
      };
      for (const p of db.packages) for (const v of Object.keys(p.pkg.secfixes ?? {})) versions.add(v);
    }
    assert.ok(versions.size > 4000, `only ${versions.size} secdb versions`);
    const rejected = [...versions].filter((v) => !isValidApkVersion(v)).sort();
    const listed = readVersionList('apk-invalid-versions.txt')
      .map((x) => x.version)
      .sort();
    assert.deepEqual(rejected, listed);
  });
});

describe('apkVersionProblem names the cause', () => {
  const cases: [string, string | null][] = [
    ['1.2.3_rc1-r0', null],
    ['1.0_alpha_beta2_p3-r10', null],
    ['1.2.3b', null],
    // apk accepts these: the tokenizer starts with an empty digit component.
    ['', null],
    ['.1', null],
    ['a', null],
    ['1.2.0A', "unexpected character 'A' at offset 5"],
    ['1.0bc', "unexpected character 'c' at offset 4"],
    ['1.0\t1', 'unexpected character U+0009 at offset 3'],
    ['1.2_blah', 'unknown suffix at offset 4 (expected alpha, beta, pre, rc, cvs, svn, git, hg or p)'],
    ['1-r1.2', "'.' at offset 4 is out of order (expected {digit}{.digit}...{letter}{_suffix{digit}}...{-r#})"],
    ['1_p1.2', "'.' at offset 4 is out of order (expected {digit}{.digit}...{letter}{_suffix{digit}}...{-r#})"],
    ['2021-03-27-r5', "'-' not followed by 'r' at offset 4"],
  ];
  for (const [input, reason] of cases) {
    it(JSON.stringify(input), () => {
      assert.equal(apkVersionProblem(input), reason);
      assert.equal(isValidApkVersion(input), reason === null);
    });
  }
});
