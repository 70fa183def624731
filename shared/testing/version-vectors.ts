/**
 * Readers for the real version-comparison vectors in ../shared/data/version-vectors (outside
 * the repository, see its README): used by the comparator tests and the benchmark only.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const VECTORS_DIR = join(import.meta.dirname, '..', '..', '..', 'shared', 'data', 'version-vectors');

export interface VectorPair {
  /** 1-based line number in the file, for failure reports. */
  readonly line: number;
  readonly a: string;
  readonly b: string;
  readonly expected: -1 | 0 | 1;
}

function sign(text: string, file: string, line: number): -1 | 0 | 1 {
  if (text === '-1') return -1;
  if (text === '0') return 0;
  if (text === '1') return 1;
  throw new Error(`${file}:${line}: result '${text}' is not -1, 0 or 1`);
}

/** `left<TAB>right<TAB>result` rows; `#` lines are comments. Malformed rows throw: the data is ours. */
export function readTsvVectors(file: string): VectorPair[] {
  const text = readFileSync(join(VECTORS_DIR, file), 'utf8');
  const out: VectorPair[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const row = lines[i] ?? '';
    if (row === '' || row.startsWith('#')) continue;
    const cols = row.split('\t');
    if (cols.length !== 3) throw new Error(`${file}:${i + 1}: expected 3 tab-separated columns, got ${cols.length}`);
    out.push({ line: i + 1, a: cols[0] ?? '', b: cols[1] ?? '', expected: sign(cols[2] ?? '', file, i + 1) });
  }
  return out;
}

/** osv-scanner's fixture format: `A < B`, `A = B` or `A > B`; `#` comments and blank lines. */
export function readOsvScannerVectors(file: string): VectorPair[] {
  const text = readFileSync(join(VECTORS_DIR, file), 'utf8');
  const out: VectorPair[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const row = (lines[i] ?? '').trim();
    if (row === '' || row.startsWith('#')) continue;
    const parts = row.split(' ');
    const op = parts[1];
    if (parts.length !== 3 || (op !== '<' && op !== '=' && op !== '>')) {
      throw new Error(`${file}:${i + 1}: expected 'A <|=|> B', got '${row}'`);
    }
    out.push({ line: i + 1, a: parts[0] ?? '', b: parts[2] ?? '', expected: op === '<' ? -1 : op === '=' ? 0 : 1 });
  }
  return out;
}

/** One version per line; `#` comments. */
export function readVersionList(file: string): { line: number; version: string }[] {
  const text = readFileSync(join(VECTORS_DIR, file), 'utf8');
  const out: { line: number; version: string }[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const row = lines[i] ?? '';
    if (row === '' || row.startsWith('#')) continue;
    out.push({ line: i + 1, version: row });
  }
  return out;
}

export { seededRandom } from './random.ts';

/** Every pair the comparator gets wrong, in either direction, as a readable report line. */
export function disagreements(pairs: readonly VectorPair[], cmp: (a: string, b: string) => -1 | 0 | 1): string[] {
  const bad: string[] = [];
  for (const p of pairs) {
    const got = cmp(p.a, p.b);
    const back = cmp(p.b, p.a);
    if (got !== p.expected || back !== -p.expected) bad.push(`line ${p.line}: ${p.a} vs ${p.b}: expected ${p.expected}, got ${got} (reversed ${back})`);
  }
  return bad;
}

/**
 * A variant of `v` made by one random edit: insert, replace or delete a character from `alphabet`,
 * duplicate a digit run, or add a leading zero. Used to reach edge cases the real data lacks.
 */
export function mutateVersion(v: string, alphabet: string, random: () => number): string {
  const at = Math.floor(random() * (v.length + 1));
  const ch = alphabet.charAt(Math.floor(random() * alphabet.length));
  switch (Math.floor(random() * 5)) {
    case 0:
      return v.slice(0, at) + ch + v.slice(at);
    case 1:
      return v.slice(0, at) + ch + v.slice(at + 1);
    case 2:
      return v.length > 1 ? v.slice(0, at) + v.slice(at + 1) : v + ch;
    case 3: {
      const m = /\d+/.exec(v.slice(at));
      return m === null ? v + ch : v.slice(0, at + m.index) + m[0] + v.slice(at + m.index);
    }
    default: {
      const m = /\d/.exec(v.slice(at));
      return m === null ? `0${v}` : `${v.slice(0, at + m.index)}0${v.slice(at + m.index)}`;
    }
  }
}
