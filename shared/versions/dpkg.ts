/**
 * Debian version strings, parsed and compared exactly as dpkg 1.21 does (lib/dpkg/parsehelp.c
 * parseversion, lib/dpkg/version.c verrevcmp and dpkg_version_compare).
 */
import { InvalidVersionError } from '../errors.ts';

export interface DebVersion {
  readonly epoch: number;
  readonly upstream: string;
  readonly revision: string;
}

const INT_MAX = 2147483647;

function isBlank(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/** C isspace(): what strtol skips before the epoch digits. */
function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/**
 * The version, or the reason dpkg refuses it. dpkg's *warnings* (upstream not starting with a
 * digit, characters outside its allowed set) are accepted, as `dpkg --compare-versions` does.
 * dpkg --compare-versions maps "" and "<unknown>" to a blank version before parsing; we reject ""
 * (parseversion's own answer, and what a package field would get) and parse "<unknown>" literally.
 */
export function parseDebVersionOrReason(input: string): DebVersion | string {
  let start = 0;
  let end = input.length;
  while (start < end && isBlank(input.charCodeAt(start))) start++;
  if (start === end) return 'version string is empty';
  // One pass finds the end of the word, the first colon and the last hyphen.
  let stop = end;
  let colon = -1;
  let hyphen = -1;
  for (let i = start; i < end; i++) {
    const c = input.charCodeAt(i);
    if (c <= 0x20) {
      if (isBlank(c)) {
        stop = i;
        break;
      }
      // A NUL can never reach dpkg (argv and control fields are C strings).
      if (c === 0) return 'version string contains a NUL byte';
    } else if (c === 0x3a) {
      if (colon === -1) colon = i;
    } else if (c === 0x2d) {
      hyphen = i;
    }
  }
  for (let i = stop; i < end; i++) {
    if (!isBlank(input.charCodeAt(i))) return 'version string has embedded spaces';
  }
  end = stop;

  let epoch = 0;
  let upstreamStart = start;
  if (colon !== -1) {
    // strtol(string, &end, 10): optional whitespace and sign, then digits that must run up to
    // the first colon exactly.
    let p = start;
    while (p < colon && isSpace(input.charCodeAt(p))) p++;
    let negative = false;
    const sign = input.charCodeAt(p);
    if (p < colon && (sign === 0x2b || sign === 0x2d)) {
      negative = sign === 0x2d;
      p++;
    }
    const digitsStart = p;
    let value = 0;
    while (p < colon && isDigit(input.charCodeAt(p))) {
      // Capped so a long run of digits cannot lose precision; anything past INT_MAX is refused.
      if (value <= INT_MAX) value = value * 10 + (input.charCodeAt(p) - 0x30);
      p++;
    }
    if (p === digitsStart) return 'epoch in version is empty';
    if (p !== colon) return 'epoch in version is not number';
    if (negative && value !== 0) return 'epoch in version is negative';
    if (value > INT_MAX) return 'epoch in version is too big';
    if (colon + 1 === end) return 'nothing after colon in version number';
    epoch = value;
    upstreamStart = colon + 1;
  }

  let upstream: string;
  let revision = '';
  if (hyphen >= upstreamStart) {
    if (hyphen + 1 === end) return 'revision number is empty';
    upstream = input.slice(upstreamStart, hyphen);
    revision = input.slice(hyphen + 1, end);
  } else {
    upstream = input.slice(upstreamStart, end);
  }
  if (upstream.length === 0) return 'version number is empty';
  return { epoch, upstream, revision };
}

/** Parses `[epoch:]upstream[-revision]`; throws InvalidVersionError where dpkg reports an error. */
export function parseDebVersion(input: string): DebVersion {
  const parsed = parseDebVersionOrReason(input);
  if (typeof parsed === 'string') {
    throw new InvalidVersionError(`invalid Debian version '${input}': ${parsed}`);
  }
  return parsed;
}

/** verrevcmp met a character outside ASCII: redo the comparison on UTF-8 bytes. */
const NON_ASCII = 0x40000000;

function isAlpha(c: number): boolean {
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x7a;
}

/**
 * verrevcmp's order(): '~' first, then the end of the string and digits, letters, then
 * everything else. dpkg passes a plain `char`, signed on amd64, so a byte >= 0x80 lands at
 * (byte - 256) + 256 = byte: after the letters, before the ASCII punctuation (dpkg 1.21.22 on
 * amd64 agrees; on unsigned-char architectures it would sort after the punctuation).
 */
function order(c: number, bytes: boolean): number {
  if (isDigit(c)) return 0;
  if (isAlpha(c)) return c;
  if (c === 0x7e) return -1;
  if (c === 0) return 0;
  if (c >= 0x80) return bytes ? c : NON_ASCII;
  return c + 256;
}

/**
 * Returns <0, 0 or >0 (or NON_ASCII). Digit runs are compared without converting them to
 * numbers (leading zeros skipped, then the longer run wins, then the first differing digit),
 * so any length works, as in dpkg.
 */
function verrevcmpRaw(a: string, b: string, bytes: boolean): number {
  const al = a.length;
  const bl = b.length;
  let i = 0;
  let j = 0;
  while (i < al || j < bl) {
    let firstDiff = 0;
    for (;;) {
      const ac = i < al ? a.charCodeAt(i) : 0;
      const bc = j < bl ? b.charCodeAt(j) : 0;
      if (!((ac !== 0 && !isDigit(ac)) || (bc !== 0 && !isDigit(bc)))) break;
      const ao = order(ac, bytes);
      const bo = order(bc, bytes);
      if (ao === NON_ASCII || bo === NON_ASCII) return NON_ASCII;
      if (ao !== bo) return ao - bo;
      i++;
      j++;
    }
    while (i < al && a.charCodeAt(i) === 0x30) i++;
    while (j < bl && b.charCodeAt(j) === 0x30) j++;
    for (;;) {
      const ac = i < al ? a.charCodeAt(i) : 0;
      const bc = j < bl ? b.charCodeAt(j) : 0;
      if (!isDigit(ac) || !isDigit(bc)) break;
      if (firstDiff === 0) firstDiff = ac - bc;
      i++;
      j++;
    }
    if (i < al && isDigit(a.charCodeAt(i))) return 1;
    if (j < bl && isDigit(b.charCodeAt(j))) return -1;
    if (firstDiff !== 0) return firstDiff;
  }
  return 0;
}

/** Each UTF-8 byte of `s` as one char code 0..255. */
function utf8Bytes(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

/** dpkg's verrevcmp on one part (upstream or revision), as -1, 0 or 1. */
export function verrevcmp(a: string, b: string): -1 | 0 | 1 {
  let r = verrevcmpRaw(a, b, false);
  // dpkg sees the UTF-8 bytes of the argument; only then do multi-byte characters order right.
  if (r === NON_ASCII) r = verrevcmpRaw(utf8Bytes(a), utf8Bytes(b), true);
  return r < 0 ? -1 : r > 0 ? 1 : 0;
}

export function compareDebVersions(a: DebVersion, b: DebVersion): -1 | 0 | 1 {
  if (a.epoch !== b.epoch) return a.epoch > b.epoch ? 1 : -1;
  const r = verrevcmp(a.upstream, b.upstream);
  if (r !== 0) return r;
  return verrevcmp(a.revision, b.revision);
}
