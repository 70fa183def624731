/**
 * Agents: their keys, enrollment, revocation, connection state, last-seen time, version
 * and tags. Last-seen times of unchanged reports are batched (TOUCH_FLUSH_MS) and written
 * before anything reads them outside a transaction, and when the store closes.
 */
import { randomUUID } from 'node:crypto';
import { AgentRefusedError } from '../../shared/errors.ts';
import type { Db } from './db.ts';
import type { TokenRefusal } from './enrollment-tokens.ts';
import type { PartScope } from './part-scope.ts';
import type { SqlExecutor } from './sql/executor.ts';
import { sql, sqliteText } from './sql/query.ts';

export interface AgentRecord {
  id: string;
  publicKey: string;
  hostname: string;
  machineId: string | null;
  tokenId: number | null;
  enrolledAt: string;
  revokedAt: string | null;
  agentVersion: string | null;
  connected: boolean;
  /** The collector replica holding the agent's connection (services/replicas/duties.ts), null when not connected. */
  connectedBy: string | null;
  lastSeen: string | null;
  lastInventoryHash: string | null;
  tags: string[];
}

/** What a report's ingest needs to know of its agent (reports.ts). */
export interface AgentReportState {
  revokedAt: string | null;
  lastInventoryHash: string | null;
}

interface AgentRow {
  id: string;
  public_key: string;
  hostname: string;
  machine_id: string | null;
  token_id: number | null;
  enrolled_at: string;
  revoked_at: string | null;
  agent_version: string | null;
  connected: number;
  connected_by: string | null;
  last_seen: string | null;
  last_inventory_hash: string | null;
  tags: string;
}

function agentOf(r: AgentRow): AgentRecord {
  return {
    id: r.id,
    publicKey: r.public_key,
    hostname: r.hostname,
    machineId: r.machine_id,
    tokenId: r.token_id,
    enrolledAt: r.enrolled_at,
    revokedAt: r.revoked_at,
    agentVersion: r.agent_version,
    connected: r.connected === 1,
    connectedBy: r.connected_by,
    lastSeen: r.last_seen,
    lastInventoryHash: r.last_inventory_hash,
    tags: JSON.parse(r.tags) as string[],
  };
}

/** How long an unchanged report's last_seen may wait to be written (batched with others). */
export const TOUCH_FLUSH_MS = 1000;

export interface NewAgent {
  publicKey: string;
  hostname: string;
  machineId: string | null;
  agentVersion?: string | null;
}

const insert = sql(
  `INSERT INTO agents (id, public_key, hostname, machine_id, token_id, enrolled_at, agent_version)
   VALUES (?, ?, ?, ?, ?, ?, ?)`,
);
const byId = sql('SELECT * FROM agents WHERE id = ?');
const stateById = sql('SELECT revoked_at, last_inventory_hash FROM agents WHERE id = ?');
const byKey = sql('SELECT id FROM agents WHERE public_key = ?');
const revokeOne = sql('UPDATE agents SET revoked_at = ?, connected = 0, connected_by = NULL WHERE id = ? AND revoked_at IS NULL');
// `connected` and `connected_by` change together: connected = 1 exactly when connected_by names a replica.
const markConnected = sql('UPDATE agents SET connected = 1, connected_by = ?, last_seen = ? WHERE id = ?');
// Only the replica that holds the mark clears it: a late close of an old connection must not undo a newer one's mark.
const markDisconnected = sql('UPDATE agents SET connected = 0, connected_by = NULL, last_seen = ? WHERE id = ? AND connected_by = ?');
const disconnectAll = sql('UPDATE agents SET connected = 0, connected_by = NULL WHERE connected = 1 OR connected_by IS NOT NULL');
const clearMarksOf = sql('UPDATE agents SET connected = 0, connected_by = NULL WHERE connected_by = ?');
const clearOrphans = sql(
  `UPDATE agents SET connected = 0, connected_by = NULL
   WHERE connected = 1 AND (connected_by IS NULL OR NOT EXISTS (SELECT 1 FROM replicas r WHERE r.id = agents.connected_by))`,
);
// A mark cleared while its replica was cut off is written again; one another replica holds now is left to it.
const remark = sql({
  sqlite: 'UPDATE agents SET connected = 1, connected_by = ? WHERE connected_by IS NULL AND revoked_at IS NULL AND id IN (SELECT value FROM json_each(?))',
  postgres: 'UPDATE agents SET connected = 1, connected_by = ? WHERE connected_by IS NULL AND revoked_at IS NULL AND id = ANY (?::text[])',
});
// max()/greatest(): a deferred touch flushed late never moves last_seen backwards.
const touchOne = sql({
  sqlite: "UPDATE agents SET last_seen = max(coalesce(last_seen, ''), ?) WHERE id = ?",
  postgres: "UPDATE agents SET last_seen = greatest(coalesce(last_seen, ''), ?) WHERE id = ?",
});
/** Many agents' last_seen in one statement on PostgreSQL (one round trip, not one per agent). */
const touchMany = sql({
  postgres: `UPDATE agents a SET last_seen = greatest(coalesce(a.last_seen, ''), t.at)
             FROM unnest(?::text[], ?::text[]) AS t (id, at) WHERE a.id = t.id`,
});
const setVersion = sql('UPDATE agents SET agent_version = ? WHERE id = ?');
const setTags = sql('UPDATE agents SET tags = ? WHERE id = ?');
const setInventory = sql('UPDATE agents SET last_inventory_hash = ?, last_seen = ? WHERE id = ?');
const dataVersion = sql({ sqlite: 'PRAGMA data_version', postgres: 'SELECT 0 AS data_version' });

