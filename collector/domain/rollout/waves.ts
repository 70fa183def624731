/**
 * Splits a rollout's hosts into waves. The order is by sha256 of the agent id, not by
 * name or enrollment: it is stable across runs and collectors (a re-planned rollout picks
 * the same canaries), and it does not put every host of one rack or naming scheme into
 * the same wave the way a sort by host name would.
 */
import { createHash } from 'node:crypto';
import type { RolloutPlan } from './plan.ts';

export function hostOrder(agentIds: readonly string[]): string[] {
  const keyed = [...new Set(agentIds)].map((id) => ({ id, key: createHash('sha256').update(id, 'utf8').digest('hex') }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return keyed.map((k) => k.id);
}

/** Wave sizes for `total` hosts; they sum to total, none is empty. */
export function waveSizes(total: number, waves: RolloutPlan['waves']): number[] {
  if (total <= 0) return [];
  const canary = 'hosts' in waves.canary ? waves.canary.hosts : Math.ceil((total * waves.canary.percent) / 100);
  const sizes: number[] = [];
  let left = total;
  let size = Math.max(1, Math.min(canary, left));
  for (let i = 0; left > 0; i++) {
    size = Math.max(1, Math.min(size, left));
    sizes.push(size);
    left -= size;
    if ('factor' in waves.growth) size = Math.ceil(size * waves.growth.factor);
    else size = waves.growth.sizes[Math.min(i, waves.growth.sizes.length - 1)] ?? size;
  }
  return sizes;
}

/** agent id -> wave number (0 = canary). */
export function splitWaves(agentIds: readonly string[], waves: RolloutPlan['waves']): Map<string, number> {
  const ordered = hostOrder(agentIds);
  const sizes = waveSizes(ordered.length, waves);
  const out = new Map<string, number>();
  let i = 0;
  sizes.forEach((n, wave) => {
    for (const id of ordered.slice(i, i + n)) out.set(id, wave);
    i += n;
  });
  return out;
}
