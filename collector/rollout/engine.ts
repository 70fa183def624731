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
 */
import { randomUUID } from 'node:crypto';
import { RolloutApprovalError, RolloutNotFoundError, RolloutStateError } from '../../shared/errors.ts';
import { INSTRUCTION_SCHEMA, type Instruction, type InstructionResult, type SignedInstruction } from '../../shared/instructions.ts';
import type { Finding, Inventory } from '../../shared/protocol.ts';
import type { Db } from '../store/db.ts';
import type { FleetStore, HostSummary } from '../store/fleet.ts';
import { planForHost, type HostPlan } from './host-plan.ts';
import { parsePlan, type RolloutPlan } from './plan.ts';
import { HOST_DONE, HOST_FAILED, type InstructionOutbox, type RolloutHostRecord, type RolloutRecord, RolloutStore, type RolloutState } from './store.ts';
import { splitWaves, waveSizes } from './waves.ts';
import { openUntil } from './window.ts';

const MINUTE = 60_000;
export const SYSTEM_ACTOR = 'system';

export interface RolloutEngineOptions {
  db: Db;
  fleet: FleetStore;
  /** The host's current findings (the lead passes one backed by the Correlator). */
  findings: (agentId: string) => Finding[];
  /** signInstruction with the collector's key. */
  signer: (instruction: Instruction) => SignedInstruction;
  outbox: InstructionOutbox;
  audit: (actor: string, action: string, target: string | null, detail: string | null) => void;
  now?: () => Date;
  /** Called after the commit, once per agent that has new instructions (push them if it is connected). */
  onEnqueued?: (agentId: string) => void;
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
  readonly #db: Db;
  readonly #fleet: FleetStore;
  readonly #findings: (agentId: string) => Finding[];
  readonly #signer: (instruction: Instruction) => SignedInstruction;
  readonly #outbox: InstructionOutbox;
  readonly #audit: RolloutEngineOptions['audit'];
  readonly #now: () => Date;
  readonly #onEnqueued: ((agentId: string) => void) | undefined;
  readonly store: RolloutStore;
  /** Agents with new outbox entries in the current call, told after its commit. */
  #enqueued = new Set<string>();

  constructor(opts: RolloutEngineOptions) {
    this.#db = opts.db;
    this.#fleet = opts.fleet;
    this.#findings = opts.findings;
    this.#signer = opts.signer;
    this.#outbox = opts.outbox;
    this.#audit = opts.audit;
    this.#now = opts.now ?? (() => new Date());
    this.#onEnqueued = opts.onEnqueued;
    this.store = new RolloutStore(opts.db, parsePlan);
  }

