/**
 * Rollouts in the store: the rollouts themselves, one row per host of each, and the
 * instruction outbox the gateway reads. All of it is persisted as it changes, so a
 * collector that restarts picks up exactly where it stopped: the engine keeps no state of
 * its own between calls.
 *
 * The outbox holds the signed text exactly as signed (the agent verifies those bytes). An
 * entry leaves the pending list when the agent's result for it is recorded, when it
 * expires, or when its rollout withdraws it (pause, halt, cancel) before it was delivered.
 * A delivered entry is not taken back by a pause (the agent may be running it), but a
 * halt or a cancel stops it being sent again after a reconnect (stopResends): an agent
 * that lost the first delivery must not start work the operator has stopped. Its result,
 * if the first delivery did arrive, is still recorded.
 *
 * Both parts run on SQLite and PostgreSQL over the shared executor (POSTGRES.md); on
 * PostgreSQL several replicas share these rows, so neither keeps anything between calls.
 */
import type { InstructionResult } from '../../shared/instructions.ts';
import { notify } from './postgres/notifications.ts';
import type { SqlExecutor } from './sql/executor.ts';
import { sql } from './sql/query.ts';
import type { RolloutPlan } from '../domain/rollout/plan.ts';

export interface OutboxEntry {
  id: string;
  agentId: string;
  payload: string;
  signature: string;
  expiresAt: string;
}

interface OutboxRow {
  id: string;
  agent_id: string;
  rollout_id: string | null;
  payload: string;
  signature: string;
  expires_at: string;
  enqueued_at: string;
  sent_at: string | null;
  result_at: string | null;
  result: string | null;
  expired_at: string | null;
  withdrawn_at: string | null;
}

export interface OutboxRecord extends OutboxEntry {
  rolloutId: string | null;
  enqueuedAt: string;
  sentAt: string | null;
  resultAt: string | null;
  result: InstructionResult | null;
  expiredAt: string | null;
  withdrawnAt: string | null;
}

function recordOf(r: OutboxRow): OutboxRecord {
  return {
    id: r.id,
    agentId: r.agent_id,
    payload: r.payload,
    signature: r.signature,
    expiresAt: r.expires_at,
    rolloutId: r.rollout_id,
    enqueuedAt: r.enqueued_at,
    sentAt: r.sent_at,
    resultAt: r.result_at,
    result: r.result === null ? null : (JSON.parse(r.result) as InstructionResult),
    expiredAt: r.expired_at,
    withdrawnAt: r.withdrawn_at,
  };
}

/**
 * The outbox's queries. Entries are read oldest first by `enqueued_at`, ties broken by arrival:
 * SQLite's hidden rowid, PostgreSQL's `seq` column (postgres/schema.ts).
 */
