/**
 * The rollout engine: states, waves, windows and the health gate. It keeps nothing in
 * memory between calls; every decision is made from the rows in the store, so a
 * collector that restarts resumes each rollout where it stopped.
 *
 *   draft -> awaiting-approval -> running <-> paused
 *                 \________________/  |-> halted (by the gate; 'system')
 *                                     |-> completed
 *   any but completed/cancelled -> cancelled
 *
 * A running rollout advances on tick(now) and on each result or inventory: when the
 * current wave has every host done and the gate holds, it waits waitMinutes, then sends
 * the next wave's first steps as soon as a window is open. Failed, refused, expired and
 * not-back hosts count against the gate; more than maxFailedHosts halts the rollout and
 * takes back every instruction not yet delivered, so no later wave receives anything.
 *
 * Failures stay where they happen (issue 10): each rollout advances in its own transaction,
 * and each host's step in its own savepoint. A host whose instruction cannot be built or
 * signed (PW_ERR_INSTRUCTION_BUILD) fails alone, with its reason, and counts against the
 * gate; any other error stops only its own rollout's advance, is passed to onError and
 * kept as the rollout's lastError (the next tick tries again). A patch too large for one
 * instruction is sent in parts (patch-parts.ts).
 */
import { randomUUID } from 'node:crypto';
import * as z from 'zod';
import { errorMessage, InstructionBuildError, PatchwardenError, RolloutApprovalError, RolloutNotFoundError, RolloutStateError } from '../../../shared/errors.ts';
import { INSTRUCTION_SCHEMA, instructionPayload, type Instruction, type InstructionResult, type PatchInstruction, type SignedInstruction } from '../../../shared/instructions.ts';
import type { Finding, Inventory } from '../../../shared/protocol.ts';
import type { Fleet } from '../../store/fleet.ts';
import type { HostSummary } from '../../store/hosts.ts';
import type { Store } from '../../store/store.ts';
import { isActionable } from '../../domain/correlate/status.ts';
import { planForHost, type HostPlan } from './host-plan.ts';
import { patchParts } from '../../domain/rollout/patch-parts.ts';
import { parsePlan, type RolloutPlan } from '../../domain/rollout/plan.ts';
import { HOST_DONE, HOST_FAILED, type InstructionOutbox, type RolloutError, type RolloutHostRecord, type RolloutRecord, type RolloutStore, type RolloutState } from '../../store/rollouts.ts';
import { splitWaves, waveSizes } from '../../domain/rollout/waves.ts';
import { openUntil } from '../../domain/rollout/window.ts';

const MINUTE = 60_000;
export const SYSTEM_ACTOR = 'system';

export interface RolloutEngineOptions {
  /** Over the connection the caller opened, with parsePlan (rollout/plan.ts) as its plan reader (Store.rollouts). */
  store: RolloutStore;
  /** The same store's transactions (the Store itself): each engine call is one transaction. */
  tx: Pick<Store, 'inTransaction' | 'inImmediateTransaction'>;
  fleet: Fleet;
  /** The host's current findings (the lead passes one backed by the Correlator). */
  findings: (agentId: string) => Finding[];
  /** signInstruction with the collector's key. */
  signer: (instruction: Instruction) => SignedInstruction;
  outbox: InstructionOutbox;
  audit: (actor: string, action: string, target: string | null, detail: string | null) => void;
  now?: () => Date;
  /** Called after the commit, once per agent that has new instructions (push them if it is connected). */
  onEnqueued?: (agentId: string) => void;
  /**
   * Every error the engine keeps from its caller: a rollout that could not advance (also
   * stored as its lastError), a host whose instruction could not be built (also its state
   * and detail), an onEnqueued that threw. The collector logs them; default: stderr.
   */
  onError?: (err: unknown, where: RolloutErrorContext) => void;
}

export interface RolloutErrorContext {
  rolloutId: string | null;
  agentId: string | null;
  /** What the engine was doing: `tick`, `expire`, `result`, `inventory`, `host-step`, `push`. */
  during: string;
}

/** What one tick did; failures are reported to onError and stored on their rollout too. */
export interface TickReport {
  rollouts: number;
  failed: { rolloutId: string | null; code: string; message: string }[];
}

function codeOf(err: unknown): string {
  return err instanceof PatchwardenError ? err.code : 'PW_ERR_INTERNAL';
}

