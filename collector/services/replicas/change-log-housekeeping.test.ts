import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChangeLogHousekeeping } from './change-log-housekeeping.ts';

test('clears only what was read a retention period ago, never the rows read since', async () => {
  const cleared: number[] = [];
  const h = new ChangeLogHousekeeping((seq) => {
    cleared.push(seq);
    return Promise.resolve();
  }, 60_000);
  // [time, seq read by then, cleared up to afterwards]
  const steps: [number, number, number][] = [
    [0, 10, 0],
    [15_000, 12, 0],
    [59_999, 20, 0],
    [60_000, 25, 10],
    [75_000, 25, 12],
    [200_000, 40, 25],
    [200_001, 41, 25],
  ];
  for (const [at, seq, want] of steps) assert.equal(await h.tick(seq, at), want, `at ${at}`);
  assert.deepEqual(cleared, [10, 12, 25]);
  // After another replica held the duty, the old samples are not trusted.
  h.reset();
  assert.equal(await h.tick(50, 300_000), 25);
  assert.equal(await h.tick(51, 359_999), 25);
  assert.equal(await h.tick(52, 360_000), 50);
});
