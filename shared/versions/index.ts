/**
 * One entry point for the distro version schemes. Each comparator follows its package
 * manager exactly (dpkg 1.21, rpm 4.18, apk-tools 2.14); see the scheme's file for the rules.
 */
import { InvalidVersionError } from '../errors.ts';
import { apkVersionProblem, compareApkVersions } from './apk.ts';
import { compareDebVersions, parseDebVersionOrReason } from './dpkg.ts';
import { compareRpmVersions, parseRpmEvrOrReason } from './rpm.ts';

export type VersionScheme = 'deb' | 'rpm' | 'apk';

export const VERSION_SCHEMES: readonly VersionScheme[] = ['deb', 'rpm', 'apk'];

export function isVersionScheme(s: string): s is VersionScheme {
  return s === 'deb' || s === 'rpm' || s === 'apk';
}

/**
 * null when the scheme's tool accepts `s`, else the reason it does not. For apk this is
 * `apk version -c`, except that the empty string is refused here for every scheme (apk
 * accepts it, but an empty version in an inventory or an advisory is always a data error).
 */
export function validateVersion(scheme: VersionScheme, s: string): string | null {
  switch (scheme) {
    case 'deb': {
      const parsed = parseDebVersionOrReason(s);
      return typeof parsed === 'string' ? parsed : null;
    }
    case 'rpm': {
      const parsed = parseRpmEvrOrReason(s);
      return typeof parsed === 'string' ? parsed : null;
    }
    case 'apk':
      if (s.length === 0) return 'version string is empty';
      if (s.includes('\0')) return 'version string contains a NUL byte';
      return apkVersionProblem(s);
  }
}

function invalid(scheme: VersionScheme, s: string, reason: string): InvalidVersionError {
  return new InvalidVersionError(`invalid ${scheme} version '${s}': ${reason}`);
}

/**
 * Sign of `a` against `b` under `scheme`. Throws InvalidVersionError when either string is one
 * validateVersion() refuses, so a malformed advisory or inventory can never silently pass as
 * "older" or "newer".
 */
export function compareVersions(scheme: VersionScheme, a: string, b: string): -1 | 0 | 1 {
  switch (scheme) {
    case 'deb': {
      const pa = parseDebVersionOrReason(a);
      if (typeof pa === 'string') throw invalid(scheme, a, pa);
      const pb = parseDebVersionOrReason(b);
      if (typeof pb === 'string') throw invalid(scheme, b, pb);
      return compareDebVersions(pa, pb);
    }
    case 'rpm': {
      const pa = parseRpmEvrOrReason(a);
      if (typeof pa === 'string') throw invalid(scheme, a, pa);
      const pb = parseRpmEvrOrReason(b);
      if (typeof pb === 'string') throw invalid(scheme, b, pb);
      return compareRpmVersions(pa, pb);
    }
    case 'apk': {
      const ra = validateVersion(scheme, a);
      if (ra !== null) throw invalid(scheme, a, ra);
      const rb = validateVersion(scheme, b);
      if (rb !== null) throw invalid(scheme, b, rb);
      return compareApkVersions(a, b);
    }
  }
}