/** Errors about one host's instruction itself: that host fails alone. Anything else is the rollout's (or the collector's). */
function isBuildError(err: unknown): boolean {
  return err instanceof InstructionBuildError || err instanceof z.ZodError;
}

function defaultOnError(err: unknown, where: RolloutErrorContext): void {
  process.stderr.write(`${JSON.stringify({ level: 'error', msg: 'rollout engine error', ...where, code: codeOf(err), err: errorMessage(err).slice(0, 2000) })}\n`);
}

export interface PreviewHost {
  agentId: string;
  hostname: string;
  wave: number;
  /** The steps joined by `+`: `patch`, `patch+livepatch`, `patch+reboot-if-needed`, `livepatch`, `reboot`, `refresh`. */
  action: string;
  packages: { name: string; from: string | null; to: string | null }[];
  findingsResolved: string[];
  needsReboot: boolean;
  livepatchInsteadOfReboot: boolean;
  /** Patch instructions the host gets: more than one when its packages do not fit one (patch-parts.ts). */
  patchInstructions: number;
  /** Set when the host's instruction cannot be built (PW_ERR_INSTRUCTION_BUILD): started, it fails alone and counts against the gate. */
  error: { code: string; message: string } | null;
}

export interface Preview {
  hosts: PreviewHost[];
  /** Selected hosts the action does not apply to, and why (no inventory, revoked, nothing to patch, no live-patch tool). */
  skipped: { agentId: string; hostname: string | null; reason: string }[];
  waves: number[];
  totals: { hosts: number; packages: number; findingsResolved: number; rebootsNeeded: number; rebootsAvoidedByLivepatch: number };
}

export interface RolloutView extends RolloutRecord {
  hosts: RolloutHostRecord[];
}

/** What an operator can do to a rollout (API routes, CLI subcommands), and the states each is allowed from. */
export const ROLLOUT_OPERATIONS = ['submit', 'approve', 'pause', 'resume', 'cancel'] as const;
export type RolloutOperation = (typeof ROLLOUT_OPERATIONS)[number];

const TRANSITIONS: Readonly<Record<RolloutOperation, readonly RolloutState[]>> = {
  submit: ['draft'],
  approve: ['awaiting-approval'],
  pause: ['running'],
  resume: ['paused'],
  cancel: ['draft', 'awaiting-approval', 'running', 'paused', 'halted'],
};

function byName<T extends { agentId: string }>(a: T, b: T): number {
  return a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0;
}

export class RolloutEngine {
  readonly #tx: Pick<Store, 'inTransaction' | 'inImmediateTransaction'>;
  readonly #fleet: Fleet;
  readonly #findings: (agentId: string) => Finding[];
  readonly #signer: (instruction: Instruction) => SignedInstruction;
  readonly #outbox: InstructionOutbox;
  readonly #audit: RolloutEngineOptions['audit'];
  readonly #now: () => Date;
  readonly #onEnqueued: ((agentId: string) => void) | undefined;
  readonly #onError: (err: unknown, where: RolloutErrorContext) => void;
  readonly store: RolloutStore;
  /** Agents with new outbox entries in the current call, told after its commit. */
  #enqueued = new Set<string>();

  constructor(opts: RolloutEngineOptions) {
    this.#tx = opts.tx;
    this.#fleet = opts.fleet;
    this.#findings = opts.findings;
    this.#signer = opts.signer;
    this.#outbox = opts.outbox;
    this.#audit = opts.audit;
    this.#now = opts.now ?? (() => new Date());
    this.#onEnqueued = opts.onEnqueued;
    this.#onError = opts.onError ?? defaultOnError;
    this.store = opts.store;
  }

