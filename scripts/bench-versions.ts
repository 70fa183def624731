/**
 * Comparator throughput over the real vector pairs (../shared/data/version-vectors), each
 * scheme looped for about a second. `deb`, `rpm` and `apk` time the comparison alone on
 * already-parsed versions (how the correlator uses them: parse once, compare many times);
 * the `+parse` rows time compareVersions() on the raw strings, parse included.
 */
import { compareApkVersions } from '../shared/versions/apk.ts';
import { compareDebVersions, parseDebVersion } from '../shared/versions/dpkg.ts';
import { compareVersions, type VersionScheme } from '../shared/versions/index.ts';
import { compareRpmVersions, parseRpmEvr } from '../shared/versions/rpm.ts';
import { readTsvVectors, type VectorPair } from '../shared/testing/version-vectors.ts';

const TARGET_MS = 1000;

/** Runs `round` (one pass over n pairs) until TARGET_MS has passed; comparisons per second. */
function time(n: number, round: () => number): number {
  // Warm-up, so the JIT has compiled the comparator before the clock starts.
  const warmEnd = performance.now() + 100;
  while (performance.now() < warmEnd) round();
  let count = 0;
  let sink = 0;
  const start = performance.now();
  let now = start;
  while (now - start < TARGET_MS) {
    sink += round();
    count += n;
    now = performance.now();
  }
  // The sum is checked so the loop cannot be optimised away.
  if (Number.isNaN(sink)) throw new Error('unreachable');
  return Math.round((count * 1000) / (now - start));
}

function parsedRound<T>(pairs: readonly (readonly [T, T])[], cmp: (a: T, b: T) => number): () => number {
  return () => {
    let s = 0;
    for (const [a, b] of pairs) s += cmp(a, b);
    return s;
  };
}

function stringRound(scheme: VersionScheme, pairs: readonly VectorPair[]): () => number {
  return () => {
    let s = 0;
    for (const p of pairs) s += compareVersions(scheme, p.a, p.b);
    return s;
  };
}

export function benchVersions(): { scheme: string; comparisonsPerSecond: number }[] {
  const deb = readTsvVectors('dpkg-compare-versions.tsv');
  const rpm = readTsvVectors('rpm-vercmp.tsv');
  // apk compares the raw strings (there is no parsed form); drop the few the scheme refuses so
  // the +parse row times the same pairs.
  const apk = readTsvVectors('apk-version-t.tsv');
  const apkValid = apk.filter((p) => {
    try {
      compareVersions('apk', p.a, p.b);
      return true;
    } catch {
      return false;
    }
  });
  const debParsed = deb.map((p) => [parseDebVersion(p.a), parseDebVersion(p.b)] as const);
  const rpmParsed = rpm.map((p) => [parseRpmEvr(p.a), parseRpmEvr(p.b)] as const);
  const apkRaw = apk.map((p) => [p.a, p.b] as const);
  return [
    { scheme: 'deb', comparisonsPerSecond: time(deb.length, parsedRound(debParsed, compareDebVersions)) },
    { scheme: 'rpm', comparisonsPerSecond: time(rpm.length, parsedRound(rpmParsed, compareRpmVersions)) },
    { scheme: 'apk', comparisonsPerSecond: time(apk.length, parsedRound(apkRaw, compareApkVersions)) },
    { scheme: 'deb+parse', comparisonsPerSecond: time(deb.length, stringRound('deb', deb)) },
    { scheme: 'rpm+parse', comparisonsPerSecond: time(rpm.length, stringRound('rpm', rpm)) },
    { scheme: 'apk+parse', comparisonsPerSecond: time(apkValid.length, stringRound('apk', apkValid)) },
  ];
}
