import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addDays, DEFAULT_POLICY, DuePolicySchema } from './policy.ts';

describe('addDays (due dates, remembered per day and policy)', () => {
  const cases: { from: string; days: number; due: string }[] = [
    { from: '2026-11-26', days: 30, due: '2026-12-26' },
    { from: '2026-12-15', days: 30, due: '2027-01-14' },
    { from: '2028-02-01', days: 30, due: '2028-03-02' },
    { from: '2027-02-01', days: 30, due: '2027-03-03' },
    { from: '2026-11-26T18:00:00.000Z', days: 7, due: '2026-12-03' },
    { from: '2026-03-29', days: 1, due: '2026-03-30' },
    { from: '2026-01-01', days: 3650, due: '2035-12-30' },
  ];
  for (const c of cases) {
    it(`${c.from} + ${String(c.days)} = ${c.due}, the same when asked again`, () => {
      assert.equal(addDays(c.from, c.days), c.due);
      assert.equal(addDays(c.from, c.days), c.due);
    });
  }
  it('a day that is not a date throws, and is not remembered as one', () => {
    assert.throws(() => addDays('not-a-day', 30), RangeError);
    assert.throws(() => addDays('not-a-day', 30), RangeError);
  });
});

describe('DuePolicySchema', () => {
  it('defaults to 30 days for every severity, clock from publication, KEV dates on', () => {
    assert.deepEqual(DEFAULT_POLICY, { days: { critical: 30, high: 30, medium: 30, low: 30, unknown: 30 }, clockStart: 'published', kevDueDates: true, staleFeedHours: 48 });
  });
  it('refuses 0 days', () => {
    assert.equal(DuePolicySchema.safeParse({ days: { critical: 0, high: 30, medium: 30, low: 30, unknown: 30 } }).success, false);
  });
});
