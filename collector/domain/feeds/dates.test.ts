import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeDate, normalizeDateTime } from './dates.ts';

describe('normalizeDateTime', () => {
  const CASES: [string, string | null][] = [
    // Forms seen in the real feeds: AlmaLinux OSV, osv.dev, KEV dateReleased.
    ['2022-11-15T00:00:00Z', '2022-11-15T00:00:00.000Z'],
    ['2026-05-16T13:09:42Z', '2026-05-16T13:09:42.000Z'],
    ['2025-08-25T17:04:19.9796Z', '2025-08-25T17:04:19.979Z'],
    ['2024-01-02T03:04:05+02:00', '2024-01-02T01:04:05.000Z'],
    ['2024-01-02T23:30:00-01:00', '2024-01-03T00:30:00.000Z'],
    ['2024-02-29', '2024-02-29T00:00:00.000Z'],
    ['2023-02-29T00:00:00Z', null],
    ['2023-02-30', null],
    ['2023-13-01T00:00:00Z', null],
    ['2023-01-01T24:00:00Z', null],
    ['2023-01-01T00:00:00', null],
    ['yesterday', null],
    ['', null],
    ['1600-01-01T00:00:00Z', null],
    ['2023-01-01T00:00:00Z trailing', null],
  ];
  for (const [input, expected] of CASES) {
    it(`${JSON.stringify(input)} -> ${String(expected)}`, () => {
      assert.equal(normalizeDateTime(input), expected);
    });
  }
});

describe('normalizeDate', () => {
  const CASES: [string, string | null][] = [
    ['2025-08-25', '2025-08-25'],
    ['2024-02-29', '2024-02-29'],
    ['2025-02-29', null],
    ['2025-8-25', null],
    ['2025-08-25T00:00:00Z', null],
  ];
  for (const [input, expected] of CASES) {
    it(`${JSON.stringify(input)} -> ${String(expected)}`, () => {
      assert.equal(normalizeDate(input), expected);
    });
  }
});
