/**
 * The fast path for a full report whose package set the collector holds already: most of
 * a fleet runs a few images, so most full reports repeat a set some host sent before.
 *
 * The agent serialises its report with JSON.stringify, so the frame contains the packages
 * exactly as packageSetJson makes them: `"packages":[...]` followed by `],"kernel":`. That
 * span is hashed as bytes; when the hash names a stored set, the frame is parsed and
 * validated with `[]` in its place (2 KB instead of 240 KB) and the stored packages are
 * used. The stored set is one this collector parsed, validated and hashed itself, so a
 * frame that takes this path means exactly what it would have meant parsed whole.
 *
 * Neither marker can occur inside a JSON string (a string's quotes are escaped), so the
 * span is the array's text whenever the frame came from JSON.stringify; any other frame
 * (whitespace, a different key order, a set the collector has not seen) hashes to nothing
 * known and is parsed whole, as before.
 */
import { createHash } from 'node:crypto';
import type { Package } from '../../shared/protocol.ts';

const START = '"packages":[';
const END = '],"kernel":';
/** Below this a frame is parsed whole: there is no set worth skipping. */
export const KNOWN_SET_MIN_FRAME = 16 * 1024;

export interface KnownSetFrame {
  /** The frame with the packages' span replaced by `[]`. */
  rest: string;
  /** packageSetHash of the span. */
  hash: string;
  packages: Package[];
}

export function splitKnownPackageSet(text: string, lookup: (setHash: string) => Package[] | undefined): KnownSetFrame | null {
  if (text.length < KNOWN_SET_MIN_FRAME) return null;
  const start = text.indexOf(START);
  if (start < 0) return null;
  const open = start + START.length - 1;
  const close = text.indexOf(END, open);
  if (close < 0) return null;
  const hash = createHash('sha256').update(text.slice(open, close + 1)).digest('hex');
  const packages = lookup(hash);
  if (packages === undefined) return null;
  return { rest: `${text.slice(0, open)}[]${text.slice(close + 1)}`, hash, packages };
}