  /** Validates the plan (RolloutPlanError, PW_ERR_ROLLOUT_PLAN) and stores it as a draft. */
  create(planInput: unknown, actor: string): string {
    const plan = parsePlan(planInput);
    const id = randomUUID();
    const now = this.#now();
    this.#tx.inTransaction(() => {
      this.store.insert(id, plan, actor, now);
      this.#audit(actor, 'rollout.create', `rollout:${id}`, JSON.stringify({ name: plan.name, action: plan.action.kind }));
    });
    return id;
  }

  get(id: string): RolloutView {
    const r = this.#require(id);
    return { ...r, hosts: this.store.hosts(id) };
  }

  list(): RolloutRecord[] {
    return this.store.list();
  }

  /** Which hosts, which packages, which findings, how many reboots; for a started rollout, its own hosts and waves. */
  preview(idOrPlan: unknown): Preview {
    let plan: RolloutPlan;
    let waves: Map<string, number>;
    const skipped: Preview['skipped'] = [];
    const r = typeof idOrPlan === 'string' ? this.#require(idOrPlan) : undefined;
    if (r !== undefined && r.startedAt !== null) {
      plan = r.plan;
      waves = new Map(this.store.hosts(r.id).map((h) => [h.agentId, h.wave]));
    } else {
      plan = r?.plan ?? parsePlan(idOrPlan);
      waves = splitWaves([...this.#select(plan, skipped).keys()], plan.waves);
    }
    const hosts: PreviewHost[] = [];
    const totals = { hosts: 0, packages: 0, findingsResolved: 0, rebootsNeeded: 0, rebootsAvoidedByLivepatch: 0 };
    for (const [agentId, wave] of waves) {
      const host = this.#fleet.hosts.get(agentId);
      const hp = this.#hostPlan(plan, agentId);
      if (host === undefined || !hp.ok) {
        skipped.push({ agentId, hostname: host?.hostname ?? null, reason: hp.ok ? 'no inventory stored' : hp.reason });
        continue;
      }
      const p = hp.plan;
      const check = this.#checkPatch(plan, agentId, p);
      hosts.push({
        agentId,
        hostname: host.hostname,
        wave,
        action: p.steps.join('+'),
        packages: p.packages.map((x) => ({ name: x.name, from: x.from, to: x.to })),
        findingsResolved: p.findingsResolved,
        needsReboot: p.needsReboot,
        livepatchInsteadOfReboot: p.livepatchInsteadOfReboot,
        ...check,
      });
      totals.hosts++;
      totals.packages += p.packages.length;
      totals.findingsResolved += p.findingsResolved.length;
      if (p.needsReboot) totals.rebootsNeeded++;
      if (p.livepatchInsteadOfReboot) totals.rebootsAvoidedByLivepatch++;
    }
    hosts.sort((a, b) => a.wave - b.wave || byName(a, b));
    const count = Math.max(-1, ...waves.values()) + 1;
    const sizes = Array.from({ length: count }, (_, w) => [...waves.values()].filter((x) => x === w).length);
    return { hosts, skipped: skipped.sort(byName), waves: sizes, totals };
  }

  /** One of the operator's actions by name (the API and the CLI take it as a word). */
  act(operation: RolloutOperation, id: string, actor: string): void {
    this[operation](id, actor);
  }

  /** draft -> awaiting-approval (requireApproval) or running. */
  submit(id: string, actor: string): RolloutState {
    return this.#run(() => {
      const r = this.#transition(id, 'submit');
      const now = this.#now();
      this.store.setSubmitted(id, actor, now);
      if (r.plan.requireApproval) {
        this.#setState(r, 'awaiting-approval', actor, 'rollout.submit', now);
        return 'awaiting-approval' as const;
      }
      this.#audit(actor, 'rollout.submit', `rollout:${id}`, null);
      return this.#start(r, actor, now);
    });
  }

  /** awaiting-approval -> running; with fourEyes, never by whoever created or submitted it (PW_ERR_ROLLOUT_APPROVAL). */
  approve(id: string, actor: string): RolloutState {
    return this.#run(() => {
      const r = this.#transition(id, 'approve');
      if (r.plan.fourEyes && (actor === r.createdBy || actor === r.submittedBy)) {
        throw new RolloutApprovalError(`rollout ${id} needs a second person: ${actor} created or submitted it`);
      }
      const now = this.#now();
      this.store.setApproved(id, actor, now);
      this.#audit(actor, 'rollout.approve', `rollout:${id}`, null);
      return this.#start(r, actor, now);
    });
  }

  /** Stops sending; instructions not yet delivered are taken back and sent afresh on resume. */
  pause(id: string, actor: string): void {
    this.#run(() => {
      const r = this.#transition(id, 'pause');
      const now = this.#now();
      this.#setState(r, 'paused', actor, 'rollout.pause', now);
      this.#withdraw(r, now, 'rollout paused');
    });
  }

  resume(id: string, actor: string): void {
    this.#run(() => {
      const r = this.#transition(id, 'resume');
      const now = this.#now();
      this.#setState(r, 'running', actor, 'rollout.resume', now);
      this.#advance(id, now);
    });
  }

  cancel(id: string, actor: string): void {
    this.#run(() => {
      const r = this.#transition(id, 'cancel');
      const now = this.#now();
      this.#setState(r, 'cancelled', actor, 'rollout.cancel', now);
      this.store.setFinished(id, now);
      this.#withdraw(r, now, 'rollout cancelled');
      this.#outbox.stopResends(r.id, now);
    });
  }

  /**
   * Expires overdue instructions and advances every running rollout, each in its own
   * transaction: one that throws is reported (onError, its lastError) and the others go on.
   * Call every few seconds, and once at start.
   */
  tick(now = this.#now()): TickReport {
    const report: TickReport = { rollouts: 0, failed: [] };
    try {
      this.#run(() => this.#outbox.expire(now));
    } catch (err) {
      this.#onError(err, { rolloutId: null, agentId: null, during: 'expire' });
      report.failed.push({ rolloutId: null, code: codeOf(err), message: errorMessage(err) });
    }
    for (const id of this.store.idsInState('running')) {
      report.rollouts++;
      const err = this.#advanceAlone(id, now, 'tick');
      if (err !== null) report.failed.push({ rolloutId: id, code: err.code, message: err.message });
    }
    return report;
  }

  /**
   * An agent's result: recorded in the outbox (idempotent) and applied to its rollout host.
   * false: unknown instruction id, or another agent's (the gateway should log it).
   */
  onResult(agentId: string, result: InstructionResult): boolean {
    const now = this.#now();
    // The result is the agent's word and is kept whatever its rollout does next: advancing
    // the rollout is its own transaction, and a failure there is the rollout's, not the agent's.
    const rolloutId = this.#run((): string | false | null => {
      if (!this.#outbox.recordResult(agentId, result, now) || result.instructionId === null) return false;
      const h = this.store.hostByInstruction(result.instructionId, agentId);
      if (h?.state !== 'sent') return null;
      if (result.status !== 'succeeded') {
        this.store.updateHost(h.rolloutId, agentId, { state: result.status, result, code: result.code, detail: `${result.code ?? result.status}: ${result.message.slice(0, 500)}` }, now);
      } else if ((h.step === 'reboot' || h.step === 'reboot-if-needed') && result.rebootRequired !== false) {
        // Rebooting: done when the agent comes back with another boot id (onInventory).
        this.store.updateHost(h.rolloutId, agentId, { result, detail: 'rebooting' }, now);
      } else {
        this.#stepDone(h, result, now);
      }
      return h.rolloutId;
    });
    if (rolloutId === false) return false;
    if (rolloutId !== null) this.#advanceAlone(rolloutId, now, 'result');
    return true;
  }

  /** A stored inventory: a boot id other than the one before a reboot means the host came back. */
  onInventory(agentId: string, inventory: Inventory): void {
    const bootId = inventory.host.bootId;
    if (bootId === null) return;
    // Nearly every stored inventory comes from a host with no reboot outstanding: a read
    // says so, without a write transaction (and its commit) per report.
    if (!this.store.awaitingReboot(agentId).some((h) => h.bootId !== null && h.bootId !== bootId)) return;
    const now = this.#now();
    // One transaction per rollout the host is in: one that cannot advance holds back no other.
    for (const h of this.store.awaitingReboot(agentId)) {
      if (h.bootId === null || h.bootId === bootId) continue;
      try {
        this.#run(() => {
          const result = h.instructionId === null ? null : (this.#outbox.get(h.instructionId)?.result ?? null);
          this.#stepDone({ ...h }, result, now, `back with boot id ${bootId}`);
        });
      } catch (err) {
        this.#failed(h.rolloutId, agentId, 'inventory', err, now);
        continue;
      }
      this.#advanceAlone(h.rolloutId, now, 'inventory');
    }
  }

  // -------------------------------------------------------------------------------------

  /** One transaction per call; onEnqueued only after the commit, each agent on its own (one push that throws stops no other). */
  #run<T>(fn: () => T): T {
    this.#enqueued = new Set();
    let out: T;
    try {
      out = this.#tx.inImmediateTransaction(fn);
    } catch (err) {
      // Rolled back: nothing was enqueued.
      this.#enqueued = new Set();
      throw err;
    }
    const agents = this.#enqueued;
    this.#enqueued = new Set();
    for (const a of agents) {
      try {
        this.#onEnqueued?.(a);
      } catch (err) {
        this.#onError(err, { rolloutId: null, agentId: a, during: 'push' });
      }
    }
    return out;
  }

  /**
   * Advances one rollout in its own transaction. A failure rolls back only this rollout's
   * advance; it is reported and kept as the rollout's lastError, and returned. A success
   * clears the lastError.
   */
  #advanceAlone(id: string, now: Date, during: string): RolloutError | null {
    try {
      this.#run(() => {
        this.#advance(id, now);
        const last = this.store.get(id)?.lastError;
        if (last !== undefined && last !== null) this.store.setLastError(id, null, now);
      });
      return null;
    } catch (err) {
      return this.#failed(id, null, during, err, now);
    }
  }

  /** Reports an error kept from the caller and stores it on its rollout (in a transaction of its own: the failed one rolled back). */
  #failed(rolloutId: string, agentId: string | null, during: string, err: unknown, now: Date): RolloutError {
    this.#onError(err, { rolloutId, agentId, during });
    const e: RolloutError = { code: codeOf(err), message: `${during}: ${errorMessage(err)}`.slice(0, 1000), at: now.toISOString() };
    try {
      this.#tx.inImmediateTransaction(() => {
        this.store.setLastError(rolloutId, e, now);
      });
    } catch (again) {
      this.#onError(again, { rolloutId, agentId, during: 'record-error' });
    }
    return e;
  }

  /**
   * One host's step in a savepoint: an instruction that cannot be built or signed undoes
   * that step's writes and fails the host alone with its reason; any other error is the
   * rollout's and goes up.
   */
  #hostStep(r: RolloutRecord, h: RolloutHostRecord, now: Date, fn: () => void): void {
    try {
      this.#tx.inTransaction(fn);
    } catch (err) {
      if (!isBuildError(err)) throw err;
      this.#onError(err, { rolloutId: r.id, agentId: h.agentId, during: 'host-step' });
      const code = codeOf(err) === 'PW_ERR_INTERNAL' ? 'PW_ERR_INSTRUCTION_BUILD' : codeOf(err);
      const message = err instanceof z.ZodError ? `the signer refused the instruction: ${err.issues.slice(0, 3).map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` : (err as Error).message;
      const step = h.steps[0] ?? null;
      this.store.updateHost(r.id, h.agentId, { state: 'failed', step, steps: h.steps.slice(1), instructionId: null, code, detail: `${code}: ${message}`.slice(0, 1000) }, now);
      this.#audit(SYSTEM_ACTOR, 'rollout.host-failed', `rollout:${r.id}`, JSON.stringify({ agentId: h.agentId, step, code }));
    }
  }

  /** What the preview says of a host's patch: how many instructions, or why it cannot be built. */
  #checkPatch(plan: RolloutPlan, agentId: string, p: HostPlan): Pick<PreviewHost, 'patchInstructions' | 'error'> {
    if (!p.steps.includes('patch') || p.packages.length === 0) return { patchInstructions: 0, error: null };
    const at = new Date(0).toISOString();
    const base: Omit<PatchInstruction, 'packages'> = { schema: INSTRUCTION_SCHEMA, id: randomUUID(), agentId, issuedAt: at, notBefore: at, expiresAt: at, rolloutId: randomUUID(), dryRun: plan.dryRun, kind: 'patch', advisories: p.advisories };
    try {
      const parts = patchParts(base, p.packages.map((x) => ({ name: x.name, version: x.pin })));
      for (const packages of parts) instructionPayload({ ...base, packages });
      return { patchInstructions: parts.length, error: null };
    } catch (err) {
      if (!isBuildError(err)) throw err;
      return { patchInstructions: 0, error: { code: codeOf(err), message: errorMessage(err) } };
    }
  }

  #require(id: string): RolloutRecord {
    const r = this.store.get(id);
    if (r === undefined) throw new RolloutNotFoundError(`no rollout ${id.slice(0, 64)}`);
    return r;
  }

  #transition(id: string, op: RolloutOperation): RolloutRecord {
    const r = this.#require(id);
    const from = TRANSITIONS[op];
    if (!from.includes(r.state)) throw new RolloutStateError(`cannot ${op} rollout ${id}: it is ${r.state} (${op} needs ${from.join(' or ')})`);
    return r;
  }

  #setState(r: RolloutRecord, state: RolloutState, actor: string, action: string, now: Date, detail: string | null = null): void {
    this.store.setState(r.id, state, now);
    this.#audit(actor, action, `rollout:${r.id}`, JSON.stringify({ from: r.state, to: state, ...(detail === null ? {} : { reason: detail }) }));
    r.state = state;
  }

  #start(r: RolloutRecord, actor: string, now: Date): RolloutState {
    const skipped: Preview['skipped'] = [];
    // Hosts the action cannot apply to are left out here, so they never count against the gate.
    const waves = splitWaves([...this.#select(r.plan, skipped).keys()], r.plan.waves);
    this.store.insertHosts(r.id, waves, now);
    const waveCount = waveSizes(waves.size, r.plan.waves).length;
    this.store.setStarted(r.id, waveCount, now);
    r.waveCount = waveCount;
    this.#setState(r, 'running', actor, 'rollout.start', now);
    this.#audit(actor, 'rollout.targets', `rollout:${r.id}`, JSON.stringify({ hosts: waves.size, waves: waveCount, skipped: skipped.length }));
    this.#advance(r.id, now);
    return this.store.get(r.id)?.state ?? 'running';
  }

  /** Hosts matching the target (AND between kinds, OR within one) with what the plan means for each; unusable ones go to `skipped`. */
  #select(plan: RolloutPlan, skipped: Preview['skipped']): Map<string, HostPlan> {
    const t = plan.target;
    let candidates: HostSummary[] = [];
    if (t.agentIds.length > 0) {
      for (const id of t.agentIds) {
        const h = this.#fleet.hosts.get(id);
        if (h === undefined) skipped.push({ agentId: id, hostname: this.#fleet.agents.get(id)?.hostname ?? null, reason: 'no inventory stored' });
        else candidates.push(h);
      }
    } else {
      candidates = [...this.#fleet.hosts.all()];
    }
    const ecosystems = new Set(t.ecosystems);
    const tags = new Set(t.tags);
    const ids = new Set(t.findings);
    candidates = candidates.filter((h) => {
      if (ecosystems.size > 0 && (h.ecosystem === null || !ecosystems.has(h.ecosystem))) return false;
      if (tags.size > 0 && !h.tags.some((x) => tags.has(x))) return false;
      if (h.revokedAt !== null) {
        if (t.agentIds.length > 0) skipped.push({ agentId: h.agentId, hostname: h.hostname, reason: 'agent revoked' });
        return false;
      }
      if (ids.size > 0) {
        const open = this.#findings(h.agentId).some((f) => isActionable(f.status) && (ids.has(f.advisory) || f.cves.some((c) => ids.has(c))));
        if (!open) return false;
      }
      return true;
    });
    const out = new Map<string, HostPlan>();
    for (const h of candidates) {
      const hp = this.#hostPlan(plan, h.agentId);
      if (hp.ok) out.set(h.agentId, hp.plan);
      else skipped.push({ agentId: h.agentId, hostname: h.hostname, reason: hp.reason });
    }
    return out;
  }

  #hostPlan(plan: RolloutPlan, agentId: string): { ok: true; plan: HostPlan } | { ok: false; reason: string } {
    const inv = this.#fleet.reports.latestInventory(agentId);
    if (inv === undefined) return { ok: false, reason: 'no inventory stored' };
    return planForHost(plan, inv, this.#findings(agentId));
  }

  #withdraw(r: RolloutRecord, now: Date, why: string): void {
    for (const w of this.#outbox.withdraw(r.id, now)) {
      const h = this.store.hostByInstruction(w.id, w.agentId);
      if (h?.state !== 'sent' || h.step === null) continue;
      // A patch sent in parts keeps one `patch` ahead for the parts still to come: it is not doubled.
      const steps = h.step === 'patch' && h.steps[0] === 'patch' ? h.steps : [h.step, ...h.steps];
      this.store.updateHost(r.id, w.agentId, { state: 'pending', steps, step: null, instructionId: null, detail: `withdrawn before delivery: ${why}` }, now);
    }
  }

  /** A step succeeded: the next one waits for #advance (it may be outside a window), or the host is done. */
  #stepDone(h: RolloutHostRecord, result: InstructionResult | null, now: Date, detail: string | null = null): void {
    let steps = h.steps;
    // A patch that leaves no reboot needed skips its conditional reboot; unknown (null) sends it, and the agent judges.
    if (steps[0] === 'reboot-if-needed' && result?.rebootRequired === false) steps = steps.slice(1);
    if (steps.length === 0) this.store.updateHost(h.rolloutId, h.agentId, { state: 'succeeded', steps: [], result, detail }, now);
    else this.store.updateHost(h.rolloutId, h.agentId, { state: 'pending', steps, result, detail }, now);
  }

  #advance(id: string, now: Date): void {
    // Each pass either returns or starts a wave; a wave where every host had nothing to do is done at once.
    for (let guard = 0; guard < 10_000; guard++) {
      const r = this.store.get(id);
      if (r?.state !== 'running') return;
      const plan = r.plan;
      let hosts = this.store.hosts(id);
      this.#judgeOutstanding(r, hosts, now);
      hosts = this.store.hosts(id);
      const window = openUntil(plan.windows, now);
      if (window !== null) {
        for (const h of hosts) {
          if (h.state !== 'pending' || h.wave > r.currentWave || h.steps.length === 0) continue;
          this.#hostStep(r, h, now, () => {
            this.#sendNextStep(r, h, now, window);
          });
        }
        hosts = this.store.hosts(id);
      }
      if (r.currentWave >= 0) {
        if (hosts.some((h) => h.wave <= r.currentWave && !HOST_DONE.has(h.state))) return;
        const done = hosts.filter((h) => h.wave <= r.currentWave);
        const failed = done.filter((h) => HOST_FAILED.has(h.state)).length;
        const max = plan.gate.maxFailedHosts;
        const exceeded = typeof max === 'number' ? failed > max : (failed * 100) / Math.max(1, done.length) > max.percent;
        if (exceeded) {
          const limit = typeof max === 'number' ? `${max}` : `${max.percent}%`;
          const reason = `gate after wave ${r.currentWave}: ${failed} of ${done.length} hosts failed, refused, expired or did not come back (limit ${limit})`;
          this.store.setHaltedReason(id, reason, now);
          this.#setState(r, 'halted', SYSTEM_ACTOR, 'rollout.halt', now, reason);
          this.#withdraw(r, now, 'rollout halted');
          this.#outbox.stopResends(r.id, now);
          return;
        }
        if (r.currentWave >= r.waveCount - 1) {
          this.store.setFinished(id, now);
          this.#setState(r, 'completed', SYSTEM_ACTOR, 'rollout.complete', now, `${done.length - failed} of ${done.length} hosts succeeded`);
          return;
        }
        if (r.waveDoneAt === null) {
          this.store.setWaveDone(id, now);
          this.#audit(SYSTEM_ACTOR, 'rollout.wave-done', `rollout:${id}`, JSON.stringify({ wave: r.currentWave, hosts: done.length, failed }));
          r.waveDoneAt = now.toISOString();
        }
        if (now.getTime() < Date.parse(r.waveDoneAt) + plan.waitMinutes * MINUTE) return;
      } else if (r.waveCount === 0) {
        this.store.setFinished(id, now);
        this.#setState(r, 'completed', SYSTEM_ACTOR, 'rollout.complete', now, 'no host to act on');
        return;
      }
      if (window === null) return;
      const next = r.currentWave + 1;
      this.store.setWave(id, next, now);
      const waveHosts = hosts.filter((h) => h.wave === next);
      this.#audit(SYSTEM_ACTOR, 'rollout.wave-start', `rollout:${id}`, JSON.stringify({ wave: next, hosts: waveHosts.length }));
      for (const h of waveHosts) {
        const hp = this.#hostPlan(plan, h.agentId);
        if (!hp.ok) this.store.updateHost(id, h.agentId, { state: 'succeeded', detail: `nothing to do: ${hp.reason}` }, now);
        else this.store.updateHost(id, h.agentId, { steps: hp.plan.steps }, now);
      }
    }
  }

  /** Outstanding instructions that expired, and reboots whose host did not come back in time. */
  #judgeOutstanding(r: RolloutRecord, hosts: readonly RolloutHostRecord[], now: Date): void {
    for (const h of hosts) {
      if (h.state !== 'sent' || h.instructionId === null) continue;
      const o = this.#outbox.get(h.instructionId);
      if (o === undefined) continue;
      const reboot = h.step === 'reboot' || h.step === 'reboot-if-needed';
      if (reboot && o.sentAt !== null) {
        const deadline = Date.parse(o.sentAt) + r.plan.gate.rebootGraceMinutes * MINUTE;
        if (now.getTime() > deadline) {
          this.store.updateHost(r.id, h.agentId, { state: 'not-back', detail: `no new boot id within ${r.plan.gate.rebootGraceMinutes} min of the reboot's delivery at ${o.sentAt}` }, now);
        }
        continue;
      }
      if (o.resultAt === null && (o.expiredAt !== null || Date.parse(o.expiresAt) <= now.getTime())) {
        this.store.updateHost(r.id, h.agentId, { state: 'expired', detail: `instruction expired at ${o.expiresAt}${o.sentAt === null ? ' before it was delivered' : ' with no result'}` }, now);
      }
    }
  }

  #sendNextStep(r: RolloutRecord, h: RolloutHostRecord, now: Date, window: Date | 'always'): void {
    const [step, ...rest] = h.steps;
    if (step === undefined) return;
    const inv = this.#fleet.reports.latestInventory(h.agentId);
    const ttl = now.getTime() + r.plan.instructionTtlMinutes * MINUTE;
    const expiresAt = new Date(window === 'always' ? ttl : Math.min(ttl, window.getTime())).toISOString();
    const base = {
      schema: INSTRUCTION_SCHEMA,
      id: randomUUID(),
      agentId: h.agentId,
      issuedAt: now.toISOString(),
      notBefore: now.toISOString(),
      expiresAt,
      rolloutId: r.id,
      dryRun: r.plan.dryRun,
    } as const;
    let instruction: Instruction;
    let after = rest;
    let detail: string | null = null;
    switch (step) {
      case 'patch': {
        const hp = inv === undefined ? undefined : planForHost(r.plan, inv, this.#findings(h.agentId));
        // A host with a result already is getting a patch in parts: the parts that succeeded are not sent again.
        const done = h.result === null ? new Set<string>() : this.#outbox.patchedFor(r.id, h.agentId);
        const packages = hp?.ok === true ? hp.plan.packages.filter((p) => !done.has(p.name)).map((p) => ({ name: p.name, version: p.pin })) : [];
        if (hp?.ok !== true || packages.length === 0) {
          // Resolved since the wave started (patched by hand, or a newer inventory): skip to the next step.
          this.#stepDone({ ...h, steps: rest }, null, now, done.size > 0 ? `patched in parts: ${done.size} packages` : 'nothing left to patch');
          const again = this.store.host(r.id, h.agentId);
          if (again?.state === 'pending') this.#sendNextStep(r, again, now, window);
          return;
        }
        const patch: Omit<PatchInstruction, 'packages'> = { ...base, kind: 'patch', advisories: hp.plan.advisories };
        const parts = patchParts(patch, packages);
        const first = parts[0] ?? packages;
        instruction = { ...patch, packages: first };
        if (parts.length > 1) {
          // The rest follow, each when the one before succeeded (a `patch` stays ahead of the host's other steps).
          after = ['patch', ...rest];
          detail = `patch in parts: ${first.length} of ${packages.length} packages in this instruction, the rest follow`;
        }
        break;
      }
      case 'livepatch': {
        const tool = inv === undefined ? null : inv.kernel.livepatch.provider;
        instruction = { ...base, kind: 'livepatch', provider: tool === 'kernelcare' || tool === 'canonical-livepatch' || tool === 'kpatch' ? tool : null };
        break;
      }
      case 'reboot':
      case 'reboot-if-needed': {
        const onlyIfNeeded = step === 'reboot-if-needed' || (r.plan.action.kind === 'reboot' ? r.plan.action.onlyIfNeeded : true);
        instruction = { ...base, kind: 'reboot', onlyIfNeeded };
        break;
      }
      case 'refresh':
        instruction = { ...base, kind: 'refresh' };
        break;
    }
    // Checked as the agent will check it whatever the signer does: a refusal fails this host alone (#hostStep).
    instructionPayload(instruction);
    const signed = this.#signer(instruction);
    this.#outbox.enqueue({ id: instruction.id, agentId: h.agentId, payload: signed.payload, signature: signed.signature, expiresAt, rolloutId: r.id }, now);
    this.store.updateHost(
      r.id,
      h.agentId,
      { state: 'sent', step, steps: after, instructionId: instruction.id, bootId: step === 'reboot' || step === 'reboot-if-needed' ? (inv?.host.bootId ?? null) : h.bootId, detail },
      now,
    );
    this.#enqueued.add(h.agentId);
  }
}
