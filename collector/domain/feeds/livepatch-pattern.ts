/**
 * Canonical Livepatch module patterns from Ubuntu's LSN OVAL (`lkp_Ubuntu_6_8_0[_|\d]+_aws_(\d+)`):
 * a regex written by a feed, so hostile until shown otherwise. Never handed to RegExp:
 * only a narrow grammar is accepted and matched here by a set-of-states simulation,
 * linear in the name whatever the pattern (no backtracking, so no ReDoS).
 *
 * Grammar (everything the real files use, nothing more):
 *   pattern := atom+ '(\d+)'        the capture is last, and the atom before it is a literal that is not a digit
 *   atom    := (literal | class) '+'?
 *   literal := [A-Za-z0-9_-]
 *   class   := '[' (literal-in-class | '\d' | '|')+ ']'   no ranges, no negation; `|` is a literal pipe, as in a regex
 *
 * The match is of the whole module name (the OVAL test searches /proc/modules lines; a
 * name that only contains a match is not taken as the patch: fewer mitigations, never
 * more). The captured digits are the patch level.
 */

export const MAX_MODULE_PATTERN = 256;
/** Levels are LSN numbers (104, 107): more than 9 digits is not one. */
const MAX_LEVEL_DIGITS = 9;
const MAX_CLASS_ITEMS = 32;

interface Atom {
  chars: ReadonlySet<string>;
  digits: boolean;
  plus: boolean;
}

export interface ModulePattern {
  readonly source: string;
  /** The patch level a whole-name match captures; null when the name does not match. */
  level(name: string): number | null;
}

const LITERAL = /^[A-Za-z0-9_-]$/;
const CLASS_LITERAL = /^[A-Za-z0-9_|]$/;
const CAPTURE = '(\\d+)';

function isDigit(c: string): boolean {
  return c >= '0' && c <= '9';
}

function parseAtoms(body: string): Atom[] | null {
  const atoms: Atom[] = [];
  let i = 0;
  while (i < body.length) {
    const c = body[i] as string;
    let atom: Atom;
    if (c === '[') {
      const chars = new Set<string>();
      let digits = false;
      let items = 0;
      i++;
      while (i < body.length && body[i] !== ']') {
        if (++items > MAX_CLASS_ITEMS) return null;
        if (body[i] === '\\' && body[i + 1] === 'd') {
          digits = true;
          i += 2;
        } else if (CLASS_LITERAL.test(body[i] as string)) {
          chars.add(body[i] as string);
          i++;
        } else {
          return null;
        }
      }
      if (body[i] !== ']' || items === 0) return null;
      i++;
      atom = { chars, digits, plus: false };
    } else if (LITERAL.test(c)) {
      atom = { chars: new Set([c]), digits: false, plus: false };
      i++;
    } else {
      return null;
    }
    if (body[i] === '+') {
      atom.plus = true;
      i++;
    }
    atoms.push(atom);
  }
  return atoms;
}

/** The pattern compiled, or null when it is outside the grammar (the caller warns and skips it). */
export function compileModulePattern(source: string): ModulePattern | null {
  if (source.length === 0 || source.length > MAX_MODULE_PATTERN || !source.endsWith(CAPTURE)) return null;
  const atoms = parseAtoms(source.slice(0, -CAPTURE.length));
  if (atoms === null || atoms.length === 0) return null;
  const last = atoms[atoms.length - 1] as Atom;
  // A non-digit literal right before the capture makes the captured level exactly the
  // name's trailing run of digits: no choice for the matcher to make.
  if (last.plus || last.digits || last.chars.size !== 1 || [...last.chars].some(isDigit)) return null;
  const n = atoms.length;
  const accepts = (a: Atom, c: string): boolean => a.chars.has(c) || (a.digits && isDigit(c));
  return {
    source,
    level(name: string): number | null {
      let end = name.length;
      while (end > 0 && isDigit(name[end - 1] as string)) end--;
      const digits = name.length - end;
      if (digits === 0 || digits > MAX_LEVEL_DIGITS) return null;
      // states[i]: the prefix read so far can be followed by atom i (n: everything matched).
      let states = new Uint8Array(n + 1);
      states[0] = 1;
      for (let p = 0; p < end; p++) {
        const c = name[p] as string;
        const next = new Uint8Array(n + 1);
        let any = false;
        for (let i = 0; i < n; i++) {
          if (states[i] === 0) continue;
          const a = atoms[i] as Atom;
          if (!accepts(a, c)) continue;
          next[i + 1] = 1;
          if (a.plus) next[i] = 1;
          any = true;
        }
        if (!any) return null;
        states = next;
      }
      return states[n] === 1 ? Number(name.slice(end)) : null;
    },
  };
}
