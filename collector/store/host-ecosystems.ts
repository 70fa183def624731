/**
 * The ecosystems of the fleet's enrolled hosts (`Debian:12`, `Alpine:v3.21`): what the
 * feed catalogue picks its entries by. A revoked agent's host needs no feeds.
 */
import type { Db } from './db.ts';

export function enrolledEcosystems(db: Db): string[] {
  return db
    .prepare<[], string>(
      `SELECT DISTINCT h.ecosystem FROM hosts h JOIN agents a ON a.id = h.agent_id
       WHERE a.revoked_at IS NULL AND h.ecosystem IS NOT NULL ORDER BY h.ecosystem`,
    )
    .pluck()
    .all();
}
