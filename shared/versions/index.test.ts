import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidVersionError } from '../errors.ts';
import { compareVersions, validateVersion, type VersionScheme } from './index.ts';
import { readTsvVectors, readVersionList } from '../testing/version-vectors.ts';

const FILES: [VersionScheme, string][] = [
  ['deb', 'dpkg-compare-versions.tsv'],
  ['rpm', 'rpm-vercmp.tsv'],
  ['apk', 'apk-version-t.tsv'],
];

describe('compareVersions routes each scheme to its comparator', () => {
  for (const [scheme, file] of FILES) {
    it(`${scheme}: every line of ${file}`, () => {
      const bad = readTsvVectors(file)
        .filter((p) => compareVersions(scheme, p.a, p.b) !== p.expected)
        .map((p) => `line ${p.line}: ${p.a} vs ${p.b}`);
      assert.deepEqual(bad, []);
    });
  }
});

describe('compareVersions refuses what the scheme refuses, with a stable code', () => {
  const invalidApk = readVersionList('apk-invalid-versions.txt')[0]?.version ?? '';
  const cases: [VersionScheme, string, string][] = [
    ['deb', '1:', "invalid deb version '1:': nothing after colon in version number"],
    ['deb', '1.0-', "invalid deb version '1.0-': revision number is empty"],
    ['rpm', '', "invalid rpm version '': version string is empty"],
    ['apk', '', "invalid apk version '': version string is empty"],
    ['apk', invalidApk, `invalid apk version '${invalidApk}': ${validateVersion('apk', invalidApk) ?? ''}`],
  ];
  for (const [scheme, version, message] of cases) {
    it(`${scheme} ${JSON.stringify(version)}`, () => {
      assert.notEqual(validateVersion(scheme, version), null);
      for (const [a, b] of [
        [version, '1'],
        ['1', version],
      ] as const) {
        assert.throws(
          () => compareVersions(scheme, a, b),
          (err: unknown) => err instanceof InvalidVersionError && err.code === 'PW_ERR_INVALID_VERSION' && err.message === message,
        );
      }
    });
  }
});

describe('validateVersion accepts every version in the real vectors', () => {
  for (const [scheme, file] of FILES) {
    it(`${scheme}: ${file}`, () => {
      const bad = readTsvVectors(file)
        .flatMap((p) => [p.a, p.b])
        .filter((v) => validateVersion(scheme, v) !== null);
      assert.deepEqual(bad, []);
    });
  }
});