  /** Validates the plan (RolloutPlanError, PW_ERR_ROLLOUT_PLAN) and stores it as a draft. */
  create(planInput: unknown, actor: string): string {
    const plan = parsePlan(planInput);
    const id = randomUUID();
    const now = this.#now();
    this.#db.transaction(() => {
      this.store.insert(id, plan, actor, now);
      this.#audit(actor, 'rollout.create', `rollout:${id}`, JSON.stringify({ name: plan.name, action: plan.action.kind }));
    })();
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
      const host = this.#fleet.host(agentId);
      const hp = this.#hostPlan(plan, agentId);
      if (host === undefined || !hp.ok) {
        skipped.push({ agentId, hostname: host?.hostname ?? null, reason: hp.ok ? 'no inventory stored' : hp.reason });
        continue;
      }
      const p = hp.plan;
      hosts.push({
        agentId,
        hostname: host.hostname,
        wave,
        action: p.steps.join('+'),
        packages: p.packages.map((x) => ({ name: x.name, from: x.from, to: x.to })),
        findingsResolved: p.findingsResolved,
        needsReboot: p.needsReboot,
        livepatchInsteadOfReboot: p.livepatchInsteadOfReboot,
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
      this.store.update(id, { submitted_by: actor }, now);
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
      this.store.update(id, { approved_by: actor, approved_at: now.toISOString() }, now);
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
      this.store.update(id, { finished_at: now.toISOString() }, now);
      this.#withdraw(r, now, 'rollout cancelled');
      this.#outbox.stopResends(r.id, now);
    });
  }

  /** Expires overdue instructions and advances every running rollout. Call every few seconds, and once at start. */
  tick(now = this.#now()): void {
    this.#run(() => {
      this.#outbox.expire(now);
      for (const id of this.store.idsInState('running')) this.#advance(id, now);
    });
  }

  /**
   * An agent's result: recorded in the outbox (idempotent) and applied to its rollout host.
   * false: unknown instruction id, or another agent's (the gateway should log it).
   */
  onResult(agentId: string, result: InstructionResult): boolean {
    return this.#run(() => {
      const now = this.#now();
      if (!this.#outbox.recordResult(agentId, result, now) || result.instructionId === null) return false;
      const h = this.store.hostByInstruction(result.instructionId, agentId);
      if (h?.state !== 'sent') return true;
      if (result.status !== 'succeeded') {
        this.store.updateHost(h.rolloutId, agentId, { state: result.status, result, detail: `${result.code ?? result.status}: ${result.message.slice(0, 500)}` }, now);
      } else if ((h.step === 'reboot' || h.step === 'reboot-if-needed') && result.rebootRequired !== false) {
        // Rebooting: done when the agent comes back with another boot id (onInventory).
        this.store.updateHost(h.rolloutId, agentId, { result, detail: 'rebooting' }, now);
      } else {
        this.#stepDone(h, result, now);
      }
      this.#advance(h.rolloutId, now);
      return true;
    });
  }

  /** A stored inventory: a boot id other than the one before a reboot means the host came back. */
  onInventory(agentId: string, inventory: Inventory): void {
    const bootId = inventory.host.bootId;
    if (bootId === null) return;
    // Nearly every stored inventory comes from a host with no reboot outstanding: a read
    // says so, without a write transaction (and its commit) per report.
    if (!this.store.awaitingReboot(agentId).some((h) => h.bootId !== null && h.bootId !== bootId)) return;
    this.#run(() => {
      const now = this.#now();
      for (const h of this.store.awaitingReboot(agentId)) {
        if (h.bootId === null || h.bootId === bootId) continue;
        const result = h.instructionId === null ? null : (this.#outbox.get(h.instructionId)?.result ?? null);
        this.#stepDone({ ...h }, result, now, `back with boot id ${bootId}`);
        this.#advance(h.rolloutId, now);
      }
    });
  }

  // -------------------------------------------------------------------------------------

  /** One transaction per call; onEnqueued only after the commit. */
  #run<T>(fn: () => T): T {
    this.#enqueued = new Set();
    const out = this.#db.transaction(fn).immediate();
    const agents = this.#enqueued;
    this.#enqueued = new Set();
    for (const a of agents) this.#onEnqueued?.(a);
    return out;
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
    this.store.update(r.id, { state }, now);
    this.#audit(actor, action, `rollout:${r.id}`, JSON.stringify({ from: r.state, to: state, ...(detail === null ? {} : { reason: detail }) }));
    r.state = state;
  }

  #start(r: RolloutRecord, actor: string, now: Date): RolloutState {
    const skipped: Preview['skipped'] = [];
    // Hosts the action cannot apply to are left out here, so they never count against the gate.
    const waves = splitWaves([...this.#select(r.plan, skipped).keys()], r.plan.waves);
    this.store.insertHosts(r.id, waves, now);
    const waveCount = waveSizes(waves.size, r.plan.waves).length;
    this.store.update(r.id, { started_at: now.toISOString(), wave_count: waveCount }, now);
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
        const h = this.#fleet.host(id);
        if (h === undefined) skipped.push({ agentId: id, hostname: this.#fleet.agentById(id)?.hostname ?? null, reason: 'no inventory stored' });
        else candidates.push(h);
      }
    } else {
      let cursor: string | undefined;
      do {
        const page = this.#fleet.listHosts({ limit: 1000, ...(cursor === undefined ? {} : { cursor }) });
        candidates.push(...page.hosts);
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
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
        const open = this.#findings(h.agentId).some((f) => (f.status === 'open' || f.status === 'unfixed' || f.status === 'fixed-pending-reboot') && (ids.has(f.advisory) || f.cves.some((c) => ids.has(c))));
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
    const inv = this.#fleet.latestInventory(agentId);
    if (inv === undefined) return { ok: false, reason: 'no inventory stored' };
    return planForHost(plan, inv, this.#findings(agentId));
  }

  #withdraw(r: RolloutRecord, now: Date, why: string): void {
    for (const w of this.#outbox.withdraw(r.id, now)) {
      const h = this.store.hostByInstruction(w.id, w.agentId);
      if (h?.state !== 'sent' || h.step === null) continue;
      this.store.updateHost(r.id, w.agentId, { state: 'pending', steps: [h.step, ...h.steps], step: null, instructionId: null, detail: `withdrawn before delivery: ${why}` }, now);
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
        for (const h of hosts) if (h.state === 'pending' && h.wave <= r.currentWave && h.steps.length > 0) this.#sendNextStep(r, h, now, window);
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
          this.store.update(id, { halted_reason: reason }, now);
          this.#setState(r, 'halted', SYSTEM_ACTOR, 'rollout.halt', now, reason);
          this.#withdraw(r, now, 'rollout halted');
          this.#outbox.stopResends(r.id, now);
          return;
        }
        if (r.currentWave >= r.waveCount - 1) {
          this.store.update(id, { finished_at: now.toISOString() }, now);
          this.#setState(r, 'completed', SYSTEM_ACTOR, 'rollout.complete', now, `${done.length - failed} of ${done.length} hosts succeeded`);
          return;
        }
        if (r.waveDoneAt === null) {
          this.store.update(id, { wave_done_at: now.toISOString() }, now);
          this.#audit(SYSTEM_ACTOR, 'rollout.wave-done', `rollout:${id}`, JSON.stringify({ wave: r.currentWave, hosts: done.length, failed }));
          r.waveDoneAt = now.toISOString();
        }
        if (now.getTime() < Date.parse(r.waveDoneAt) + plan.waitMinutes * MINUTE) return;
      } else if (r.waveCount === 0) {
        this.store.update(id, { finished_at: now.toISOString() }, now);
        this.#setState(r, 'completed', SYSTEM_ACTOR, 'rollout.complete', now, 'no host to act on');
        return;
      }
      if (window === null) return;
      const next = r.currentWave + 1;
      this.store.update(id, { current_wave: next, wave_done_at: null }, now);
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
    const inv = this.#fleet.latestInventory(h.agentId);
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
    switch (step) {
      case 'patch': {
        const hp = inv === undefined ? undefined : planForHost(r.plan, inv, this.#findings(h.agentId));
        if (hp?.ok !== true || hp.plan.packages.length === 0) {
          // Resolved since the wave started (patched by hand, or a newer inventory): skip to the next step.
          this.#stepDone({ ...h, steps: rest }, null, now, 'nothing left to patch');
          const again = this.store.host(r.id, h.agentId);
          if (again?.state === 'pending') this.#sendNextStep(r, again, now, window);
          return;
        }
        instruction = { ...base, kind: 'patch', packages: hp.plan.packages.map((p) => ({ name: p.name, version: p.pin })), advisories: hp.plan.advisories };
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
    const signed = this.#signer(instruction);
    this.#outbox.enqueue({ id: instruction.id, agentId: h.agentId, payload: signed.payload, signature: signed.signature, expiresAt, rolloutId: r.id }, now);
    this.store.updateHost(
      r.id,
      h.agentId,
      { state: 'sent', step, steps: rest, instructionId: instruction.id, bootId: step === 'reboot' || step === 'reboot-if-needed' ? (inv?.host.bootId ?? null) : h.bootId, detail: null },
      now,
    );
    this.#enqueued.add(h.agentId);
  }
}