/** A scope's executor is a transaction's when it can make savepoints (sql/executor.ts). */
export function inTransaction(ex: SqlExecutor): boolean {
  return 'savepoint' in ex;
}

/** What every scope of one store shares about agents: the batched touches and SQLite's report-state cache. */
/** Rolls an enrollment back when its token's last use went to another meanwhile; never leaves enrollWithToken. */
class TokenLost extends Error {
  readonly reason: TokenRefusal;
  constructor(reason: TokenRefusal) {
    super(`the enrollment token was ${reason}`);
    this.reason = reason;
  }
}

class AgentsShared {
  readonly pendingTouches = new Map<string, string>();
  touchTimer: NodeJS.Timeout | undefined;
  /**
   * SQLite only: what the unchanged fast path reads of each agent, so a heartbeat-like report
   * costs no row read. This store's writes of those columns drop the agent's entry (before
   * their commit, see #forget); any other connection's commit (a CLI `agent revoke --db`)
   * changes PRAGMA data_version, which drops them all before the next read, so a revocation
   * is seen by the next report.
   */
  readonly reportState = new Map<string, AgentReportState>();
  seenDataVersion = -1;
  /** Bumped by every drop: a row read before a drop is not kept after it. */
  generation = 0;
}

export class Agents {
  readonly #scope: PartScope;
  readonly #shared: AgentsShared;

  constructor(scope: PartScope) {
    this.#scope = scope;
    this.#shared = scope.shared('agents', () => new AgentsShared());
  }

