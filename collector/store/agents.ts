/**
 * Agents: their keys, enrollment, revocation, connection state, last-seen time, version
 * and tags. Last-seen times of unchanged reports are batched (TOUCH_FLUSH_MS) and written
 * before anything reads them.
 */
import { randomUUID } from 'node:crypto';
import { AgentRefusedError } from '../../shared/errors.ts';
import type { AuditLog } from './audit-log.ts';
import type { Db } from './db.ts';
import type { EnrollmentTokens, TokenRefusal } from './enrollment-tokens.ts';

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

export class Agents {
  readonly #db: Db;
  readonly #audit: AuditLog;
  readonly #insert;
  readonly #byId;
  readonly #byKey;
  readonly #revoke;
  readonly #setConnected;
  readonly #disconnectAll;
  readonly #touch;
  readonly #setVersion;
  readonly #setTags;
  readonly #setInventory;
  readonly #pendingTouches = new Map<string, string>();
  #touchTimer: NodeJS.Timeout | undefined;
  /**
   * What the unchanged fast path reads of each agent, so a heartbeat-like report costs no
   * row read. This connection's writes of those columns drop the agent's entry; any other
   * connection's commit (a CLI `agent revoke --db`) changes PRAGMA data_version, which
   * drops them all before the next read, so a revocation is seen by the next report.
   */
  readonly #reportState = new Map<string, AgentReportState>();
  readonly #dataVersion;
  #seenDataVersion = -1;
  readonly #enrollTx;

