/**
 * Content hashes of an inventory, built like a Merkle tree so the 2,000 packages are
 * serialised and hashed once per report, on both sides:
 *
 *   packageSetHash = sha256(JSON of the packages)
 *   inventoryHash  = sha256(JSON of the inventory with `packages` replaced by packageSetHash,
 *                    without the fields that change on every run without the host changing
 *                    (collectedAt, uptime))
 *   packagesHash   = sha256(JSON of [ecosystem, kernel, packageSetHash(, releasePin)]): what
 *                    correlation depends on, so identical hosts share one match
 *
 * The agent compares inventoryHash to decide whether to report at all; a report of a
 * package set the collector already holds names it by packageSetHash instead of sending it.
 */
import { createHash } from 'node:crypto';
import type { Inventory, Package } from './protocol.ts';

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The JSON text whose hash is packageSetHash; the collector stores exactly this text. */
export function packageSetJson(packages: readonly Package[]): string {
  return JSON.stringify(packages);
}

export function packageSetHash(packages: readonly Package[]): string {
  return sha256(packageSetJson(packages));
}

/** Both at once: the collector hashes the text it then stores. */
export function packageSetRef(packages: readonly Package[]): { hash: string; json: string } {
  const json = packageSetJson(packages);
  return { hash: sha256(json), json };
}

/**
 * `setHash` stands for the packages (their packageSetHash); pass it when it is known, or
 * when the inventory was sent without its packages.
 */
export function inventoryHash(inv: Inventory, setHash = packageSetHash(inv.packages)): string {
  const { collectedAt: _at, host, ...rest } = inv;
  const { uptimeSeconds: _up, ...stableHost } = host;
  return sha256(JSON.stringify({ ...rest, packages: setHash, host: stableHost }));
}

/** The hash of what correlation depends on (ecosystem, kernel, packages): identical fleets share it. */
export function packagesHash(inv: Inventory, setHash = packageSetHash(inv.packages)): string {
  // A host held at a minor release is judged by that release's stream: its matches are its own.
  const pin = inv.host.releasePin;
  return sha256(JSON.stringify(pin === undefined ? [inv.host.ecosystem, inv.kernel, setHash] : [inv.host.ecosystem, inv.kernel, setHash, pin]));
}
