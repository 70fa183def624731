import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MaintenanceWindow } from './plan.ts';
import { isOpen, nextOpening, openUntil } from './window.ts';

const w = (cron: string, durationMinutes: number, timezone = 'UTC'): MaintenanceWindow => ({ cron, durationMinutes, timezone });
const BERLIN_NIGHT = w('0 1 * * *', 240, 'Europe/Berlin');

describe('isOpen', () => {
  const cases: { name: string; windows: MaintenanceWindow[]; at: string; open: boolean }[] = [
    { name: 'no windows: always open', windows: [], at: '2026-11-26T12:00:00Z', open: true },
    // 2026-11-26 is CET (UTC+1): 01:00-05:00 local = 00:00-04:00Z.
    { name: 'Berlin 01:00+240 on a CET day, at the opening', windows: [BERLIN_NIGHT], at: '2026-11-26T00:00:00Z', open: true },
    { name: 'Berlin 01:00+240 on a CET day, a second before', windows: [BERLIN_NIGHT], at: '2026-11-25T23:59:59Z', open: false },
    { name: 'Berlin 01:00+240 on a CET day, last second', windows: [BERLIN_NIGHT], at: '2026-11-26T03:59:59Z', open: true },
    { name: 'Berlin 01:00+240 on a CET day, at the close', windows: [BERLIN_NIGHT], at: '2026-11-26T04:00:00Z', open: false },
    // Spring forward 2026-03-29: opens 01:00 CET (00:00Z), 240 real minutes later is 06:00 CEST (04:00Z).
    { name: 'Berlin spring-forward day, 03:59Z (05:59 CEST)', windows: [BERLIN_NIGHT], at: '2026-03-29T03:59:00Z', open: true },
    { name: 'Berlin spring-forward day, 04:00Z (06:00 CEST)', windows: [BERLIN_NIGHT], at: '2026-03-29T04:00:00Z', open: false },
    // Fall back 2026-10-25: opens 01:00 CEST (23:00Z the day before), closes 04:00 CET (03:00Z).
    { name: 'Berlin fall-back day, 23:00Z the evening before (01:00 CEST)', windows: [BERLIN_NIGHT], at: '2026-10-24T23:00:00Z', open: true },
    { name: 'Berlin fall-back day, 02:59Z (03:59 CET)', windows: [BERLIN_NIGHT], at: '2026-10-25T02:59:00Z', open: true },
    { name: 'Berlin fall-back day, 03:00Z (04:00 CET)', windows: [BERLIN_NIGHT], at: '2026-10-25T03:00:00Z', open: false },
    // 02:30 does not exist on 2026-03-29 in Berlin: croner opens at 03:30 CEST (01:30Z).
    { name: 'Berlin 02:30 on the skipped hour, 01:29Z', windows: [w('30 2 * * *', 60, 'Europe/Berlin')], at: '2026-03-29T01:29:00Z', open: false },
    { name: 'Berlin 02:30 on the skipped hour, 01:30Z (03:30 CEST)', windows: [w('30 2 * * *', 60, 'Europe/Berlin')], at: '2026-03-29T01:30:00Z', open: true },
    // 02:30 happens twice on 2026-10-25: the window opens once, at the first (00:30Z).
    { name: 'Berlin 02:30 on the repeated hour, first 02:30 (00:30Z)', windows: [w('30 2 * * *', 30, 'Europe/Berlin')], at: '2026-10-25T00:30:00Z', open: true },
    { name: 'Berlin 02:30 on the repeated hour, second 02:30 (01:30Z)', windows: [w('30 2 * * *', 30, 'Europe/Berlin')], at: '2026-10-25T01:30:00Z', open: false },
    { name: 'UTC 22:00+240 spanning midnight, 23:59', windows: [w('0 22 * * *', 240)], at: '2026-11-26T23:59:00Z', open: true },
    { name: 'UTC 22:00+240 spanning midnight, 01:59 next day', windows: [w('0 22 * * *', 240)], at: '2026-11-27T01:59:00Z', open: true },
    { name: 'UTC 22:00+240 spanning midnight, 02:00 next day', windows: [w('0 22 * * *', 240)], at: '2026-11-27T02:00:00Z', open: false },
    { name: 'UTC 22:00+240 spanning midnight, 21:59', windows: [w('0 22 * * *', 240)], at: '2026-11-26T21:59:00Z', open: false },
    { name: 'weekdays only, a Saturday night', windows: [w('0 22 * * 1-5', 240)], at: '2026-11-28T23:00:00Z', open: false },
    { name: 'two windows, inside the second', windows: [w('0 22 * * *', 60), w('0 12 * * *', 60)], at: '2026-11-26T12:30:00Z', open: true },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.equal(isOpen(c.windows, new Date(c.at)), c.open);
    });
  }
});

describe('openUntil', () => {
  const cases: { name: string; windows: MaintenanceWindow[]; at: string; until: string | null }[] = [
    { name: 'no windows', windows: [], at: '2026-11-26T12:00:00Z', until: 'always' },
    { name: 'midnight-spanning window closes the next day', windows: [w('0 22 * * *', 240)], at: '2026-11-26T23:00:00Z', until: '2026-11-27T02:00:00.000Z' },
    { name: 'Berlin spring-forward day closes at 06:00 CEST', windows: [BERLIN_NIGHT], at: '2026-03-29T01:00:00Z', until: '2026-03-29T04:00:00.000Z' },
    { name: 'overlapping windows: the later close', windows: [w('0 22 * * *', 60), w('30 22 * * *', 60)], at: '2026-11-26T22:45:00Z', until: '2026-11-26T23:30:00.000Z' },
    { name: 'closed', windows: [w('0 22 * * *', 60)], at: '2026-11-26T12:00:00Z', until: null },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = openUntil(c.windows, new Date(c.at));
      assert.equal(got instanceof Date ? got.toISOString() : got, c.until);
    });
  }
});

describe('nextOpening', () => {
  const cases: { name: string; windows: MaintenanceWindow[]; after: string; next: string | null }[] = [
    { name: 'open now: now', windows: [w('0 22 * * *', 240)], after: '2026-11-26T23:00:00Z', next: '2026-11-26T23:00:00.000Z' },
    { name: 'closed: the next start', windows: [w('0 22 * * *', 240)], after: '2026-11-26T12:00:00Z', next: '2026-11-26T22:00:00.000Z' },
    { name: 'Berlin 01:00 after the spring change', windows: [BERLIN_NIGHT], after: '2026-03-29T12:00:00Z', next: '2026-03-29T23:00:00.000Z' },
    { name: 'Berlin 01:00 before the autumn change', windows: [BERLIN_NIGHT], after: '2026-10-24T12:00:00Z', next: '2026-10-24T23:00:00.000Z' },
    { name: 'weekdays only, from Saturday: Monday 22:00', windows: [w('0 22 * * 1-5', 240)], after: '2026-11-28T12:00:00Z', next: '2026-11-30T22:00:00.000Z' },
    { name: 'the earlier of two windows', windows: [w('0 22 * * *', 60), w('0 13 * * *', 60)], after: '2026-11-26T12:00:00Z', next: '2026-11-26T13:00:00.000Z' },
    { name: 'no windows: now', windows: [], after: '2026-11-26T12:00:00Z', next: '2026-11-26T12:00:00.000Z' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.equal(nextOpening(c.windows, new Date(c.after))?.toISOString() ?? null, c.next);
    });
  }
});
