/**
 * RPM EVR strings, parsed and compared exactly as rpm 4.18 does: parseEVR (lib/rpmver.c) for
 * the split, rpmvercmp (rpmio/rpmvercmp.c) for each part, and the python binding's
 * labelCompare rules for absent parts (a missing epoch is "0"; a missing release sorts before
 * any release, even an empty one). `rpm.vercmp()` in rpm's Lua gives the same answers.
 */
import { InvalidVersionError } from '../errors.ts';

export interface RpmEvr {
  /** Decimal digits, "0" when absent; kept as text so any length compares exactly. */
  readonly epoch: string;
  readonly version: string;
  /** null when the string has no '-' (not the same as an empty release: "1.0-"). */
  readonly release: string | null;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isAlpha(c: number): boolean {
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x7a;
}

/** The EVR, or the reason rpm refuses it: rpmverParse rejects only the empty string. */
export function parseRpmEvrOrReason(input: string): RpmEvr | string {
  if (input.length === 0) return 'version string is empty';
  // A NUL can never reach rpm (its strings are C strings).
  if (input.includes('\0')) return 'version string contains a NUL byte';
  let s = 0;
  while (s < input.length && isDigit(input.charCodeAt(s))) s++;
  let epoch = '0';
  let versionStart = 0;
  if (s < input.length && input.charCodeAt(s) === 0x3a) {
    // parseEVR turns an empty epoch (":1.0") into "0".
    if (s > 0) epoch = input.slice(0, s);
    versionStart = s + 1;
  }
  const hyphen = input.lastIndexOf('-');
  if (hyphen >= s) {
    return { epoch, version: input.slice(versionStart, hyphen), release: input.slice(hyphen + 1) };
  }
  return { epoch, version: input.slice(versionStart), release: null };
}

/** Parses `[epoch:]version[-release]`; throws InvalidVersionError for what rpm refuses. */
export function parseRpmEvr(input: string): RpmEvr {
  const parsed = parseRpmEvrOrReason(input);
  if (typeof parsed === 'string') {
    throw new InvalidVersionError(`invalid RPM version '${input}': ${parsed}`);
  }
  return parsed;
}

/**
 * rpmvercmp: alternating all-digit and all-letter segments (ASCII only; anything else,
 * including non-ASCII bytes, separates), '~' sorts before everything including the end, '^'
 * sorts after the end but before any further segment, a numeric segment beats an alphabetic
 * one, digit runs compare by length after leading zeros, then like strcmp.
 */
export function rpmvercmp(a: string, b: string): -1 | 0 | 1 {
  if (a === b) return 0;
  const al = a.length;
  const bl = b.length;
  let i = 0;
  let j = 0;
  while (i < al || j < bl) {
    let ac = 0;
    let bc = 0;
    while (i < al) {
      ac = a.charCodeAt(i);
      if (isDigit(ac) || isAlpha(ac) || ac === 0x7e || ac === 0x5e) break;
      i++;
    }
    while (j < bl) {
      bc = b.charCodeAt(j);
      if (isDigit(bc) || isAlpha(bc) || bc === 0x7e || bc === 0x5e) break;
      j++;
    }
    if (i >= al) ac = 0;
    if (j >= bl) bc = 0;

    if (ac === 0x7e || bc === 0x7e) {
      if (ac !== 0x7e) return 1;
      if (bc !== 0x7e) return -1;
      i++;
      j++;
      continue;
    }
    if (ac === 0x5e || bc === 0x5e) {
      if (ac === 0) return -1;
      if (bc === 0) return 1;
      if (ac !== 0x5e) return 1;
      if (bc !== 0x5e) return -1;
      i++;
      j++;
      continue;
    }
    if (ac === 0 || bc === 0) break;

    let ie = i;
    let je = j;
    const numeric = isDigit(ac);
    if (numeric) {
      while (ie < al && isDigit(a.charCodeAt(ie))) ie++;
      while (je < bl && isDigit(b.charCodeAt(je))) je++;
    } else {
      while (ie < al && isAlpha(a.charCodeAt(ie))) ie++;
      while (je < bl && isAlpha(b.charCodeAt(je))) je++;
    }
    // Segments of different kinds: the numeric one is newer (rpm bugzilla #50977).
    if (je === j) return numeric ? 1 : -1;
    if (numeric) {
      while (i < ie && a.charCodeAt(i) === 0x30) i++;
      while (j < je && b.charCodeAt(j) === 0x30) j++;
      const alen = ie - i;
      const blen = je - j;
      if (alen !== blen) return alen > blen ? 1 : -1;
    }
    while (i < ie && j < je) {
      const x = a.charCodeAt(i);
      const y = b.charCodeAt(j);
      if (x !== y) return x < y ? -1 : 1;
      i++;
      j++;
    }
    if (i < ie) return 1;
    if (j < je) return -1;
  }
  if (i >= al && j >= bl) return 0;
  return i >= al ? -1 : 1;
}

export function compareRpmVersions(a: RpmEvr, b: RpmEvr): -1 | 0 | 1 {
  let r = rpmvercmp(a.epoch, b.epoch);
  if (r !== 0) return r;
  r = rpmvercmp(a.version, b.version);
  if (r !== 0) return r;
  if (a.release === null || b.release === null) {
    if (a.release === b.release) return 0;
    return a.release === null ? -1 : 1;
  }
  return rpmvercmp(a.release, b.release);
}