  /** Registers an agent's public key; a key that is enrolled already is refused (AgentRefusedError 'already-enrolled'). */
  enroll(agent: NewAgent & { tokenId: number | null }, now = new Date()): Promise<string> {
    return this.#scope.atomic(async (s) => {
      if ((await s.ex.get(byKey, [agent.publicKey])) !== undefined) {
        throw new AgentRefusedError('already-enrolled', 'this public key is enrolled already: make a new key to enroll again');
      }
      const id = randomUUID();
      await s.ex.run(insert, [id, agent.publicKey, agent.hostname, agent.machineId, agent.tokenId, now.toISOString(), agent.agentVersion ?? null]);
      await s.store.audit.record(`agent:${id}`, 'agent.enroll', `agent:${id}`, JSON.stringify({ hostname: agent.hostname, tokenId: agent.tokenId }), now);
      return id;
    });
  }

  /**
   * Token use and enrollment in one transaction: a refused key does not use up the token,
   * and a token's last use cannot enroll two agents. The use is taken last: from then to the
   * commit the token's row is locked, and on PostgreSQL every other enrollment with the same
   * counted token (a whole fleet's, often) waits on it; taken first, the wait covered the
   * key check, the insert and the audit row too.
   */
  async enrollWithToken(token: string, agent: NewAgent, now = new Date()): Promise<{ ok: true; agentId: string } | { ok: false; reason: TokenRefusal }> {
    try {
      return await this.#scope.atomic(async (s) => {
        const usable = await s.store.tokens.check(token, now);
        if (!usable.ok) return usable;
        const agentId = await s.store.agents.enroll({ ...agent, agentVersion: agent.agentVersion ?? null, tokenId: usable.tokenId }, now);
        const taken = await s.store.tokens.consume(token, now);
        // Another enrollment took the last use since the check: this one's rows roll back.
        if (!taken.ok) throw new TokenLost(taken.reason);
        return { ok: true as const, agentId };
      });
    } catch (err) {
      if (err instanceof TokenLost) return { ok: false, reason: err.reason };
      throw err;
    }
  }

  async get(id: string): Promise<AgentRecord | undefined> {
    await this.#flushOutsideTransaction();
    const r = await this.#scope.ex.get<AgentRow>(byId, [id]);
    return r === undefined ? undefined : agentOf(r);
  }

  /** false when there is no such agent or it was revoked already. */
  revoke(id: string, actor: string, now = new Date()): Promise<boolean> {
    return this.#scope.atomic(async (s) => {
      this.#forget(id);
      const changed = (await s.ex.run(revokeOne, [now.toISOString(), id])) === 1;
      if (changed) await s.store.audit.record(actor, 'agent.revoke', `agent:${id}`, null, now);
      return changed;
    });
  }

  /** The agent's connection is held by `replica` from now: the newest connection wins, wherever it is. */
  async markConnected(id: string, replica: string, now = new Date()): Promise<void> {
    await this.#scope.ex.run(markConnected, [replica, now.toISOString(), id]);
  }

  /** Clears the agent's mark if `replica` still holds it; false when another replica (or none) does. */
  async markDisconnected(id: string, replica: string, now = new Date()): Promise<boolean> {
    return (await this.#scope.ex.run(markDisconnected, [now.toISOString(), id, replica])) === 1;
  }

  /**
   * A SQLite collector that starts has no connections, whatever the last run left in the
   * table. Not for PostgreSQL, where the marks belong to the replicas holding them: a dead
   * replica's are cleared by the others (Replicas.sweep).
   */
  markAllDisconnected(): Promise<number> {
    return this.#scope.ex.run(disconnectAll);
  }

  /** Clears every mark `replica` holds (it stopped, or it is dead: store/replicas.ts); resolves with how many. */
  clearMarksOf(replica: string): Promise<number> {
    return this.#scope.ex.run(clearMarksOf, [replica]);
  }

  /** Clears the marks that name no replica of the `replicas` table, or none at all; resolves with how many. */
  clearOrphanMarks(): Promise<number> {
    return this.#scope.ex.run(clearOrphans);
  }

  /** Marks the agents as connected to `replica` again where no replica holds them (Replicas.beat); resolves with how many. */
  async remark(ids: readonly string[], replica: string): Promise<number> {
    if (ids.length === 0) return 0;
    const list = this.#scope.ex.dialect === 'postgres' ? [...ids] : JSON.stringify(ids);
    return this.#scope.ex.run(remark, [replica, list]);
  }

  /** last_seen for many agents in one transaction (the gateway's heartbeat tick). */
  async touch(ids: Iterable<string>, now = new Date()): Promise<void> {
    const at = now.toISOString();
    await this.#touchAll([...ids].map((id) => [id, at]));
  }

  async setVersion(id: string, version: string): Promise<void> {
    await this.#scope.ex.run(setVersion, [version, id]);
  }

  setTags(id: string, tags: readonly string[], actor: string, now = new Date()): Promise<boolean> {
    return this.#scope.atomic(async (s) => {
      const changed = (await s.ex.run(setTags, [JSON.stringify([...new Set(tags)].sort()), id])) === 1;
      if (changed) await s.store.audit.record(actor, 'agent.tags', `agent:${id}`, JSON.stringify(tags), now);
      return changed;
    });
  }

  /**
   * The agent's revocation and last inventory hash; no touch is flushed. On SQLite outside a
   * transaction from memory when it can be (see AgentsShared.reportState). On PostgreSQL always
   * from the row: other collectors write the same rows and nothing tells this one (no
   * data_version there), so a cached revocation or inventory hash could be stale.
   */
  async reportState(agentId: string): Promise<AgentReportState | undefined> {
    const ex = this.#scope.ex;
    // Inside a transaction a row may hold what a rollback is about to undo: read, never keep.
    if (ex.dialect !== 'sqlite' || inTransaction(ex)) return this.#readState(agentId);
    const shared = this.#shared;
    const generation = shared.generation;
    const version = (await ex.get<{ data_version: number }>(dataVersion))?.data_version ?? 0;
    if (version !== shared.seenDataVersion) {
      shared.reportState.clear();
      shared.seenDataVersion = version;
    }
    const cached = shared.reportState.get(agentId);
    if (cached !== undefined) return cached;
    const state = await this.#readState(agentId);
    // A drop (or another connection's commit) since the version was read: the row may be older than it.
    if (state !== undefined && generation === shared.generation && version === shared.seenDataVersion) shared.reportState.set(agentId, state);
    return state;
  }

  async #readState(agentId: string): Promise<AgentReportState | undefined> {
    const r = await this.#scope.ex.get<{ revoked_at: string | null; last_inventory_hash: string | null }>(stateById, [agentId]);
    return r === undefined ? undefined : { revokedAt: r.revoked_at, lastInventoryHash: r.last_inventory_hash };
  }

  /**
   * Drops the agent's cached report state, inside the transaction that writes its row: a drop
   * (unlike a fill) is right whether that transaction commits or not, and done before the
   * commit no reader can keep the old row across it (a read under way when it happens is not
   * kept: `generation`).
   */
  #forget(agentId: string): void {
    this.#shared.reportState.delete(agentId);
    this.#shared.generation++;
  }

  /** A new inventory stored for the agent, inside the report's transaction. */
  async recordInventory(agentId: string, hash: string, now: Date): Promise<void> {
    this.#forget(agentId);
    await this.#scope.ex.run(setInventory, [hash, now.toISOString(), agentId]);
  }

  /** last_seen for one agent now, inside the caller's transaction. */
  async seen(agentId: string, now: Date): Promise<void> {
    await this.#scope.ex.run(touchOne, [now.toISOString(), agentId]);
  }

  /**
   * last_seen for one agent, written with others within TOUCH_FLUSH_MS (or before last_seen is
   * read, or when the store closes). Inside a transaction it is written there at once: a
   * timer must not run statements on a transaction that will have ended.
   */
  async seenLater(agentId: string, now: Date): Promise<void> {
    if (inTransaction(this.#scope.ex)) {
      await this.seen(agentId, now);
      return;
    }
    const shared = this.#shared;
    const at = now.toISOString();
    const pending = shared.pendingTouches.get(agentId);
    if (pending === undefined || pending < at) shared.pendingTouches.set(agentId, at);
    shared.touchTimer ??= setTimeout(() => {
      // A failure puts the touches back (flushTouches); the next flush or close writes them.
      this.flushTouches().catch(() => undefined);
    }, TOUCH_FLUSH_MS).unref();
  }

  /** Writes the batched last_seen times in one transaction (store.close() awaits this). */
  async flushTouches(): Promise<void> {
    const shared = this.#shared;
    if (shared.touchTimer !== undefined) clearTimeout(shared.touchTimer);
    shared.touchTimer = undefined;
    if (shared.pendingTouches.size === 0) return;
    const pending = [...shared.pendingTouches];
    shared.pendingTouches.clear();
    try {
      await this.#touchAll(pending);
    } catch (err) {
      for (const [id, at] of pending) {
        const later = shared.pendingTouches.get(id);
        if (later === undefined || later < at) shared.pendingTouches.set(id, at);
      }
      throw err;
    }
  }

  /** Reads of last_seen outside a transaction see the batched touches; inside one they are not written (a rollback would lose them). */
  async #flushOutsideTransaction(): Promise<void> {
    if (!inTransaction(this.#scope.ex)) await this.flushTouches();
  }

  /** For the other parts' reads of last_seen (hosts.ts). */
  flushBeforeRead(): Promise<void> {
    return this.#flushOutsideTransaction();
  }

  /** One transaction: on PostgreSQL one statement, on SQLite the prepared statement per agent. */
  async #touchAll(touches: readonly (readonly [string, string])[]): Promise<void> {
    if (touches.length === 0) return;
    await this.#scope.atomic(async (s) => {
      if (s.ex.dialect === 'postgres') {
        await s.ex.run(touchMany, [touches.map(([id]) => id), touches.map(([, at]) => at)]);
        return;
      }
      for (const [id, at] of touches) await s.ex.run(touchOne, [at, id]);
    });
  }
}

/**
 * The synchronous Store.close() (store.ts) on SQLite: the batched touches written with
 * better-sqlite3's own calls, since a close that returns nothing cannot await the executor.
 * AsyncStore.close() awaits flushTouches() instead, on both engines.
 */
export function flushTouchesNow(db: Db, scope: PartScope): void {
  const shared = scope.shared('agents', () => new AgentsShared());
  if (shared.touchTimer !== undefined) clearTimeout(shared.touchTimer);
  shared.touchTimer = undefined;
  if (shared.pendingTouches.size === 0) return;
  const pending = [...shared.pendingTouches];
  shared.pendingTouches.clear();
  const touch = db.prepare<[string, string]>(sqliteText(touchOne));
  db.transaction(() => {
    for (const [id, at] of pending) touch.run(at, id);
  })();
}
