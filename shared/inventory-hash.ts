/**
 * The content hash of an inventory: what the agent compares to decide whether to send a
 * full report, and what the collector acks. Fields that change on every run without the
 * host changing (collectedAt, uptime) are left out, so an unchanged host sends a hash,
 * not 2,000 packages.
 */
import { createHash } from 'node:crypto';
import type { Inventory } from './protocol.ts';

export function inventoryHash(inv: Inventory): string {
  const { collectedAt: _at, host, ...rest } = inv;
  const { uptimeSeconds: _up, ...stableHost } = host;
  return createHash('sha256').update(JSON.stringify({ ...rest, host: stableHost })).digest('hex');
}

/** The hash of what correlation depends on (ecosystem, kernel, packages): identical fleets share it. */
export function packagesHash(inv: Inventory): string {
  return createHash('sha256').update(JSON.stringify([inv.host.ecosystem, inv.kernel, inv.packages])).digest('hex');
}
