/**
 * Alpine apk versions, compared and validated as apk-tools 2.14 does (src/version.c: the
 * Gentoo-style tokenizer next_token/get_token, apk_version_compare_blob_fuzzy without fuzz,
 * apk_version_validate), with 64-bit component values (the osv-scanner vector
 * `1.0.0_pre20191002222144-r0 < 1.0.0_pre20210530193627-r0` needs more than 32 bits).
 * apk-tools 3 changed several rules for invalid versions (`1.2.0A` vs `1.2.0d`, `1-ruff`);
 * the Alpine releases in our secdb data (v3.2..v3.21) ship apk-tools 2.x.
 */

const INVALID = -1;
const DIGIT_OR_ZERO = 0;
const DIGIT = 1;
const LETTER = 2;
const SUFFIX = 3;
const SUFFIX_NO = 4;
const REVISION_NO = 5;
const END = 6;

/** Why a token went invalid, for validation messages. */
const E_NONE = 0;
const E_CHAR = 1;
const E_DASH = 2;
const E_ORDER = 3;
const E_SUFFIX = 4;

const PRE_SUFFIXES = ['alpha', 'beta', 'pre', 'rc'] as const;
const POST_SUFFIXES = ['cvs', 'svn', 'git', 'hg', 'p'] as const;

/** Tokenizer state for one side; reused across calls (the comparison never re-enters). */
interface Cursor {
  s: string;
  pos: number;
  type: number;
  err: number;
  errPos: number;
}

function newCursor(): Cursor {
  return { s: '', pos: 0, type: DIGIT, err: E_NONE, errPos: 0 };
}

const A = newCursor();
const B = newCursor();
const V = newCursor();

