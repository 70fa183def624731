/**
 * The fast path for a full report whose package set the collector holds already: most of
 * a fleet runs a few images, so most full reports repeat a set some host sent before.
 *
 * The agent serialises its report with JSON.stringify, so the frame contains the packages
 * exactly as packageSetJson makes them: `"packages":[...]` followed by `],"kernel":`. When
 * that span is byte for byte a stored set's JSON (same bytes, same packageSetHash), the frame is parsed and
 * validated with `[]` in its place (2 KB instead of 240 KB) and the stored packages are
 * used. The stored set is one this collector parsed, validated and hashed itself, so a
 * frame that takes this path means exactly what it would have meant parsed whole.
 *
 * Neither marker can occur inside a JSON string (a string's quotes are escaped), nor inside
 * a UTF-8 multi-byte character (whose bytes are all >= 0x80), so the frame is searched and
 * the span hashed as bytes: the 240 KB are never decoded to a string. The span is the
 * array's text whenever the frame came from JSON.stringify; any other frame
 * (whitespace, a different key order, a set the collector has not seen) hashes to nothing
 * known and is parsed whole, as before.
 */
import type { Package } from '../../shared/protocol.ts';

const START = Buffer.from('"packages":[', 'utf8');
const END = Buffer.from('],"kernel":', 'utf8');
/** Below this a frame is parsed whole: there is no set worth skipping. */
export const KNOWN_SET_MIN_FRAME = 16 * 1024;

export interface KnownSetFrame {
  /** The frame, decoded, with the packages' span replaced by `[]`. */
  rest: string;
  /** packageSetHash of the span. */
  hash: string;
  packages: Package[];
}

/** `match` finds the held set whose JSON is exactly the span's bytes (Reports.matchPackageSet). */
export async function splitKnownPackageSet(
  frame: Buffer,
  match: (json: Buffer) => Promise<{ hash: string; packages: Package[] } | undefined>,
): Promise<KnownSetFrame | null> {
  if (frame.length < KNOWN_SET_MIN_FRAME) return null;
  const start = frame.indexOf(START);
  if (start < 0) return null;
  const open = start + START.length - 1;
  const close = frame.indexOf(END, open);
  if (close < 0) return null;
  const held = await match(frame.subarray(open, close + 1));
  if (held === undefined) return null;
  return { rest: `${frame.toString('utf8', 0, open)}[]${frame.toString('utf8', close + 1)}`, hash: held.hash, packages: held.packages };
}
