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
 *
 * Every step runs in one transaction of the asynchronous store (AsyncStore), its writes and
 * audit rows through that transaction's parts. A host's findings come from another service
 * and are never awaited inside a transaction: a step that needs findings it has not read
 * yet gives up its transaction (FindingsNeeded, rolled back), reads them, and runs again.
 */
import { randomUUID } from 'node:crypto';
import * as z from 'zod';
import { errorMessage, InstructionBuildError, PatchwardenError, RolloutApprovalError, RolloutNotFoundError, RolloutStateError } from '../../../shared/errors.ts';
import { INSTRUCTION_SCHEMA, instructionPayload, type Instruction, type InstructionResult, type PatchInstruction, type SignedInstruction } from '../../../shared/instructions.ts';
import type { Finding, Inventory } from '../../../shared/protocol.ts';
import type { HostSummary } from '../../store/hosts.ts';
import type { AsyncStore } from '../../store/store.ts';
import { isActionable } from '../../domain/correlate/status.ts';
import { planForHost, type HostPlan } from './host-plan.ts';
import { patchParts } from '../../domain/rollout/patch-parts.ts';
import { parsePlan, type RolloutPlan } from '../../domain/rollout/plan.ts';
import { HOST_DONE, HOST_FAILED, type RolloutError, type RolloutHostRecord, type RolloutRecord, type RolloutState } from '../../store/rollouts.ts';
import { splitWaves, waveSizes } from '../../domain/rollout/waves.ts';
import { openUntil } from '../../domain/rollout/window.ts';

const MINUTE = 60_000;
export const SYSTEM_ACTOR = 'system';

export interface RolloutEngineOptions {
  /**
   * The collector's store (`Store.async`): each engine step is one of its transactions, the
   * rollout's rows, the outbox and the audit rows written through it. Its rollouts part reads
   * plans with parsePlan (rollout/plan.ts).
   */
  store: RolloutEngineStore;
  /**
   * The host's current findings (the findings service). Read before a step's transaction,
   * never inside it: it is another service.
   */
  findings: (agentId: string) => Promise<Finding[]>;
  /** signInstruction with the collector's key. */
  signer: (instruction: Instruction) => SignedInstruction;
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

/** The parts of the store the engine reads and writes, and its transactions. */
export type RolloutEngineStore = Pick<AsyncStore, 'transaction' | 'rollouts' | 'outbox' | 'hosts' | 'agents' | 'reports' | 'audit'>;

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

/** One step's transaction (or, for a preview, the store itself) and what it leaves for after the commit. */
interface Step {
  readonly tx: RolloutEngineStore;
  /** Agents with new outbox entries, told after the commit (onEnqueued). */
  readonly enqueued: Set<string>;
  /** Hosts that failed alone, reported after the commit (onError). */
  readonly failures: { err: unknown; where: RolloutErrorContext }[];
  /** Findings read before the transaction, by agent id. */
  readonly findings: ReadonlyMap<string, Finding[]>;
}

/**
 * Thrown inside a step that needs findings it was not given: the step rolls back, they are
 * read with no transaction open, and the step runs again. Findings are another service's,
 * and a transaction awaits nothing but the store.
 */
class FindingsNeeded extends Error {
  readonly agentIds: readonly string[];

  constructor(agentIds: readonly string[]) {
    super(`the findings of ${agentIds.length} hosts are needed`);
    this.agentIds = agentIds;
  }
}

export class RolloutEngine {
  readonly #store: RolloutEngineStore;
  readonly #findings: (agentId: string) => Promise<Finding[]>;
  readonly #signer: (instruction: Instruction) => SignedInstruction;
  readonly #now: () => Date;
  readonly #onEnqueued: ((agentId: string) => void) | undefined;
  readonly #onError: (err: unknown, where: RolloutErrorContext) => void;

  constructor(opts: RolloutEngineOptions) {
    this.#store = opts.store;
    this.#findings = opts.findings;
    this.#signer = opts.signer;
    this.#now = opts.now ?? (() => new Date());
    this.#onEnqueued = opts.onEnqueued;
    this.#onError = opts.onError ?? defaultOnError;
  }

  /** The rollouts' rows, for views that list or count them. */
  get store(): RolloutEngineStore['rollouts'] {
    return this.#store.rollouts;
  }