function reset(c: Cursor, s: string): void {
  c.s = s;
  c.pos = 0;
  c.type = DIGIT;
  c.err = E_NONE;
  c.errPos = 0;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isLower(c: number): boolean {
  return c >= 0x61 && c <= 0x7a;
}

function nextToken(c: Cursor): void {
  const s = c.s;
  const len = s.length - c.pos;
  const ch = len > 0 ? s.charCodeAt(c.pos) : 0;
  let n = INVALID;
  const at = c.pos;
  if (len === 0 || ch === 0) {
    n = END;
  } else if ((c.type === DIGIT || c.type === DIGIT_OR_ZERO) && isLower(ch)) {
    n = LETTER;
  } else if (c.type === LETTER && isDigit(ch)) {
    n = DIGIT;
  } else if (c.type === SUFFIX && isDigit(ch)) {
    n = SUFFIX_NO;
  } else {
    if (ch === 0x2e) {
      n = DIGIT_OR_ZERO;
    } else if (ch === 0x5f) {
      n = SUFFIX;
    } else if (ch === 0x2d) {
      if (len > 1 && s.charCodeAt(c.pos + 1) === 0x72) {
        n = REVISION_NO;
        c.pos++;
      } else {
        c.err = E_DASH;
        c.errPos = at;
      }
    } else {
      c.err = E_CHAR;
      c.errPos = at;
    }
    c.pos++;
  }
  if (n < c.type && n !== INVALID) {
    if (
      !(
        (n === DIGIT_OR_ZERO && c.type === DIGIT) ||
        (n === SUFFIX && c.type === SUFFIX_NO) ||
        (n === DIGIT && c.type === LETTER)
      )
    ) {
      n = INVALID;
      c.err = E_ORDER;
      c.errPos = at;
    }
  }
  c.type = n;
}

function startsWithAt(s: string, pos: number, word: string): boolean {
  if (word.length > s.length - pos) return false;
  for (let k = 0; k < word.length; k++) {
    if (s.charCodeAt(pos + k) !== word.charCodeAt(k)) return false;
  }
  return true;
}

/** Index of the first word `s` continues with at `pos` (a prefix match, as apk's strncmp), or -1. */
function suffixAt(s: string, pos: number, words: readonly string[]): number {
  for (let k = 0; k < words.length; k++) {
    if (startsWithAt(s, pos, words[k] ?? '')) return k;
  }
  return -1;
}

/** The token's value: a number, or a bigint for digit runs too long for a double. */
function getToken(c: Cursor): number | bigint {
  const s = c.s;
  const start = c.pos;
  if (s.length - start <= 0) {
    c.type = END;
    return 0;
  }
  let v = 0;
  let big: bigint | null = null;
  let i = start;
  let nt = INVALID;
  const t = c.type;
  if (t === DIGIT_OR_ZERO && s.charCodeAt(i) === 0x30) {
    // apk: leading zeros make the component sort below any value without them (1.01 < 1.1).
    while (i < s.length && s.charCodeAt(i) === 0x30) i++;
    nt = DIGIT;
    v = -(i - start);
  } else if (t === DIGIT_OR_ZERO || t === DIGIT || t === SUFFIX_NO || t === REVISION_NO) {
    while (i < s.length && isDigit(s.charCodeAt(i))) i++;
    // apk 2.14 keeps the value in an int64_t (dates with a time of day, such as
    // _pre20191002222144, need more than 32 bits); past 15 digits a double is no longer exact.
    if (i - start <= 15) {
      for (let k = start; k < i; k++) v = v * 10 + (s.charCodeAt(k) - 0x30);
    } else {
      big = BigInt.asIntN(64, BigInt(s.slice(start, i)));
    }
  } else if (t === LETTER) {
    v = s.charCodeAt(i);
    i++;
  } else if (t === SUFFIX) {
    const pre = suffixAt(s, start, PRE_SUFFIXES);
    if (pre >= 0) {
      v = pre - PRE_SUFFIXES.length;
      i = start + (PRE_SUFFIXES[pre] ?? '').length;
    } else {
      const post = suffixAt(s, start, POST_SUFFIXES);
      if (post < 0) {
        c.type = INVALID;
        c.err = E_SUFFIX;
        c.errPos = start;
        return -1;
      }
      v = post;
      i = start + (POST_SUFFIXES[post] ?? '').length;
    }
  } else {
    c.type = INVALID;
    return -1;
  }
  c.pos = i;
  if (s.length - i === 0) c.type = END;
  else if (nt !== INVALID) c.type = nt;
  else nextToken(c);
  return big ?? v;
}

/** Sign of `a` against `b` per `apk version -t` (which compares even strings `-c` rejects). */
export function compareApkVersions(a: string, b: string): -1 | 0 | 1 {
  reset(A, a);
  reset(B, b);
  let av: number | bigint = 0;
  let bv: number | bigint = 0;
  while (A.type === B.type && A.type !== END && A.type !== INVALID && !(av < bv) && !(av > bv)) {
    av = getToken(A);
    bv = getToken(B);
  }
  if (av < bv) return -1;
  if (av > bv) return 1;
  const at = A.type;
  const bt = B.type;
  if (at === bt) return 0;
  // Equal so far: the longer one is newer unless what follows is a pre-release suffix.
  if (at === SUFFIX && getToken(A) < 0) return -1;
  if (bt === SUFFIX && getToken(B) < 0) return 1;
  if (at > bt) return -1;
  if (bt > at) return 1;
  return 0;
}

function describe(s: string, pos: number): string {
  const c = s.charCodeAt(pos);
  // Control characters are named by code point so the answer stays on one printable line.
  const shown = c >= 0x20 && c !== 0x7f ? `'${s.charAt(pos)}'` : `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
  return `${shown} at offset ${pos}`;
}

/**
 * Why `apk version -c` rejects `s`, or null when it accepts it. apk accepts the empty string
 * and a bare letter ("a"): the tokenizer starts with an empty digit component.
 */
export function apkVersionProblem(s: string): string | null {
  reset(V, s);
  while (V.type !== END && V.type !== INVALID) getToken(V);
  if (V.type === END) return null;
  switch (V.err) {
    case E_DASH:
      return `'-' not followed by 'r' at offset ${V.errPos}`;
    case E_ORDER:
      return `${describe(s, V.errPos)} is out of order (expected {digit}{.digit}...{letter}{_suffix{digit}}...{-r#})`;
    case E_SUFFIX:
      return `unknown suffix at offset ${V.errPos} (expected alpha, beta, pre, rc, cvs, svn, git, hg or p)`;
    default:
      return `unexpected character ${describe(s, V.errPos)}`;
  }
}

/** Same answer as `apk version -c` (apk-tools 2.14): true when the version is valid. */
export function isValidApkVersion(s: string): boolean {
  return apkVersionProblem(s) === null;
}