const outboxQ = {
  insert: sql('INSERT INTO instruction_outbox (id, agent_id, rollout_id, payload, signature, expires_at, enqueued_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
  pending: sql({
    sqlite: `SELECT * FROM instruction_outbox
      WHERE agent_id = ? AND result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL AND expires_at > ?
      ORDER BY enqueued_at, rowid`,
    postgres: `SELECT * FROM instruction_outbox
      WHERE agent_id = ? AND result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL AND expires_at > ?
      ORDER BY enqueued_at, seq`,
  }),
  pendingForAgents: sql({
    sqlite: `SELECT * FROM instruction_outbox
      WHERE agent_id IN (SELECT value FROM json_each(?)) AND result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL AND expires_at > ?
      ORDER BY enqueued_at, rowid`,
    postgres: `SELECT * FROM instruction_outbox
      WHERE agent_id = ANY (?::text[]) AND result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL AND expires_at > ?
      ORDER BY enqueued_at, seq`,
  }),
  unsentAgents: sql(`SELECT DISTINCT agent_id FROM instruction_outbox
    WHERE sent_at IS NULL AND result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL AND expires_at > ?`),
  pendingAgents: sql(`SELECT DISTINCT agent_id FROM instruction_outbox
    WHERE result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL AND expires_at > ? ORDER BY agent_id`),
  markSent: sql('UPDATE instruction_outbox SET sent_at = coalesce(sent_at, ?) WHERE id = ?'),
  markManySent: sql({
    sqlite: 'UPDATE instruction_outbox SET sent_at = coalesce(sent_at, ?) WHERE id IN (SELECT value FROM json_each(?))',
    postgres: 'UPDATE instruction_outbox SET sent_at = coalesce(sent_at, ?) WHERE id = ANY (?::text[])',
  }),
  byId: sql('SELECT * FROM instruction_outbox WHERE id = ?'),
  setResult: sql('UPDATE instruction_outbox SET result_at = ?, result = ? WHERE id = ? AND result_at IS NULL'),
  expire: sql('UPDATE instruction_outbox SET expired_at = ? WHERE expires_at <= ? AND result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL'),
  stopResends: sql(`UPDATE instruction_outbox SET withdrawn_at = ?
    WHERE rollout_id = ? AND sent_at IS NOT NULL AND result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL`),
  withdraw: sql(`UPDATE instruction_outbox SET withdrawn_at = ?
    WHERE rollout_id = ? AND sent_at IS NULL AND result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL
    RETURNING id, agent_id`),
  resulted: sql({
    sqlite: 'SELECT payload, result FROM instruction_outbox WHERE rollout_id = ? AND agent_id = ? AND result IS NOT NULL ORDER BY enqueued_at, rowid',
    postgres: 'SELECT payload, result FROM instruction_outbox WHERE rollout_id = ? AND agent_id = ? AND result IS NOT NULL ORDER BY enqueued_at, seq',
  }),
  forRollout: sql({
    sqlite: 'SELECT * FROM instruction_outbox WHERE rollout_id = ? ORDER BY enqueued_at, rowid',
    postgres: 'SELECT * FROM instruction_outbox WHERE rollout_id = ? ORDER BY enqueued_at, seq',
  }),
};

/**
 * The channel an enqueue is announced on, with the agent's id as payload (PostgreSQL only): the
 * replica holding the agent's connection listens (postgres/notifications.ts) and looks at the
 * outbox. On SQLite there is one serving process, told by the engine's onEnqueued, and entries
 * another process (the CLI) enqueued are found by agentsWithUnsent.
 */
export const OUTBOX_CHANNEL = 'pw_outbox';

export class InstructionOutbox {
  readonly #ex: SqlExecutor;

  constructor(ex: SqlExecutor) {
    this.#ex = ex;
  }

  /**
   * On PostgreSQL the enqueue is announced on OUTBOX_CHANNEL through the same executor: inside
   * a transaction the notification goes out at commit and never on a rollback, so a listener
   * that looks finds the entry; outside one the entry is committed before it is announced.
   */
  async enqueue(entry: OutboxEntry & { rolloutId: string | null }, now: Date): Promise<void> {
    await this.#ex.run(outboxQ.insert, [entry.id, entry.agentId, entry.rolloutId, entry.payload, entry.signature, entry.expiresAt, now.toISOString()]);
    if (this.#ex.dialect === 'postgres') await notify(this.#ex, OUTBOX_CHANNEL, entry.agentId);
  }

  /** Not yet acknowledged by the agent's result and not expired, oldest first. */
  async pendingFor(agentId: string, now: Date): Promise<OutboxEntry[]> {
    const rows = await this.#ex.all<OutboxRow>(outboxQ.pending, [agentId, now.toISOString()]);
    return rows.map((r) => ({ id: r.id, agentId: r.agent_id, payload: r.payload, signature: r.signature, expiresAt: r.expires_at }));
  }

  /**
   * pendingFor for many agents in one statement, oldest first: the gateway reads for every
   * agent it was told about in one event-loop turn at once (a reconnection wave, a burst of
   * notifications) instead of a round trip each.
   */
  async pendingForAgents(agentIds: readonly string[], now: Date): Promise<OutboxEntry[]> {
    if (agentIds.length === 0) return [];
    const rows = await this.#ex.all<OutboxRow>(outboxQ.pendingForAgents, [this.#list(agentIds), now.toISOString()]);
    return rows.map((r) => ({ id: r.id, agentId: r.agent_id, payload: r.payload, signature: r.signature, expiresAt: r.expires_at }));
  }

  /** A list parameter: an array on PostgreSQL, JSON text for SQLite's json_each. */
  #list(values: readonly string[]): string | readonly string[] {
    return this.#ex.dialect === 'postgres' ? [...values] : JSON.stringify(values);
  }

  /**
   * Agents with instructions never sent: enqueued by another process (the CLI) on the same
   * database, which cannot reach the serving collector's connections.
   */
  async agentsWithUnsent(now: Date): Promise<string[]> {
    return (await this.#ex.all<{ agent_id: string }>(outboxQ.unsentAgents, [now.toISOString()])).map((r) => r.agent_id);
  }

  /** Agents with instructions that have no result yet, sent or not (`instructions export` writes them all again). */
  async agentsWithPending(now: Date): Promise<string[]> {
    return (await this.#ex.all<{ agent_id: string }>(outboxQ.pendingAgents, [now.toISOString()])).map((r) => r.agent_id);
  }

  /** The first delivery time is kept: a re-send after a reconnect does not restart the reboot grace. */
  async markSent(id: string, now: Date): Promise<void> {
    await this.#ex.run(outboxQ.markSent, [now.toISOString(), id]);
  }

  /** markSent for many entries in one statement. */
  async markManySent(ids: readonly string[], now: Date): Promise<void> {
    if (ids.length === 0) return;
    await this.#ex.run(outboxQ.markManySent, [now.toISOString(), this.#list(ids)]);
  }

  /**
   * The agent's result; idempotent by instruction id (a re-sent result changes nothing and
   * returns true); false if the id is unknown or another agent's. A result that comes
   * after the entry expired is still recorded: the agent ran it or refused it, and the
   * rollout must know which.
   */
  async recordResult(agentId: string, result: InstructionResult, now: Date): Promise<boolean> {
    if (result.instructionId === null) return false;
    const row = await this.#ex.get<OutboxRow>(outboxQ.byId, [result.instructionId]);
    if (row?.agent_id !== agentId) return false;
    // `result_at IS NULL` in the statement keeps the first result when two arrive at once (two replicas).
    await this.#ex.run(outboxQ.setResult, [now.toISOString(), JSON.stringify(result), row.id]);
    return true;
  }

  /** Marks entries past their expiry with no result as expired; returns how many. */
  async expire(now: Date): Promise<number> {
    const at = now.toISOString();
    return this.#ex.run(outboxQ.expire, [at, at]);
  }

  /** After a halt or a cancel: delivered, unanswered entries are never sent again (their results are still taken). */
  async stopResends(rolloutId: string, now: Date): Promise<number> {
    return this.#ex.run(outboxQ.stopResends, [now.toISOString(), rolloutId]);
  }

  /** Takes back a rollout's undelivered entries; returns them (id, agent). */
  async withdraw(rolloutId: string, now: Date): Promise<{ id: string; agentId: string }[]> {
    const rows = await this.#ex.all<{ id: string; agent_id: string }>(outboxQ.withdraw, [now.toISOString(), rolloutId]);
    return rows.map((r) => ({ id: r.id, agentId: r.agent_id }));
  }

  /**
   * The packages this rollout's patch instructions to this agent upgraded (succeeded), so a
   * patch sent in parts (patch-parts.ts) never sends a part again.
   */
  async patchedFor(rolloutId: string, agentId: string): Promise<Set<string>> {
    const done = new Set<string>();
    for (const r of await this.#ex.all<{ payload: string; result: string }>(outboxQ.resulted, [rolloutId, agentId])) {
      const result = JSON.parse(r.result) as InstructionResult;
      const ins = JSON.parse(r.payload) as { kind?: unknown; packages?: { name: string }[] };
      if (result.status !== 'succeeded' || ins.kind !== 'patch') continue;
      for (const p of ins.packages ?? []) done.add(p.name);
    }
    return done;
  }

  async get(id: string): Promise<OutboxRecord | undefined> {
    const r = await this.#ex.get<OutboxRow>(outboxQ.byId, [id]);
    return r === undefined ? undefined : recordOf(r);
  }

  /** For tests and the API: every entry of a rollout, oldest first. */
  async forRollout(rolloutId: string): Promise<OutboxRecord[]> {
    return (await this.#ex.all<OutboxRow>(outboxQ.forRollout, [rolloutId])).map(recordOf);
  }
}

export const ROLLOUT_STATES = ['draft', 'awaiting-approval', 'running', 'paused', 'halted', 'completed', 'cancelled'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];
export const HOST_STATES = ['pending', 'sent', 'succeeded', 'failed', 'refused', 'expired', 'not-back'] as const;
export type HostState = (typeof HOST_STATES)[number];
/** A host in one of these is done; the failed ones among them count against the gate. */
export const HOST_DONE: ReadonlySet<HostState> = new Set(['succeeded', 'failed', 'refused', 'expired', 'not-back']);
export const HOST_FAILED: ReadonlySet<HostState> = new Set(['failed', 'refused', 'expired', 'not-back']);

/** What a host is still to be sent, in order. `reboot-if-needed` is dropped when the step before reported no reboot needed. */
export type Step = 'patch' | 'livepatch' | 'reboot' | 'reboot-if-needed' | 'refresh';

export interface RolloutRecord {
  id: string;
  name: string;
  plan: RolloutPlan;
  state: RolloutState;
  createdBy: string;
  createdAt: string;
  submittedBy: string | null;
  approvedBy: string | null;
  approvedAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  updatedAt: string;
  /** The last wave sent, -1 before the first. */
  currentWave: number;
  waveCount: number;
  /** When the current wave had every host done and passed its gate; the wait runs from here. */
  waveDoneAt: string | null;
  haltedReason: string | null;
  /**
   * Why the rollout could not advance the last time it tried (an error of the store, the
   * signer or the collector itself), with its code; null once it advances again. The
   * rollout stays running: the next tick tries again.
   */
  lastError: RolloutError | null;
}

export interface RolloutError {
  code: string;
  message: string;
  at: string;
}

export interface RolloutHostRecord {
  rolloutId: string;
  agentId: string;
  wave: number;
  state: HostState;
  /** The step outstanding (state sent) or last run. */
  step: Step | null;
  /** Still to send after the current one. */
  steps: Step[];
  instructionId: string | null;
  /** The host's boot id when the reboot was sent; a different one in a later inventory means it came back. */
  bootId: string | null;
  result: InstructionResult | null;
  /** Why a failed, refused or expired host ended so: the agent's result code, or the collector's (PW_ERR_INSTRUCTION_BUILD). */
  code: string | null;
  detail: string | null;
  updatedAt: string;
}

interface RolloutRow {
  id: string;
  name: string;
  plan: string;
  state: RolloutState;
  created_by: string;
  created_at: string;
  submitted_by: string | null;
  approved_by: string | null;
  approved_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  updated_at: string;
  current_wave: number;
  wave_count: number;
  wave_done_at: string | null;
  halted_reason: string | null;
  last_error: string | null;
}

interface HostRow {
  rollout_id: string;
  agent_id: string;
  wave: number;
  state: HostState;
  step: Step | null;
  steps: string;
  instruction_id: string | null;
  boot_id: string | null;
  result: string | null;
  code: string | null;
  detail: string | null;
  updated_at: string;
}

function hostOf(r: HostRow): RolloutHostRecord {
  return {
    rolloutId: r.rollout_id,
    agentId: r.agent_id,
    wave: r.wave,
    state: r.state,
    step: r.step,
    steps: JSON.parse(r.steps) as Step[],
    instructionId: r.instruction_id,
    bootId: r.boot_id,
    result: r.result === null ? null : (JSON.parse(r.result) as InstructionResult),
    code: r.code,
    detail: r.detail,
    updatedAt: r.updated_at,
  };
}

/** One statement per change the engine makes to a rollout's row, each also moving updated_at (the second last parameter). */
const setRollout = (sets: string) => sql(`UPDATE rollouts SET ${sets}, updated_at = ? WHERE id = ?`);

const rolloutQ = {
  insert: sql('INSERT INTO rollouts (id, name, plan, state, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
  get: sql('SELECT * FROM rollouts WHERE id = ?'),
  // SQLite runs one transaction at a time: the row needs no lock there.
  lock: sql({ sqlite: 'SELECT id FROM rollouts WHERE id = ?', postgres: 'SELECT id FROM rollouts WHERE id = ? FOR UPDATE' }),
  list: sql('SELECT * FROM rollouts ORDER BY created_at DESC, id'),
  byState: sql('SELECT id FROM rollouts WHERE state = ? ORDER BY created_at, id'),
  countByState: sql('SELECT state, count(*) AS n FROM rollouts GROUP BY state'),
  insertHost: sql("INSERT INTO rollout_hosts (rollout_id, agent_id, wave, state, steps, updated_at) VALUES (?, ?, ?, 'pending', '[]', ?)"),
  /** A rollout's hosts in one statement (PostgreSQL only: arrays); SQLite runs insertHost per host, prepared once. */
  insertHosts: sql({
    postgres: `INSERT INTO rollout_hosts (rollout_id, agent_id, wave, state, steps, updated_at)
      SELECT ?::text, u.agent_id, u.wave, 'pending', '[]', ?::text FROM unnest(?::text[], ?::bigint[]) AS u (agent_id, wave)`,
  }),
  hosts: sql('SELECT * FROM rollout_hosts WHERE rollout_id = ? ORDER BY wave, agent_id'),
  host: sql('SELECT * FROM rollout_hosts WHERE rollout_id = ? AND agent_id = ?'),
  byInstruction: sql('SELECT * FROM rollout_hosts WHERE instruction_id = ? AND agent_id = ?'),
  awaitingReboot: sql(`SELECT h.* FROM rollout_hosts h JOIN rollouts r ON r.id = h.rollout_id
    WHERE h.agent_id = ? AND h.state = 'sent' AND h.step IN ('reboot', 'reboot-if-needed') AND r.state IN ('running', 'paused')`),
  // Quoted: PostgreSQL folds an unquoted alias to lower case.
  hostStateCounts: sql('SELECT rollout_id AS "rolloutId", state, count(*) AS n FROM rollout_hosts GROUP BY rollout_id, state'),
  setState: setRollout('state = ?'),
  setSubmitted: setRollout('submitted_by = ?'),
  setApproved: setRollout('approved_by = ?, approved_at = ?'),
  setStarted: setRollout('started_at = ?, wave_count = ?'),
  setFinished: setRollout('finished_at = ?'),
  setHaltedReason: setRollout('halted_reason = ?'),
  setWaveDone: setRollout('wave_done_at = ?'),
  setWave: setRollout('current_wave = ?, wave_done_at = NULL'),
  setLastError: setRollout('last_error = ?'),
  /**
   * A host's row changes a few fields at a time: one fixed statement, each field written when
   * the flag before it is 1 (so a null can be written, and a field not given is kept).
   */
  updateHost: sql(`UPDATE rollout_hosts SET
      state = CASE WHEN ? = 1 THEN ? ELSE state END,
      step = CASE WHEN ? = 1 THEN ? ELSE step END,
      steps = CASE WHEN ? = 1 THEN ? ELSE steps END,
      instruction_id = CASE WHEN ? = 1 THEN ? ELSE instruction_id END,
      boot_id = CASE WHEN ? = 1 THEN ? ELSE boot_id END,
      result = CASE WHEN ? = 1 THEN ? ELSE result END,
      code = CASE WHEN ? = 1 THEN ? ELSE code END,
      detail = CASE WHEN ? = 1 THEN ? ELSE detail END,
      updated_at = ?
    WHERE rollout_id = ? AND agent_id = ?`),
};

/** What updateHost may change of a rollout's host. */
export type HostFields = Partial<Pick<RolloutHostRecord, 'state' | 'step' | 'steps' | 'instructionId' | 'bootId' | 'result' | 'code' | 'detail'>>;

/** A field's flag and value for updateHost's statement: [0, null] when it was not given. */
function given(value: string | null | undefined): [number, string | null] {
  return value === undefined ? [0, null] : [1, value];
}

/**
 * Row access for the engine. `parse` turns stored plan JSON back into a frozen plan (the
 * engine passes parsePlan, so a plan is validated on its way out of the store too).
 */
export class RolloutStore {
  readonly #ex: SqlExecutor;
  readonly #parse: (json: unknown) => RolloutPlan;

  constructor(ex: SqlExecutor, parse: (json: unknown) => RolloutPlan) {
    this.#ex = ex;
    this.#parse = parse;
  }

  async insert(id: string, plan: RolloutPlan, actor: string, now: Date): Promise<void> {
    await this.#ex.run(rolloutQ.insert, [id, plan.name, JSON.stringify(plan), 'draft', actor, now.toISOString(), now.toISOString()]);
  }

  async get(id: string): Promise<RolloutRecord | undefined> {
    const r = await this.#ex.get<RolloutRow>(rolloutQ.get, [id]);
    return r === undefined ? undefined : this.#recordOf(r);
  }

  /**
   * Inside a transaction: holds the rollout for it until it ends, so one transaction at a
   * time decides what the rollout does next. PostgreSQL runs transactions side by side
   * (results arriving on several replicas, a tick beside them); each of them read the wave
   * as done and the next hosts as pending, and every one sent them their instructions.
   */
  async lock(id: string): Promise<void> {
    await this.#ex.get(rolloutQ.lock, [id]);
  }

  async list(): Promise<RolloutRecord[]> {
    return (await this.#ex.all<RolloutRow>(rolloutQ.list)).map((r) => this.#recordOf(r));
  }

  /** Every state with its count, zeros included (the metrics gauge). */
  async countByState(): Promise<Record<RolloutState, number>> {
    const out = Object.fromEntries(ROLLOUT_STATES.map((st) => [st, 0])) as Record<RolloutState, number>;
    for (const r of await this.#ex.all<{ state: RolloutState; n: number }>(rolloutQ.countByState)) out[r.state] = r.n;
    return out;
  }

  async idsInState(state: RolloutState): Promise<string[]> {
    return (await this.#ex.all<{ id: string }>(rolloutQ.byState, [state])).map((r) => r.id);
  }

  /** Every rollout's hosts counted by state, one row per rollout and state that has hosts. */
  hostStateCounts(): Promise<{ rolloutId: string; state: HostState; n: number }[]> {
    return this.#ex.all(rolloutQ.hostStateCounts);
  }

  async setState(id: string, state: RolloutState, now: Date): Promise<void> {
    await this.#ex.run(rolloutQ.setState, [state, now.toISOString(), id]);
  }

  async setSubmitted(id: string, actor: string, now: Date): Promise<void> {
    await this.#ex.run(rolloutQ.setSubmitted, [actor, now.toISOString(), id]);
  }

  /** Approved by `actor` at `now`. */
  async setApproved(id: string, actor: string, now: Date): Promise<void> {
    const at = now.toISOString();
    await this.#ex.run(rolloutQ.setApproved, [actor, at, at, id]);
  }

  /** Started at `now`, its hosts split into `waveCount` waves. */
  async setStarted(id: string, waveCount: number, now: Date): Promise<void> {
    const at = now.toISOString();
    await this.#ex.run(rolloutQ.setStarted, [at, waveCount, at, id]);
  }

  async setFinished(id: string, now: Date): Promise<void> {
    const at = now.toISOString();
    await this.#ex.run(rolloutQ.setFinished, [at, at, id]);
  }

  async setHaltedReason(id: string, reason: string, now: Date): Promise<void> {
    await this.#ex.run(rolloutQ.setHaltedReason, [reason, now.toISOString(), id]);
  }

  /** The current wave's hosts are all done at `now` (the wait before the next wave starts from here). */
  async setWaveDone(id: string, now: Date): Promise<void> {
    const at = now.toISOString();
    await this.#ex.run(rolloutQ.setWaveDone, [at, at, id]);
  }

  /** Moves to wave `wave`, whose hosts are not done yet. */
  async setWave(id: string, wave: number, now: Date): Promise<void> {
    await this.#ex.run(rolloutQ.setWave, [wave, now.toISOString(), id]);
  }

  /** The last failure of an engine step on this rollout; null clears it. */
  async setLastError(id: string, error: RolloutError | null, now: Date): Promise<void> {
    await this.#ex.run(rolloutQ.setLastError, [error === null ? null : JSON.stringify(error), now.toISOString(), id]);
  }

  /** A rollout's hosts, each in its wave: one statement on PostgreSQL, a prepared insert per host on SQLite. */
  async insertHosts(id: string, waves: ReadonlyMap<string, number>, now: Date): Promise<void> {
    const at = now.toISOString();
    if (this.#ex.dialect === 'postgres') {
      if (waves.size === 0) return;
      await this.#ex.run(rolloutQ.insertHosts, [id, at, [...waves.keys()], [...waves.values()].map(String)]);
      return;
    }
    for (const [agentId, wave] of waves) await this.#ex.run(rolloutQ.insertHost, [id, agentId, wave, at]);
  }

  async hosts(id: string): Promise<RolloutHostRecord[]> {
    return (await this.#ex.all<HostRow>(rolloutQ.hosts, [id])).map(hostOf);
  }

  async host(id: string, agentId: string): Promise<RolloutHostRecord | undefined> {
    const r = await this.#ex.get<HostRow>(rolloutQ.host, [id, agentId]);
    return r === undefined ? undefined : hostOf(r);
  }

  async hostByInstruction(instructionId: string, agentId: string): Promise<RolloutHostRecord | undefined> {
    const r = await this.#ex.get<HostRow>(rolloutQ.byInstruction, [instructionId, agentId]);
    return r === undefined ? undefined : hostOf(r);
  }

  /** The agent's hosts rows that wait for it to come back from a reboot. */
  async awaitingReboot(agentId: string): Promise<RolloutHostRecord[]> {
    return (await this.#ex.all<HostRow>(rolloutQ.awaitingReboot, [agentId])).map(hostOf);
  }

  async updateHost(id: string, agentId: string, fields: HostFields, now: Date): Promise<void> {
    await this.#ex.run(rolloutQ.updateHost, [
      ...given(fields.state),
      ...given(fields.step),
      ...given(fields.steps === undefined ? undefined : JSON.stringify(fields.steps)),
      ...given(fields.instructionId),
      ...given(fields.bootId),
      ...given(fields.result === undefined ? undefined : fields.result === null ? null : JSON.stringify(fields.result)),
      ...given(fields.code),
      ...given(fields.detail),
      now.toISOString(),
      id,
      agentId,
    ]);
  }

  #recordOf(r: RolloutRow): RolloutRecord {
    return {
      id: r.id,
      name: r.name,
      plan: this.#parse(JSON.parse(r.plan)),
      state: r.state,
      createdBy: r.created_by,
      createdAt: r.created_at,
      submittedBy: r.submitted_by,
      approvedBy: r.approved_by,
      approvedAt: r.approved_at,
      startedAt: r.started_at,
      finishedAt: r.finished_at,
      updatedAt: r.updated_at,
      currentWave: r.current_wave,
      waveCount: r.wave_count,
      waveDoneAt: r.wave_done_at,
      haltedReason: r.halted_reason,
      lastError: r.last_error === null ? null : (JSON.parse(r.last_error) as RolloutError),
    };
  }
}
