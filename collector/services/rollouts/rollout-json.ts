/**
 * The rollout documents: one rollout in a list, and one with its plan and hosts. The API,
 * the dashboard and `rollout list|show --json` show the same ones.
 */
import type { InstructionResult } from '../../../shared/instructions.ts';
import type { RolloutPlan } from '../../domain/rollout/plan.ts';
import type { AsyncStore } from '../../store/store.ts';
import { HOST_STATES, type HostState, type RolloutRecord } from '../../store/rollouts.ts';
import type { RolloutEngine } from './engine.ts';

/** One rollout in a list: what it does, where it stands, how its hosts are doing (the record without its plan and wave bookkeeping). */
export interface RolloutJson extends Omit<RolloutRecord, 'plan' | 'currentWave' | 'waveCount' | 'waveDoneAt'> {
  action: string;
  dryRun: boolean;
  requireApproval: boolean;
  fourEyes: boolean;
  /** `current`: the waves sent so far (0 before the first); `total`: 0 until the rollout starts and its hosts are chosen. */
  waves: { current: number; total: number };
  hostStates: Record<HostState, number> & { total: number };
}

export interface RolloutHostJson {
  agentId: string;
  hostname: string | null;
  wave: number;
  state: HostState;
  step: string | null;
  stepsLeft: string[];
  instructionId: string | null;
  /** Why the host failed, was refused or expired: the agent's result code, or the collector's own (PW_ERR_INSTRUCTION_BUILD). */
  code: string | null;
  detail: string | null;
  updatedAt: string;
  result: InstructionResult | null;
}

export interface RolloutDetailJson extends RolloutJson {
  plan: RolloutPlan;
  hosts: RolloutHostJson[];
}

function emptyHostStates(): RolloutJson['hostStates'] {
  const out = { total: 0 } as RolloutJson['hostStates'];
  for (const st of HOST_STATES) out[st] = 0;
  return out;
}

function rolloutJson(r: RolloutRecord, hostStates: RolloutJson['hostStates']): RolloutJson {
  const { plan, currentWave, waveCount, waveDoneAt: _doneAt, ...record } = r;
  return {
    ...record,
    action: plan.action.kind,
    dryRun: plan.dryRun,
    requireApproval: plan.requireApproval,
    fourEyes: plan.fourEyes,
    waves: { current: currentWave + 1, total: waveCount },
    hostStates,
  };
}

/** Every rollout, newest first, with its hosts counted by state in one query. */
export async function listRollouts(engine: RolloutEngine): Promise<RolloutJson[]> {
  const counts = new Map<string, RolloutJson['hostStates']>();
  for (const row of await engine.store.hostStateCounts()) {
    let c = counts.get(row.rolloutId);
    if (c === undefined) counts.set(row.rolloutId, (c = emptyHostStates()));
    c[row.state] = row.n;
    c.total += row.n;
  }
  return (await engine.list()).map((r) => rolloutJson(r, counts.get(r.id) ?? emptyHostStates()));
}

/** One rollout with its plan and each host's state (RolloutNotFoundError for an unknown id). */
export async function rolloutDetail(store: Pick<AsyncStore, 'agents'>, engine: RolloutEngine, id: string): Promise<RolloutDetailJson> {
  const v = await engine.get(id);
  const states = emptyHostStates();
  const names = new Map<string, string | null>();
  for (const h of v.hosts) if (!names.has(h.agentId)) names.set(h.agentId, (await store.agents.get(h.agentId))?.hostname ?? null);
  const hosts = v.hosts.map((h): RolloutHostJson => {
    states[h.state]++;
    states.total++;
    return {
      agentId: h.agentId,
      hostname: names.get(h.agentId) ?? null,
      wave: h.wave,
      state: h.state,
      step: h.step,
      stepsLeft: h.steps,
      instructionId: h.instructionId,
      code: h.code ?? (h.state === 'succeeded' ? null : (h.result?.code ?? null)),
      detail: h.detail,
      updatedAt: h.updatedAt,
      result: h.result,
    };
  });
  return { ...rolloutJson(v, states), plan: v.plan, hosts };
}
