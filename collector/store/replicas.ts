/**
 * The collector processes sharing this store and whether each is alive (issue 12 §3), so
 * that the agents a dead one held are no longer shown as connected.
 *
 * Each replica rewrites its row every lease period / 3 (`beat`), pushing `expires_at` a
 * lease period ahead. Times are the database's clock, as ISO text like every other time
 * in the store: replicas whose own clocks disagree still agree on which row has expired.
 * The replica holding the `housekeeping` duty clears the connection marks of replicas whose
 * row has expired (`sweep`); a replica that stops clears its own and removes its row
 * (`leave`).
 *
 * A replica that was only cut off (the database unreachable for longer than its lease) may
 * have had its marks cleared while it still held the sockets: its next beat finds its row
 * expired (or gone) and marks its connections again. The beat and the sweep lock the
 * replica's row on PostgreSQL (SQLite runs one transaction at a time), so a sweep and a
 * beat of the same replica are ordered: either the sweep clears first and the beat marks
 * again, or the beat renews first and the sweep leaves that replica alone.
 */
import type { PartScope } from './part-scope.ts';
import { sql } from './sql/query.ts';

/** The database's clock as ISO text (`2026-12-03T18:17:40.278Z`, as Date.toISOString writes it), and that plus a parameter's milliseconds. */
const NOW = {
  sqlite: "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
  postgres: `to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`,
};
const NOW_PLUS_MS = {
  sqlite: "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', (? / 1000.0) || ' seconds')",
  postgres: `to_char((now() + ?::bigint * interval '1 millisecond') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`,
};

/** How long a dead replica's row is kept for operators to see after its marks were cleared. */
export const DEAD_REPLICA_RETENTION_MS = 24 * 3600_000;

const liveOwn = sql({
  sqlite: `SELECT expires_at > ${NOW.sqlite} AS live FROM replicas WHERE id = ?`,
  postgres: `SELECT expires_at > ${NOW.postgres} AS live FROM replicas WHERE id = ? FOR UPDATE`,
});
const upsert = sql({
  sqlite: `INSERT INTO replicas (id, host, pid, started_at, heartbeat_at, expires_at) VALUES (?, ?, ?, ?, ${NOW.sqlite}, ${NOW_PLUS_MS.sqlite})
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at`,
  postgres: `INSERT INTO replicas (id, host, pid, started_at, heartbeat_at, expires_at) VALUES (?, ?, ?, ?, ${NOW.postgres}, ${NOW_PLUS_MS.postgres})
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at`,
});
const dead = sql({
  sqlite: `SELECT id, heartbeat_at FROM replicas WHERE expires_at <= ${NOW.sqlite} ORDER BY id`,
  postgres: `SELECT id, heartbeat_at FROM replicas WHERE expires_at <= ${NOW.postgres} ORDER BY id FOR UPDATE`,
});
const forget = sql({
  sqlite: `DELETE FROM replicas WHERE expires_at <= ${NOW_PLUS_MS.sqlite}`,
  postgres: `DELETE FROM replicas WHERE expires_at <= ${NOW_PLUS_MS.postgres}`,
});
const remove = sql('DELETE FROM replicas WHERE id = ?');
const list = sql({
  sqlite: `SELECT id, host, pid, started_at, heartbeat_at, expires_at, expires_at > ${NOW.sqlite} AS live FROM replicas ORDER BY id`,
  postgres: `SELECT id, host, pid, started_at, heartbeat_at, expires_at, expires_at > ${NOW.postgres} AS live FROM replicas ORDER BY id`,
});

export interface ReplicaIdentity {
  /** `host:pid:random` (services/replicas/duties.ts), also what `agents.connected_by` holds. */
  id: string;
  host: string;
  pid: number;
  /** When this process started serving (ISO). */
  startedAt: string;
}

export interface ReplicaRecord extends ReplicaIdentity {
  heartbeatAt: string;
  expiresAt: string;
  live: boolean;
}

export interface Beat {
  /** The row had expired or was missing (the first beat, or a replica cut off for longer than its lease): its marks were written again. */
  revived: boolean;
  /** Connections marked again by this beat. */
  remarked: number;
}

export interface Swept {
  /** Replicas found dead whose connection marks were cleared, with the agents each had. */
  replicas: { id: string; heartbeatAt: string; agents: number }[];
  /** Marks of no replica known here (from before connection owners were recorded, or a store moved from elsewhere). */
  orphans: number;
}

export class Replicas {
  readonly #scope: PartScope;

  constructor(scope: PartScope) {
    this.#scope = scope;
  }

  /**
   * Renews this replica's row for `leaseMs` more. When it had expired (or there was none)
   * another replica may have cleared this one's marks meanwhile: `connected()` (the agents
   * whose sockets this replica holds) are marked again, those not taken by another since.
   */
  beat(self: ReplicaIdentity, leaseMs: number, connected: () => readonly string[]): Promise<Beat> {
    return this.#scope.atomic(async (s) => {
      const row = await s.ex.get<{ live: number | boolean }>(liveOwn, [self.id]);
      await s.ex.run(upsert, [self.id, self.host, self.pid, self.startedAt, leaseMs]);
      if (row !== undefined && (row.live === true || row.live === 1)) return { revived: false, remarked: 0 };
      return { revived: true, remarked: await s.store.agents.remark(connected(), self.id) };
    });
  }

  /**
   * Clears the connection marks of every replica whose row has expired, and with `orphans`
   * the marks naming no replica at all (a scan of the connected agents: not every sweep).
   * Rows dead for DEAD_REPLICA_RETENTION_MS are removed.
   */
  sweep(options: { orphans: boolean }): Promise<Swept> {
    return this.#scope.atomic(async (s) => {
      const replicas: Swept['replicas'] = [];
      for (const r of await s.ex.all<{ id: string; heartbeat_at: string }>(dead)) {
        const agents = await s.store.agents.clearMarksOf(r.id);
        if (agents > 0) replicas.push({ id: r.id, heartbeatAt: r.heartbeat_at, agents });
      }
      const orphans = options.orphans ? await s.store.agents.clearOrphanMarks() : 0;
      await s.ex.run(forget, [-DEAD_REPLICA_RETENTION_MS]);
      return { replicas, orphans };
    });
  }

  /** A replica that stops: its marks cleared (its sockets are closed) and its row removed. Resolves with the marks cleared. */
  leave(replicaId: string): Promise<number> {
    return this.#scope.atomic(async (s) => {
      const cleared = await s.store.agents.clearMarksOf(replicaId);
      await s.ex.run(remove, [replicaId]);
      return cleared;
    });
  }

  /** Every replica with a row, live or not, by the database's clock. */
  async list(): Promise<ReplicaRecord[]> {
    const rows = await this.#scope.ex.all<{ id: string; host: string; pid: number | string; started_at: string; heartbeat_at: string; expires_at: string; live: number | boolean }>(list);
    return rows.map((r) => ({
      id: r.id,
      host: r.host,
      pid: Number(r.pid),
      startedAt: r.started_at,
      heartbeatAt: r.heartbeat_at,
      expiresAt: r.expires_at,
      live: r.live === true || r.live === 1,
    }));
  }
}
