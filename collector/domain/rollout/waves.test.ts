import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { parsePlan } from './plan.ts';
import { hostOrder, splitWaves, waveSizes } from './waves.ts';

const wavesOf = (waves: unknown) =>
  parsePlan({ name: 'w', target: { tags: ['x'] }, action: { kind: 'refresh' }, waves }).waves;

describe('waveSizes', () => {
  const cases: { name: string; total: number; waves: unknown; want: number[] }[] = [
    { name: '10 hosts, canary 1, factor 2', total: 10, waves: { canary: { hosts: 1 }, growth: { factor: 2 } }, want: [1, 2, 4, 3] },
    { name: '100 hosts, canary 5%, factor 3', total: 100, waves: { canary: { percent: 5 }, growth: { factor: 3 } }, want: [5, 15, 45, 35] },
    { name: '3 hosts, canary 1%, rounds up to 1', total: 3, waves: { canary: { percent: 1 } }, want: [1, 2] },
    { name: '10 hosts, canary 2, factor 1 (equal waves)', total: 10, waves: { canary: { hosts: 2 }, growth: { factor: 1 } }, want: [2, 2, 2, 2, 2] },
    { name: '10 hosts, canary 1, sizes 2,3 (last repeats)', total: 10, waves: { canary: { hosts: 1 }, growth: { sizes: [2, 3] } }, want: [1, 2, 3, 3, 1] },
    { name: '2 hosts, canary 5 (more than the fleet)', total: 2, waves: { canary: { hosts: 5 } }, want: [2] },
    { name: '1 host', total: 1, waves: { canary: { percent: 50 } }, want: [1] },
    { name: '0 hosts', total: 0, waves: { canary: { hosts: 1 } }, want: [] },
    { name: '7 hosts, canary 1, factor 1.5', total: 7, waves: { canary: { hosts: 1 }, growth: { factor: 1.5 } }, want: [1, 2, 3, 1] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = waveSizes(c.total, wavesOf(c.waves));
      assert.deepEqual(got, c.want);
      assert.equal(got.reduce((a, b) => a + b, 0), c.total);
    });
  }
});

describe('splitWaves', () => {
  const ids = Array.from({ length: 20 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
  const waves = wavesOf({ canary: { hosts: 2 }, growth: { factor: 2 } });
  it('orders by sha256 of the agent id, whatever the input order', () => {
    const a = splitWaves(ids, waves);
    const b = splitWaves([...ids].reverse(), waves);
    assert.deepEqual([...a].sort(), [...b].sort());
    const bySha = [...ids].sort((x, y) => {
      const hx = createHash('sha256').update(x).digest('hex');
      const hy = createHash('sha256').update(y).digest('hex');
      return hx < hy ? -1 : 1;
    });
    assert.deepEqual(hostOrder(ids), bySha);
    assert.deepEqual(bySha.slice(0, 2).map((id) => a.get(id)), [0, 0]);
  });
  it('every host in exactly one wave, sizes as waveSizes says', () => {
    const a = splitWaves(ids, waves);
    assert.equal(a.size, 20);
    const counts = [0, 0, 0, 0];
    for (const w of a.values()) counts[w] = (counts[w] ?? 0) + 1;
    assert.deepEqual(counts, waveSizes(20, waves));
  });
  it('duplicate ids count once', () => {
    assert.equal(splitWaves([...ids, ...ids], waves).size, 20);
  });
});