  constructor(db: Db, audit: AuditLog, tokens: EnrollmentTokens) {
    this.#db = db;
    this.#audit = audit;
    this.#insert = db.prepare(
      `INSERT INTO agents (id, public_key, hostname, machine_id, token_id, enrolled_at, agent_version)
       VALUES (@id, @publicKey, @hostname, @machineId, @tokenId, @now, @agentVersion)`,
    );
    this.#byId = db.prepare<[string], AgentRow>('SELECT * FROM agents WHERE id = ?');
    this.#byKey = db.prepare<[string], { id: string }>('SELECT id FROM agents WHERE public_key = ?');
    this.#revoke = db.prepare<[string, string]>('UPDATE agents SET revoked_at = ?, connected = 0 WHERE id = ? AND revoked_at IS NULL');
    this.#setConnected = db.prepare<[number, string, string]>('UPDATE agents SET connected = ?, last_seen = ? WHERE id = ?');
    this.#disconnectAll = db.prepare('UPDATE agents SET connected = 0 WHERE connected = 1');
    // max(): a deferred touch flushed late never moves last_seen backwards.
    this.#touch = db.prepare<[string, string]>("UPDATE agents SET last_seen = max(coalesce(last_seen, ''), ?) WHERE id = ?");
    this.#setVersion = db.prepare<[string, string]>('UPDATE agents SET agent_version = ? WHERE id = ?');
    this.#setTags = db.prepare<[string, string]>('UPDATE agents SET tags = ? WHERE id = ?');
    this.#setInventory = db.prepare<[string, string, string]>('UPDATE agents SET last_inventory_hash = ?, last_seen = ? WHERE id = ?');
    this.#dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();
    this.#enrollTx = db.transaction((token: string, agent: NewAgent, now: Date) => {
      const taken = tokens.consume(token, now);
      if (!taken.ok) return taken;
      const agentId = this.enroll({ ...agent, tokenId: taken.tokenId }, now);
      return { ok: true as const, agentId };
    });
  }

  /** Registers an agent's public key; a key that is enrolled already is refused (AgentRefusedError 'already-enrolled'). */
  enroll(agent: NewAgent & { tokenId: number | null }, now = new Date()): string {
    if (this.#byKey.get(agent.publicKey) !== undefined) {
      throw new AgentRefusedError('already-enrolled', 'this public key is enrolled already: make a new key to enroll again');
    }
    const id = randomUUID();
    this.#insert.run({ id, publicKey: agent.publicKey, hostname: agent.hostname, machineId: agent.machineId, tokenId: agent.tokenId, now: now.toISOString(), agentVersion: agent.agentVersion ?? null });
    this.#audit.record(`agent:${id}`, 'agent.enroll', `agent:${id}`, JSON.stringify({ hostname: agent.hostname, tokenId: agent.tokenId }), now);
    return id;
  }

  /**
   * Token use and enrollment in one transaction: a refused key does not use up the token,
   * and a token's last use cannot enroll two agents.
   */
  enrollWithToken(token: string, agent: NewAgent, now = new Date()): { ok: true; agentId: string } | { ok: false; reason: TokenRefusal } {
    return this.#enrollTx.immediate(token, { ...agent, agentVersion: agent.agentVersion ?? null }, now);
  }

  get(id: string): AgentRecord | undefined {
    this.flushTouches();
    const r = this.#byId.get(id);
    return r === undefined ? undefined : agentOf(r);
  }

  /** false when there is no such agent or it was revoked already. */
  revoke(id: string, actor: string, now = new Date()): boolean {
    return this.#db.transaction(() => {
      this.#reportState.delete(id);
      const changed = this.#revoke.run(now.toISOString(), id).changes === 1;
      if (changed) this.#audit.record(actor, 'agent.revoke', `agent:${id}`, null, now);
      return changed;
    })();
  }

  setConnected(id: string, connected: boolean, now = new Date()): void {
    this.#setConnected.run(connected ? 1 : 0, now.toISOString(), id);
  }

  /** A collector that starts has no connections, whatever the last one left in the table. */
  markAllDisconnected(): number {
    return this.#disconnectAll.run().changes;
  }

  /** last_seen for many agents in one transaction (the gateway's heartbeat tick). */
  touch(ids: Iterable<string>, now = new Date()): void {
    const at = now.toISOString();
    this.#db.transaction(() => {
      for (const id of ids) this.#touch.run(at, id);
    })();
  }

  setVersion(id: string, version: string): void {
    this.#setVersion.run(version, id);
  }

  setTags(id: string, tags: readonly string[], actor: string, now = new Date()): boolean {
    return this.#db.transaction(() => {
      const changed = this.#setTags.run(JSON.stringify([...new Set(tags)].sort()), id).changes === 1;
      if (changed) this.#audit.record(actor, 'agent.tags', `agent:${id}`, JSON.stringify(tags), now);
      return changed;
    })();
  }

  /** The agent's revocation and last inventory hash, from memory (see #reportState) or its row; no touch is flushed. */
  reportState(agentId: string): AgentReportState | undefined {
    // Inside a transaction a row may hold what a rollback is about to undo: read, never keep.
    if (this.#db.inTransaction) {
      const r = this.#byId.get(agentId);
      return r === undefined ? undefined : { revokedAt: r.revoked_at, lastInventoryHash: r.last_inventory_hash };
    }
    const version = this.#dataVersion.get() as number;
    if (version !== this.#seenDataVersion) {
      this.#reportState.clear();
      this.#seenDataVersion = version;
    }
    let state = this.#reportState.get(agentId);
    if (state === undefined) {
      const r = this.#byId.get(agentId);
      if (r === undefined) return undefined;
      state = { revokedAt: r.revoked_at, lastInventoryHash: r.last_inventory_hash };
      this.#reportState.set(agentId, state);
    }
    return state;
  }

  /** A new inventory stored for the agent, inside the report's transaction. */
  recordInventory(agentId: string, hash: string, now: Date): void {
    this.#reportState.delete(agentId);
    this.#setInventory.run(hash, now.toISOString(), agentId);
  }

  /** last_seen for one agent now, inside the caller's transaction. */
  seen(agentId: string, now: Date): void {
    this.#touch.run(now.toISOString(), agentId);
  }

  /** last_seen for one agent, written with others within TOUCH_FLUSH_MS (or before last_seen is read). */
  seenLater(agentId: string, now: Date): void {
    this.#pendingTouches.set(agentId, now.toISOString());
    this.#touchTimer ??= setTimeout(() => {
      // Closed: whoever closed it flushed first (serve does) or is a test that is done.
      if (this.#db.open) this.flushTouches();
    }, TOUCH_FLUSH_MS).unref();
  }

  /** Writes the batched last_seen times in one transaction. */
  flushTouches(): void {
    if (this.#touchTimer !== undefined) clearTimeout(this.#touchTimer);
    this.#touchTimer = undefined;
    if (this.#pendingTouches.size === 0) return;
    const pending = [...this.#pendingTouches];
    this.#pendingTouches.clear();
    this.#db.transaction(() => {
      for (const [id, at] of pending) this.#touch.run(at, id);
    })();
  }
}
