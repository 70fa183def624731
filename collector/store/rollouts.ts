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
 */
import type { InstructionResult } from '../../shared/instructions.ts';
import type { Db } from './db.ts';
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

export class InstructionOutbox {
  readonly #db: Db;
  readonly #insert;
  readonly #pending;
  readonly #markSent;
  readonly #unsentAgents;
  readonly #pendingAgents;
  readonly #byId;
  readonly #setResult;
  readonly #expire;
  readonly #withdraw;
  readonly #stopResends;
  readonly #resulted;

  constructor(db: Db) {
    this.#db = db;
    this.#resulted = db.prepare<[string, string], { payload: string; result: string }>(
      'SELECT payload, result FROM instruction_outbox WHERE rollout_id = ? AND agent_id = ? AND result IS NOT NULL ORDER BY enqueued_at, rowid',
    );
    this.#insert = db.prepare<[string, string, string | null, string, string, string, string]>(
      'INSERT INTO instruction_outbox (id, agent_id, rollout_id, payload, signature, expires_at, enqueued_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.#pending = db.prepare<[string, string], OutboxRow>(
      `SELECT * FROM instruction_outbox
       WHERE agent_id = ? AND result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL AND expires_at > ?
       ORDER BY enqueued_at, rowid`,
    );
    this.#unsentAgents = db
      .prepare<[string], string>(
        `SELECT DISTINCT agent_id FROM instruction_outbox
         WHERE sent_at IS NULL AND result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL AND expires_at > ?`,
      )
      .pluck();
    this.#pendingAgents = db
      .prepare<[string], string>(
        `SELECT DISTINCT agent_id FROM instruction_outbox
         WHERE result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL AND expires_at > ? ORDER BY agent_id`,
      )
      .pluck();
    this.#markSent = db.prepare<[string, string]>('UPDATE instruction_outbox SET sent_at = coalesce(sent_at, ?) WHERE id = ?');
    this.#byId = db.prepare<[string], OutboxRow>('SELECT * FROM instruction_outbox WHERE id = ?');
    this.#setResult = db.prepare<[string, string, string]>('UPDATE instruction_outbox SET result_at = ?, result = ? WHERE id = ? AND result_at IS NULL');
    this.#expire = db.prepare<[string, string]>(
      'UPDATE instruction_outbox SET expired_at = ? WHERE expires_at <= ? AND result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL',
    );
    this.#stopResends = db.prepare<[string, string]>(
      `UPDATE instruction_outbox SET withdrawn_at = ?
       WHERE rollout_id = ? AND sent_at IS NOT NULL AND result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL`,
    );
    this.#withdraw = db.prepare<[string, string]>(
      `UPDATE instruction_outbox SET withdrawn_at = ?
       WHERE rollout_id = ? AND sent_at IS NULL AND result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL
       RETURNING id, agent_id`,
    );
  }

  enqueue(entry: OutboxEntry & { rolloutId: string | null }, now: Date): void {
    this.#insert.run(entry.id, entry.agentId, entry.rolloutId, entry.payload, entry.signature, entry.expiresAt, now.toISOString());
  }

  /** Not yet acknowledged by the agent's result and not expired, oldest first. */
  pendingFor(agentId: string, now: Date): OutboxEntry[] {
    return this.#pending.all(agentId, now.toISOString()).map((r) => ({ id: r.id, agentId: r.agent_id, payload: r.payload, signature: r.signature, expiresAt: r.expires_at }));
  }

  /**
   * Agents with instructions never sent: enqueued by another process (the CLI) on the same
   * database, which cannot reach the serving collector's connections.
   */
  agentsWithUnsent(now: Date): string[] {
    return this.#unsentAgents.all(now.toISOString());
  }

  /** Agents with instructions that have no result yet, sent or not (`instructions export` writes them all again). */
  agentsWithPending(now: Date): string[] {
    return this.#pendingAgents.all(now.toISOString());
  }

  /** The first delivery time is kept: a re-send after a reconnect does not restart the reboot grace. */
  markSent(id: string, now: Date): void {
    this.#markSent.run(now.toISOString(), id);
  }

  /**
   * The agent's result; idempotent by instruction id (a re-sent result changes nothing and
   * returns true); false if the id is unknown or another agent's. A result that comes
   * after the entry expired is still recorded: the agent ran it or refused it, and the
   * rollout must know which.
   */
  recordResult(agentId: string, result: InstructionResult, now: Date): boolean {
    if (result.instructionId === null) return false;
    const row = this.#byId.get(result.instructionId);
    if (row?.agent_id !== agentId) return false;
    this.#setResult.run(now.toISOString(), JSON.stringify(result), row.id);
    return true;
  }

  /** Marks entries past their expiry with no result as expired; returns how many. */
  expire(now: Date): number {
    const at = now.toISOString();
    return this.#expire.run(at, at).changes;
  }

  /** Takes back a rollout's undelivered entries; returns them (id, agent). */
  /** After a halt or a cancel: delivered, unanswered entries are never sent again (their results are still taken). */
  stopResends(rolloutId: string, now: Date): number {
    return this.#stopResends.run(now.toISOString(), rolloutId).changes;
  }

  withdraw(rolloutId: string, now: Date): { id: string; agentId: string }[] {
    return (this.#withdraw.all(now.toISOString(), rolloutId) as { id: string; agent_id: string }[]).map((r) => ({ id: r.id, agentId: r.agent_id }));
  }

  /**
   * The packages this rollout's patch instructions to this agent upgraded (succeeded), so a
   * patch sent in parts (patch-parts.ts) never sends a part again.
   */
  patchedFor(rolloutId: string, agentId: string): Set<string> {
    const done = new Set<string>();
    for (const r of this.#resulted.all(rolloutId, agentId)) {
      const result = JSON.parse(r.result) as InstructionResult;
      const ins = JSON.parse(r.payload) as { kind?: unknown; packages?: { name: string }[] };
      if (result.status !== 'succeeded' || ins.kind !== 'patch') continue;
      for (const p of ins.packages ?? []) done.add(p.name);
    }
    return done;
  }

  get(id: string): OutboxRecord | undefined {
    const r = this.#byId.get(id);
    return r === undefined ? undefined : recordOf(r);
  }

  /** For tests and the API: every entry of a rollout, oldest first. */
  forRollout(rolloutId: string): OutboxRecord[] {
    return this.#db
      .prepare<[string], OutboxRow>('SELECT * FROM instruction_outbox WHERE rollout_id = ? ORDER BY enqueued_at, rowid')
      .all(rolloutId)
      .map(recordOf);
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

/**
 * Row access for the engine. `parse` turns stored plan JSON back into a frozen plan (the
 * engine passes parsePlan, so a plan is validated on its way out of the store too).
 */
/** updateHost's parameters: each field with a flag saying whether it was given. */
type HostUpdateParams = Record<'id' | 'agentId' | 'updatedAt', string> & Record<`has${'State' | 'Step' | 'Steps' | 'InstructionId' | 'BootId' | 'Result' | 'Code' | 'Detail'}`, number> & Record<'state' | 'step' | 'steps' | 'instructionId' | 'bootId' | 'result' | 'code' | 'detail', string | null>;

export class RolloutStore {
  readonly #parse: (json: unknown) => RolloutPlan;
  readonly #insert;
  readonly #get;
  readonly #list;
  readonly #byState;
  readonly #countByState;
  readonly #insertHost;
  readonly #hosts;
  readonly #host;
  readonly #byInstruction;
  readonly #awaitingReboot;
  readonly #hostStateCounts;
  readonly #setState;
  readonly #setSubmitted;
  readonly #setApproved;
  readonly #setStarted;
  readonly #setFinished;
  readonly #setHaltedReason;
  readonly #setWaveDone;
  readonly #setWave;
  readonly #setLastError;
  readonly #updateHost;

  constructor(db: Db, parse: (json: unknown) => RolloutPlan) {
    this.#parse = parse;
    this.#insert = db.prepare<[string, string, string, string, string, string, string]>(
      'INSERT INTO rollouts (id, name, plan, state, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.#get = db.prepare<[string], RolloutRow>('SELECT * FROM rollouts WHERE id = ?');
    this.#list = db.prepare<[], RolloutRow>('SELECT * FROM rollouts ORDER BY created_at DESC, id');
    this.#byState = db.prepare<[string], string>('SELECT id FROM rollouts WHERE state = ? ORDER BY created_at, id').pluck();
    this.#countByState = db.prepare<[], { state: RolloutState; n: number }>('SELECT state, count(*) AS n FROM rollouts GROUP BY state');
    this.#insertHost = db.prepare<[string, string, number, string]>(
      "INSERT INTO rollout_hosts (rollout_id, agent_id, wave, state, steps, updated_at) VALUES (?, ?, ?, 'pending', '[]', ?)",
    );
    this.#hosts = db.prepare<[string], HostRow>('SELECT * FROM rollout_hosts WHERE rollout_id = ? ORDER BY wave, agent_id');
    this.#host = db.prepare<[string, string], HostRow>('SELECT * FROM rollout_hosts WHERE rollout_id = ? AND agent_id = ?');
    this.#byInstruction = db.prepare<[string, string], HostRow>('SELECT * FROM rollout_hosts WHERE instruction_id = ? AND agent_id = ?');
    this.#awaitingReboot = db.prepare<[string], HostRow>(
      `SELECT h.* FROM rollout_hosts h JOIN rollouts r ON r.id = h.rollout_id
       WHERE h.agent_id = ? AND h.state = 'sent' AND h.step IN ('reboot', 'reboot-if-needed') AND r.state IN ('running', 'paused')`,
    );
    this.#hostStateCounts = db.prepare<[], { rolloutId: string; state: HostState; n: number }>(
      'SELECT rollout_id AS rolloutId, state, count(*) AS n FROM rollout_hosts GROUP BY rollout_id, state',
    );
    // One statement per change the engine makes, each also moving updated_at (the last parameter).
    const set = (sets: string): string => `UPDATE rollouts SET ${sets}, updated_at = ? WHERE id = ?`;
    this.#setState = db.prepare<[RolloutState, string, string]>(set('state = ?'));
    this.#setSubmitted = db.prepare<[string, string, string]>(set('submitted_by = ?'));
    this.#setApproved = db.prepare<[string, string, string, string]>(set('approved_by = ?, approved_at = ?'));
    this.#setStarted = db.prepare<[string, number, string, string]>(set('started_at = ?, wave_count = ?'));
    this.#setFinished = db.prepare<[string, string, string]>(set('finished_at = ?'));
    this.#setHaltedReason = db.prepare<[string, string, string]>(set('halted_reason = ?'));
    this.#setWaveDone = db.prepare<[string, string, string]>(set('wave_done_at = ?'));
    this.#setWave = db.prepare<[number, string, string]>(set('current_wave = ?, wave_done_at = NULL'));
    this.#setLastError = db.prepare<[string | null, string, string]>(set('last_error = ?'));
    // A host's row changes a few fields at a time: each is written when its flag says it was given.
    this.#updateHost = db.prepare<[HostUpdateParams]>(
      `UPDATE rollout_hosts SET
         state = CASE WHEN @hasState THEN @state ELSE state END,
         step = CASE WHEN @hasStep THEN @step ELSE step END,
         steps = CASE WHEN @hasSteps THEN @steps ELSE steps END,
         instruction_id = CASE WHEN @hasInstructionId THEN @instructionId ELSE instruction_id END,
         boot_id = CASE WHEN @hasBootId THEN @bootId ELSE boot_id END,
         result = CASE WHEN @hasResult THEN @result ELSE result END,
         code = CASE WHEN @hasCode THEN @code ELSE code END,
         detail = CASE WHEN @hasDetail THEN @detail ELSE detail END,
         updated_at = @updatedAt
       WHERE rollout_id = @id AND agent_id = @agentId`,
    );
  }

  insert(id: string, plan: RolloutPlan, actor: string, now: Date): void {
    this.#insert.run(id, plan.name, JSON.stringify(plan), 'draft', actor, now.toISOString(), now.toISOString());
  }

  get(id: string): RolloutRecord | undefined {
    const r = this.#get.get(id);
    return r === undefined ? undefined : this.#recordOf(r);
  }

  list(): RolloutRecord[] {
    return this.#list.all().map((r) => this.#recordOf(r));
  }

  /** Every state with its count, zeros included (the metrics gauge). */
  countByState(): Record<RolloutState, number> {
    const out = Object.fromEntries(ROLLOUT_STATES.map((st) => [st, 0])) as Record<RolloutState, number>;
    for (const r of this.#countByState.all()) out[r.state] = r.n;
    return out;
  }

  idsInState(state: RolloutState): string[] {
    return this.#byState.all(state);
  }

  /** Every rollout's hosts counted by state, one row per rollout and state that has hosts. */
  hostStateCounts(): { rolloutId: string; state: HostState; n: number }[] {
    return this.#hostStateCounts.all();
  }

  setState(id: string, state: RolloutState, now: Date): void {
    this.#setState.run(state, now.toISOString(), id);
  }

  setSubmitted(id: string, actor: string, now: Date): void {
    this.#setSubmitted.run(actor, now.toISOString(), id);
  }

  /** Approved by `actor` at `now`. */
  setApproved(id: string, actor: string, now: Date): void {
    const at = now.toISOString();
    this.#setApproved.run(actor, at, at, id);
  }

  /** Started at `now`, its hosts split into `waveCount` waves. */
  setStarted(id: string, waveCount: number, now: Date): void {
    const at = now.toISOString();
    this.#setStarted.run(at, waveCount, at, id);
  }

  setFinished(id: string, now: Date): void {
    const at = now.toISOString();
    this.#setFinished.run(at, at, id);
  }

  setHaltedReason(id: string, reason: string, now: Date): void {
    this.#setHaltedReason.run(reason, now.toISOString(), id);
  }

  /** The current wave's hosts are all done at `now` (the wait before the next wave starts from here). */
  setWaveDone(id: string, now: Date): void {
    const at = now.toISOString();
    this.#setWaveDone.run(at, at, id);
  }

  /** Moves to wave `wave`, whose hosts are not done yet. */
  setWave(id: string, wave: number, now: Date): void {
    this.#setWave.run(wave, now.toISOString(), id);
  }

  /** The last failure of an engine step on this rollout; null clears it. */
  setLastError(id: string, error: RolloutError | null, now: Date): void {
    this.#setLastError.run(error === null ? null : JSON.stringify(error), now.toISOString(), id);
  }

  insertHosts(id: string, waves: ReadonlyMap<string, number>, now: Date): void {
    const at = now.toISOString();
    for (const [agentId, wave] of waves) this.#insertHost.run(id, agentId, wave, at);
  }

  hosts(id: string): RolloutHostRecord[] {
    return this.#hosts.all(id).map(hostOf);
  }

  host(id: string, agentId: string): RolloutHostRecord | undefined {
    const r = this.#host.get(id, agentId);
    return r === undefined ? undefined : hostOf(r);
  }

  hostByInstruction(instructionId: string, agentId: string): RolloutHostRecord | undefined {
    const r = this.#byInstruction.get(instructionId, agentId);
    return r === undefined ? undefined : hostOf(r);
  }

  /** The agent's hosts rows that wait for it to come back from a reboot. */
  awaitingReboot(agentId: string): RolloutHostRecord[] {
    return this.#awaitingReboot.all(agentId).map(hostOf);
  }

  updateHost(
    id: string,
    agentId: string,
    fields: Partial<{ state: HostState; step: Step | null; steps: Step[]; instructionId: string | null; bootId: string | null; result: InstructionResult | null; code: string | null; detail: string | null }>,
    now: Date,
  ): void {
    this.#updateHost.run({
      id,
      agentId,
      updatedAt: now.toISOString(),
      hasState: Number(fields.state !== undefined),
      state: fields.state ?? null,
      hasStep: Number(fields.step !== undefined),
      step: fields.step ?? null,
      hasSteps: Number(fields.steps !== undefined),
      steps: fields.steps === undefined ? null : JSON.stringify(fields.steps),
      hasInstructionId: Number(fields.instructionId !== undefined),
      instructionId: fields.instructionId ?? null,
      hasBootId: Number(fields.bootId !== undefined),
      bootId: fields.bootId ?? null,
      hasResult: Number(fields.result !== undefined),
      result: fields.result === undefined || fields.result === null ? null : JSON.stringify(fields.result),
      hasCode: Number(fields.code !== undefined),
      code: fields.code ?? null,
      hasDetail: Number(fields.detail !== undefined),
      detail: fields.detail ?? null,
    });
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