  /** Validates the plan (RolloutPlanError, PW_ERR_ROLLOUT_PLAN) and stores it as a draft. */
  async create(planInput: unknown, actor: string): Promise<string> {
    const plan = parsePlan(planInput);
    const id = randomUUID();
    const now = this.#now();
    await this.#store.transaction(async (tx) => {
      await tx.rollouts.insert(id, plan, actor, now);
      await this.#audit(tx, actor, 'rollout.create', `rollout:${id}`, JSON.stringify({ name: plan.name, action: plan.action.kind }));
    });
    return id;
  }

  async get(id: string): Promise<RolloutView> {
    const r = await this.#require(this.#store, id);
    return { ...r, hosts: await this.#store.rollouts.hosts(id) };
  }

  list(): Promise<RolloutRecord[]> {
    return this.#store.rollouts.list();
  }

  /** Which hosts, which packages, which findings, how many reboots; for a started rollout, its own hosts and waves. */
  preview(idOrPlan: unknown): Promise<Preview> {
    return this.#read((s) => this.#preview(s, idOrPlan));
  }

  async #preview(s: Step, idOrPlan: unknown): Promise<Preview> {
    let plan: RolloutPlan;
    let waves: Map<string, number>;
    const skipped: Preview['skipped'] = [];
    const r = typeof idOrPlan === 'string' ? await this.#require(s.tx, idOrPlan) : undefined;
    if (r !== undefined && r.startedAt !== null) {
      plan = r.plan;
      waves = new Map((await s.tx.rollouts.hosts(r.id)).map((h) => [h.agentId, h.wave]));
    } else {
      plan = r?.plan ?? parsePlan(idOrPlan);
      waves = splitWaves([...(await this.#select(s, plan, skipped)).keys()], plan.waves);
    }
    this.#need(s, waves.keys());
    const hosts: PreviewHost[] = [];
    const totals = { hosts: 0, packages: 0, findingsResolved: 0, rebootsNeeded: 0, rebootsAvoidedByLivepatch: 0 };
    for (const [agentId, wave] of waves) {
      const host = await s.tx.hosts.get(agentId);
      const hp = await this.#hostPlan(s, plan, agentId);
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
  async act(operation: RolloutOperation, id: string, actor: string): Promise<void> {
    await this[operation](id, actor);
  }

  /** draft -> awaiting-approval (requireApproval) or running. */
  submit(id: string, actor: string): Promise<RolloutState> {
    return this.#run(async (s) => {
      const r = await this.#transition(s, id, 'submit');
      const now = this.#now();
      await s.tx.rollouts.setSubmitted(id, actor, now);
      if (r.plan.requireApproval) {
        await this.#setState(s, r, 'awaiting-approval', actor, 'rollout.submit', now);
        return 'awaiting-approval' as const;
      }
      await this.#audit(s.tx, actor, 'rollout.submit', `rollout:${id}`, null);
      return this.#start(s, r, actor, now);
    });
  }

  /** awaiting-approval -> running; with fourEyes, never by whoever created or submitted it (PW_ERR_ROLLOUT_APPROVAL). */
  approve(id: string, actor: string): Promise<RolloutState> {
    return this.#run(async (s) => {
      const r = await this.#transition(s, id, 'approve');
      if (r.plan.fourEyes && (actor === r.createdBy || actor === r.submittedBy)) {
        throw new RolloutApprovalError(`rollout ${id} needs a second person: ${actor} created or submitted it`);
      }
      const now = this.#now();
      await s.tx.rollouts.setApproved(id, actor, now);
      await this.#audit(s.tx, actor, 'rollout.approve', `rollout:${id}`, null);
      return this.#start(s, r, actor, now);
    });
  }

  /** Stops sending; instructions not yet delivered are taken back and sent afresh on resume. */
  async pause(id: string, actor: string): Promise<void> {
    await this.#run(async (s) => {
      const r = await this.#transition(s, id, 'pause');
      const now = this.#now();
      await this.#setState(s, r, 'paused', actor, 'rollout.pause', now);
      await this.#withdraw(s, r, now, 'rollout paused');
    });
  }

  async resume(id: string, actor: string): Promise<void> {
    await this.#run(async (s) => {
      const r = await this.#transition(s, id, 'resume');
      const now = this.#now();
      await this.#setState(s, r, 'running', actor, 'rollout.resume', now);
      await this.#advance(s, id, now);
    });
  }

  async cancel(id: string, actor: string): Promise<void> {
    await this.#run(async (s) => {
      const r = await this.#transition(s, id, 'cancel');
      const now = this.#now();
      await this.#setState(s, r, 'cancelled', actor, 'rollout.cancel', now);
      await s.tx.rollouts.setFinished(id, now);
      await this.#withdraw(s, r, now, 'rollout cancelled');
      await s.tx.outbox.stopResends(r.id, now);
    });
  }

  /**
   * Expires overdue instructions and advances every running rollout, each in its own
   * transaction: one that throws is reported (onError, its lastError) and the others go on.
   * Call every few seconds, and once at start.
   */
  async tick(now = this.#now()): Promise<TickReport> {
    const report: TickReport = { rollouts: 0, failed: [] };
    try {
      await this.#run((s) => s.tx.outbox.expire(now));
    } catch (err) {
      this.#onError(err, { rolloutId: null, agentId: null, during: 'expire' });
      report.failed.push({ rolloutId: null, code: codeOf(err), message: errorMessage(err) });
    }
    for (const id of await this.#store.rollouts.idsInState('running')) {
      report.rollouts++;
      const err = await this.#advanceAlone(id, now, 'tick');
      if (err !== null) report.failed.push({ rolloutId: id, code: err.code, message: err.message });
    }
    return report;
  }

  /**
   * An agent's result: recorded in the outbox (idempotent) and applied to its rollout host.
   * false: unknown instruction id, or another agent's (the gateway should log it).
   */
  async onResult(agentId: string, result: InstructionResult): Promise<boolean> {
    const now = this.#now();
    // The result is the agent's word and is kept whatever its rollout does next: advancing
    // the rollout is its own transaction, and a failure there is the rollout's, not the agent's.
    const rolloutId = await this.#run(async (s): Promise<string | false | null> => {
      if (!(await s.tx.outbox.recordResult(agentId, result, now)) || result.instructionId === null) return false;
      const found = await s.tx.rollouts.hostByInstruction(result.instructionId, agentId);
      if (found === undefined) return null;
      // Read again under the rollout's lock: an advance (expiry) may be judging this host meanwhile.
      await s.tx.rollouts.lock(found.rolloutId);
      const h = await s.tx.rollouts.hostByInstruction(result.instructionId, agentId);
      // Taken already: a result sent again because its ack was lost. The collector that took it
      // may have died before it advanced the rollout, so this one advances it (nothing, if done).
      if (h?.state !== 'sent') return found.rolloutId;
      if (result.status !== 'succeeded') {
        await s.tx.rollouts.updateHost(h.rolloutId, agentId, { state: result.status, result, code: result.code, detail: `${result.code ?? result.status}: ${result.message.slice(0, 500)}` }, now);
      } else if ((h.step === 'reboot' || h.step === 'reboot-if-needed') && result.rebootRequired !== false) {
        // Rebooting: done when the agent comes back with another boot id (onInventory).
        await s.tx.rollouts.updateHost(h.rolloutId, agentId, { result, detail: 'rebooting' }, now);
      } else {
        await this.#stepDone(s, h, result, now);
      }
      return h.rolloutId;
    });
    if (rolloutId === false) return false;
    if (rolloutId !== null) await this.#advanceAlone(rolloutId, now, 'result');
    return true;
  }

  /** A stored inventory: a boot id other than the one before a reboot means the host came back. */
  async onInventory(agentId: string, inventory: Inventory): Promise<void> {
    const bootId = inventory.host.bootId;
    if (bootId === null) return;
    const cameBack = (h: RolloutHostRecord): boolean => h.bootId !== null && h.bootId !== bootId;
    // Nearly every stored inventory comes from a host with no reboot outstanding: a read
    // says so, without a write transaction (and its commit) per report.
    const waiting = (await this.#store.rollouts.awaitingReboot(agentId)).filter(cameBack);
    if (waiting.length === 0) return;
    const now = this.#now();
    // One transaction per rollout the host is in: one that cannot advance holds back no other.
    for (const { rolloutId } of waiting) {
      let moved: boolean;
      try {
        moved = await this.#run(async (s) => {
          // Read again in the transaction, under the rollout's lock: a result or another report may have moved the host since.
          await s.tx.rollouts.lock(rolloutId);
          const h = (await s.tx.rollouts.awaitingReboot(agentId)).find((x) => x.rolloutId === rolloutId);
          if (h === undefined || !cameBack(h)) return false;
          const result = h.instructionId === null ? null : ((await s.tx.outbox.get(h.instructionId))?.result ?? null);
          await this.#stepDone(s, h, result, now, `back with boot id ${bootId}`);
          return true;
        });
      } catch (err) {
        await this.#failed(rolloutId, agentId, 'inventory', err, now);
        continue;
      }
      if (moved) await this.#advanceAlone(rolloutId, now, 'inventory');
    }
  }

  // -------------------------------------------------------------------------------------

  /**
   * One transaction per call, run again with the findings it asked for (FindingsNeeded).
   * After the commit only: hosts that failed alone go to onError, then onEnqueued, each
   * agent on its own (one push that throws stops no other).
   */
  async #run<T>(fn: (s: Step) => Promise<T>): Promise<T> {
    const findings = new Map<string, Finding[]>();
    const enqueued = new Set<string>();
    const failures: Step['failures'] = [];
    for (;;) {
      let out: T;
      try {
        out = await this.#store.transaction(async (tx) => {
          // The store may run this function again (a lost PostgreSQL transaction): each run starts with nothing to tell.
          enqueued.clear();
          failures.length = 0;
          return fn({ tx, enqueued, failures, findings });
        });
      } catch (err) {
        // Rolled back: nothing was enqueued, no host failed.
        if (!(err instanceof FindingsNeeded)) throw err;
        await this.#readFindings(findings, err.agentIds);
        continue;
      }
      for (const f of failures) this.#onError(f.err, f.where);
      for (const a of enqueued) {
        try {
          this.#onEnqueued?.(a);
        } catch (err) {
          this.#onError(err, { rolloutId: null, agentId: a, during: 'push' });
        }
      }
      return out;
    }
  }

  /** As #run for reads: no transaction, nothing written, the findings `fn` asks for read first. */
  async #read<T>(fn: (s: Step) => Promise<T>): Promise<T> {
    const findings = new Map<string, Finding[]>();
    for (;;) {
      try {
        return await fn({ tx: this.#store, enqueued: new Set(), failures: [], findings });
      } catch (err) {
        if (!(err instanceof FindingsNeeded)) throw err;
        await this.#readFindings(findings, err.agentIds);
      }
    }
  }

  /** One host at a time: a rollout over the whole fleet asks the findings service for no burst of thousands at once. */
  async #readFindings(into: Map<string, Finding[]>, agentIds: readonly string[]): Promise<void> {
    for (const agentId of agentIds) into.set(agentId, await this.#findings(agentId));
  }

  /** The host's findings, read before the transaction; a host not read yet restarts the step (FindingsNeeded). */
  #findingsOf(s: Step, agentId: string): Finding[] {
    const found = s.findings.get(agentId);
    if (found === undefined) throw new FindingsNeeded([agentId]);
    return found;
  }

  /** Asks for the findings of every host a loop is about to plan, at once: one restart, not one a host. */
  #need(s: Step, agentIds: Iterable<string>): void {
    const missing = [...agentIds].filter((a) => !s.findings.has(a));
    if (missing.length > 0) throw new FindingsNeeded(missing);
  }

  #audit(tx: RolloutEngineStore, actor: string, action: string, target: string | null, detail: string | null): Promise<void> {
    return tx.audit.record(actor, action, target, detail, this.#now());
  }

  /**
   * Advances one rollout in its own transaction. A failure rolls back only this rollout's
   * advance; it is reported and kept as the rollout's lastError, and returned. A success
   * clears the lastError.
   */
  async #advanceAlone(id: string, now: Date, during: string): Promise<RolloutError | null> {
    try {
      await this.#run(async (s) => {
        await this.#advance(s, id, now);
        const last = (await s.tx.rollouts.get(id))?.lastError;
        if (last !== undefined && last !== null) await s.tx.rollouts.setLastError(id, null, now);
      });
      return null;
    } catch (err) {
      return this.#failed(id, null, during, err, now);
    }
  }

  /** Reports an error kept from the caller and stores it on its rollout (in a transaction of its own: the failed one rolled back). */
  async #failed(rolloutId: string, agentId: string | null, during: string, err: unknown, now: Date): Promise<RolloutError> {
    this.#onError(err, { rolloutId, agentId, during });
    const e: RolloutError = { code: codeOf(err), message: `${during}: ${errorMessage(err)}`.slice(0, 1000), at: now.toISOString() };
    try {
      await this.#store.transaction(async (tx) => {
        await tx.rollouts.setLastError(rolloutId, e, now);
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
  async #hostStep(s: Step, r: RolloutRecord, h: RolloutHostRecord, now: Date, fn: (s: Step) => Promise<void>): Promise<void> {
    try {
      await s.tx.transaction(async (sp) => fn({ ...s, tx: sp }));
    } catch (err) {
      if (!isBuildError(err)) throw err;
      s.failures.push({ err, where: { rolloutId: r.id, agentId: h.agentId, during: 'host-step' } });
      const code = codeOf(err) === 'PW_ERR_INTERNAL' ? 'PW_ERR_INSTRUCTION_BUILD' : codeOf(err);
      const message = err instanceof z.ZodError ? `the signer refused the instruction: ${err.issues.slice(0, 3).map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` : (err as Error).message;
      const step = h.steps[0] ?? null;
      await s.tx.rollouts.updateHost(r.id, h.agentId, { state: 'failed', step, steps: h.steps.slice(1), instructionId: null, code, detail: `${code}: ${message}`.slice(0, 1000) }, now);
      await this.#audit(s.tx, SYSTEM_ACTOR, 'rollout.host-failed', `rollout:${r.id}`, JSON.stringify({ agentId: h.agentId, step, code }));
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

  async #require(tx: RolloutEngineStore, id: string): Promise<RolloutRecord> {
    const r = await tx.rollouts.get(id);
    if (r === undefined) throw new RolloutNotFoundError(`no rollout ${id.slice(0, 64)}`);
    return r;
  }

  async #transition(s: Step, id: string, op: RolloutOperation): Promise<RolloutRecord> {
    await s.tx.rollouts.lock(id);
    const r = await this.#require(s.tx, id);
    const from = TRANSITIONS[op];
    if (!from.includes(r.state)) throw new RolloutStateError(`cannot ${op} rollout ${id}: it is ${r.state} (${op} needs ${from.join(' or ')})`);
    return r;
  }

  async #setState(s: Step, r: RolloutRecord, state: RolloutState, actor: string, action: string, now: Date, detail: string | null = null): Promise<void> {
    await s.tx.rollouts.setState(r.id, state, now);
    await this.#audit(s.tx, actor, action, `rollout:${r.id}`, JSON.stringify({ from: r.state, to: state, ...(detail === null ? {} : { reason: detail }) }));
    r.state = state;
  }

  async #start(s: Step, r: RolloutRecord, actor: string, now: Date): Promise<RolloutState> {
    const skipped: Preview['skipped'] = [];
    // Hosts the action cannot apply to are left out here, so they never count against the gate.
    const waves = splitWaves([...(await this.#select(s, r.plan, skipped)).keys()], r.plan.waves);
    await s.tx.rollouts.insertHosts(r.id, waves, now);
    const waveCount = waveSizes(waves.size, r.plan.waves).length;
    await s.tx.rollouts.setStarted(r.id, waveCount, now);
    r.waveCount = waveCount;
    await this.#setState(s, r, 'running', actor, 'rollout.start', now);
    await this.#audit(s.tx, actor, 'rollout.targets', `rollout:${r.id}`, JSON.stringify({ hosts: waves.size, waves: waveCount, skipped: skipped.length }));
    await this.#advance(s, r.id, now);
    return (await s.tx.rollouts.get(r.id))?.state ?? 'running';
  }

  /** Hosts matching the target (AND between kinds, OR within one) with what the plan means for each; unusable ones go to `skipped`. */
  async #select(s: Step, plan: RolloutPlan, skipped: Preview['skipped']): Promise<Map<string, HostPlan>> {
    const t = plan.target;
    let candidates: HostSummary[] = [];
    if (t.agentIds.length > 0) {
      for (const id of t.agentIds) {
        const h = await s.tx.hosts.get(id);
        if (h === undefined) skipped.push({ agentId: id, hostname: (await s.tx.agents.get(id))?.hostname ?? null, reason: 'no inventory stored' });
        else candidates.push(h);
      }
    } else {
      for await (const h of s.tx.hosts.all()) candidates.push(h);
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
      return true;
    });
    // Every host left is planned from its findings: all of them read at once, before the transaction.
    this.#need(s, candidates.map((h) => h.agentId));
    if (ids.size > 0) {
      candidates = candidates.filter((h) => this.#findingsOf(s, h.agentId).some((f) => isActionable(f.status) && (ids.has(f.advisory) || f.cves.some((c) => ids.has(c)))));
    }
    const out = new Map<string, HostPlan>();
    for (const h of candidates) {
      const hp = await this.#hostPlan(s, plan, h.agentId);
      if (hp.ok) out.set(h.agentId, hp.plan);
      else skipped.push({ agentId: h.agentId, hostname: h.hostname, reason: hp.reason });
    }
    return out;
  }

  async #hostPlan(s: Step, plan: RolloutPlan, agentId: string): Promise<{ ok: true; plan: HostPlan } | { ok: false; reason: string }> {
    const inv = await s.tx.reports.latestInventory(agentId);
    if (inv === undefined) return { ok: false, reason: 'no inventory stored' };
    return planForHost(plan, inv, this.#findingsOf(s, agentId));
  }

  async #withdraw(s: Step, r: RolloutRecord, now: Date, why: string): Promise<void> {
    for (const w of await s.tx.outbox.withdraw(r.id, now)) {
      const h = await s.tx.rollouts.hostByInstruction(w.id, w.agentId);
      if (h?.state !== 'sent' || h.step === null) continue;
      // A patch sent in parts keeps one `patch` ahead for the parts still to come: it is not doubled.
      const steps = h.step === 'patch' && h.steps[0] === 'patch' ? h.steps : [h.step, ...h.steps];
      await s.tx.rollouts.updateHost(r.id, w.agentId, { state: 'pending', steps, step: null, instructionId: null, detail: `withdrawn before delivery: ${why}` }, now);
    }
  }

  /** A step succeeded: the next one waits for #advance (it may be outside a window), or the host is done. */
  async #stepDone(s: Step, h: RolloutHostRecord, result: InstructionResult | null, now: Date, detail: string | null = null): Promise<void> {
    let steps = h.steps;
    // A patch that leaves no reboot needed skips its conditional reboot; unknown (null) sends it, and the agent judges.
    if (steps[0] === 'reboot-if-needed' && result?.rebootRequired === false) steps = steps.slice(1);
    if (steps.length === 0) await s.tx.rollouts.updateHost(h.rolloutId, h.agentId, { state: 'succeeded', steps: [], result, detail }, now);
    else await s.tx.rollouts.updateHost(h.rolloutId, h.agentId, { state: 'pending', steps, result, detail }, now);
  }

  async #advance(s: Step, id: string, now: Date): Promise<void> {
    // One advance of a rollout at a time, over every replica: two would each send the next wave.
    await s.tx.rollouts.lock(id);
    // Each pass either returns or starts a wave; a wave where every host had nothing to do is done at once.
    for (let guard = 0; guard < 10_000; guard++) {
      const r = await s.tx.rollouts.get(id);
      if (r?.state !== 'running') return;
      const plan = r.plan;
      let hosts = await s.tx.rollouts.hosts(id);
      await this.#judgeOutstanding(s, r, hosts, now);
      hosts = await s.tx.rollouts.hosts(id);
      const window = openUntil(plan.windows, now);
      if (window !== null) {
        const ready = hosts.filter((h) => h.state === 'pending' && h.wave <= r.currentWave && h.steps.length > 0);
        // A patch is planned from the host's findings: those of every host about to patch, at once.
        this.#need(s, ready.filter((h) => h.steps[0] === 'patch').map((h) => h.agentId));
        for (const h of ready) {
          await this.#hostStep(s, r, h, now, (sp) => this.#sendNextStep(sp, r, h, now, window));
        }
        hosts = await s.tx.rollouts.hosts(id);
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
          await s.tx.rollouts.setHaltedReason(id, reason, now);
          await this.#setState(s, r, 'halted', SYSTEM_ACTOR, 'rollout.halt', now, reason);
          await this.#withdraw(s, r, now, 'rollout halted');
          await s.tx.outbox.stopResends(r.id, now);
          return;
        }
        if (r.currentWave >= r.waveCount - 1) {
          await s.tx.rollouts.setFinished(id, now);
          await this.#setState(s, r, 'completed', SYSTEM_ACTOR, 'rollout.complete', now, `${done.length - failed} of ${done.length} hosts succeeded`);
          return;
        }
        if (r.waveDoneAt === null) {
          await s.tx.rollouts.setWaveDone(id, now);
          await this.#audit(s.tx, SYSTEM_ACTOR, 'rollout.wave-done', `rollout:${id}`, JSON.stringify({ wave: r.currentWave, hosts: done.length, failed }));
          r.waveDoneAt = now.toISOString();
        }
        if (now.getTime() < Date.parse(r.waveDoneAt) + plan.waitMinutes * MINUTE) return;
      } else if (r.waveCount === 0) {
        await s.tx.rollouts.setFinished(id, now);
        await this.#setState(s, r, 'completed', SYSTEM_ACTOR, 'rollout.complete', now, 'no host to act on');
        return;
      }
      if (window === null) return;
      const next = r.currentWave + 1;
      const waveHosts = hosts.filter((h) => h.wave === next);
      // Each host of the wave is planned from its findings: all of them read before the wave's first write.
      this.#need(s, waveHosts.map((h) => h.agentId));
      await s.tx.rollouts.setWave(id, next, now);
      await this.#audit(s.tx, SYSTEM_ACTOR, 'rollout.wave-start', `rollout:${id}`, JSON.stringify({ wave: next, hosts: waveHosts.length }));
      for (const h of waveHosts) {
        const hp = await this.#hostPlan(s, plan, h.agentId);
        if (!hp.ok) await s.tx.rollouts.updateHost(id, h.agentId, { state: 'succeeded', detail: `nothing to do: ${hp.reason}` }, now);
        else await s.tx.rollouts.updateHost(id, h.agentId, { steps: hp.plan.steps }, now);
      }
    }
  }

  /** Outstanding instructions that expired, and reboots whose host did not come back in time. */
  async #judgeOutstanding(s: Step, r: RolloutRecord, hosts: readonly RolloutHostRecord[], now: Date): Promise<void> {
    for (const h of hosts) {
      if (h.state !== 'sent' || h.instructionId === null) continue;
      const o = await s.tx.outbox.get(h.instructionId);
      if (o === undefined) continue;
      const reboot = h.step === 'reboot' || h.step === 'reboot-if-needed';
      if (reboot && o.sentAt !== null) {
        const deadline = Date.parse(o.sentAt) + r.plan.gate.rebootGraceMinutes * MINUTE;
        if (now.getTime() > deadline) {
          await s.tx.rollouts.updateHost(r.id, h.agentId, { state: 'not-back', detail: `no new boot id within ${r.plan.gate.rebootGraceMinutes} min of the reboot's delivery at ${o.sentAt}` }, now);
        }
        continue;
      }
      if (o.resultAt === null && (o.expiredAt !== null || Date.parse(o.expiresAt) <= now.getTime())) {
        await s.tx.rollouts.updateHost(r.id, h.agentId, { state: 'expired', detail: `instruction expired at ${o.expiresAt}${o.sentAt === null ? ' before it was delivered' : ' with no result'}` }, now);
      }
    }
  }

  async #sendNextStep(s: Step, r: RolloutRecord, h: RolloutHostRecord, now: Date, window: Date | 'always'): Promise<void> {
    const [step, ...rest] = h.steps;
    if (step === undefined) return;
    const inv = await s.tx.reports.latestInventory(h.agentId);
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
        const hp = inv === undefined ? undefined : planForHost(r.plan, inv, this.#findingsOf(s, h.agentId));
        // A host with a result already is getting a patch in parts: the parts that succeeded are not sent again.
        const done = h.result === null ? new Set<string>() : await s.tx.outbox.patchedFor(r.id, h.agentId);
        const packages = hp?.ok === true ? hp.plan.packages.filter((p) => !done.has(p.name)).map((p) => ({ name: p.name, version: p.pin })) : [];
        if (hp?.ok !== true || packages.length === 0) {
          // Resolved since the wave started (patched by hand, or a newer inventory): skip to the next step.
          await this.#stepDone(s, { ...h, steps: rest }, null, now, done.size > 0 ? `patched in parts: ${done.size} packages` : 'nothing left to patch');
          const again = await s.tx.rollouts.host(r.id, h.agentId);
          if (again?.state === 'pending') await this.#sendNextStep(s, r, again, now, window);
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
    await s.tx.outbox.enqueue({ id: instruction.id, agentId: h.agentId, payload: signed.payload, signature: signed.signature, expiresAt, rolloutId: r.id }, now);
    await s.tx.rollouts.updateHost(
      r.id,
      h.agentId,
      { state: 'sent', step, steps: after, instructionId: instruction.id, bootId: step === 'reboot' || step === 'reboot-if-needed' ? (inv?.host.bootId ?? null) : h.bootId, detail },
      now,
    );
    s.enqueued.add(h.agentId);
  }
}
