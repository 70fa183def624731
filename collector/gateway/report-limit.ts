/**
 * The per-report package limit at the gateway, checked before the frame costs anything
 * that grows with its content. Parsing a 200,000-package frame (21.7 MB) took the event
 * loop for longer than a health check may wait, before the schema could refuse it; so an
 * authenticated agent's frame is first scanned for how many JSON objects it holds (one
 * pass over the bytes, stopping as soon as there are too many), and a parsed report's
 * package count is checked before the schema walks its packages.
 */
import { TooManyPackagesError } from '../../shared/errors.ts';
import { LIMITS } from '../../shared/protocol.ts';

/**
 * Objects a valid message holds besides its packages (or a result's package changes), at
 * most: a report's message, inventory, host, os, hardware, kernel, kernel package,
 * live patch and reboot (9), installed kernels (1,000), reboot reasons (100), services
 * (LIMITS.list) and warnings (1,000), as InventorySchema bounds them. A result holds
 * fewer (64 commands).
 */
const OTHER_OBJECTS = 9 + 1000 + 100 + LIMITS.list + 1000;

/** More JSON objects than this in one frame: not a valid message, whatever its keys say. */
export const MAX_FRAME_OBJECTS = LIMITS.packages + OTHER_OBJECTS;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const BRACE = 0x7b;

/**
 * The `{` outside strings in a JSON text, counted up to `stopAbove + 1`. Exact for any
 * text JSON.parse accepts (a brace in a string is skipped, an escaped quote does not end
 * one); for anything else it is a count the caller never trusts beyond refusing.
 */
export function countJsonObjects(bytes: Uint8Array, stopAbove: number): number {
  let count = 0;
  let inString = false;
  const n = bytes.length;
  for (let i = 0; i < n; i++) {
    const c = bytes[i];
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === BRACE && ++count > stopAbove) return count;
  }
  return count;
}

function refuse(what: string): never {
  throw new TooManyPackagesError(`${what}: a report holds at most ${LIMITS.packages} packages (no real host has nearly as many); nothing of it was stored`);
}

/** Throws TooManyPackagesError when the frame holds more objects than any valid message could. */
export function assertFrameWithinPackageLimit(frame: Uint8Array): void {
  const objects = countJsonObjects(frame, MAX_FRAME_OBJECTS);
  if (objects > MAX_FRAME_OBJECTS) refuse(`the frame holds more than ${MAX_FRAME_OBJECTS} JSON objects`);
}

/** Throws TooManyPackagesError for a parsed report whose inventory lists more than LIMITS.packages packages; anything else passes to the schema. */
export function assertReportWithinPackageLimit(json: unknown): void {
  if (typeof json !== 'object' || json === null || (json as { type?: unknown }).type !== 'report') return;
  const packages = ((json as { inventory?: unknown }).inventory as { packages?: unknown } | null | undefined)?.packages;
  if (Array.isArray(packages) && packages.length > LIMITS.packages) refuse(`the report lists ${packages.length} packages`);
}

