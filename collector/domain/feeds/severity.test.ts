import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { maxSeverity, severityFromScore, severityFromWord } from './severity.ts';
import type { Severity } from './types.ts';

describe('severityFromWord', () => {
  // Words as the real feeds write them: AlmaLinux summaries, Ubuntu priorities, Debian urgencies.
  const CASES: [string, Severity | null][] = [
    ['Critical', 'critical'],
    ['Important', 'high'],
    ['Moderate', 'medium'],
    ['Low', 'low'],
    ['None', null],
    ['medium', 'medium'],
    ['negligible', 'low'],
    ['untriaged', null],
    ['high**', 'high'],
    ['low*', 'low'],
    ['unimportant', 'low'],
    ['not yet assigned', null],
    ['end-of-life', null],
    ['HIGH', 'high'],
    ['MODERATE', 'medium'],
  ];
  for (const [word, expected] of CASES) {
    it(`${JSON.stringify(word)} -> ${String(expected)}`, () => {
      assert.equal(severityFromWord(word), expected);
    });
  }
});

describe('severityFromScore', () => {
  const CASES: [number, Severity][] = [
    [10, 'critical'],
    [9, 'critical'],
    [8.9, 'high'],
    [7, 'high'],
    [6.9, 'medium'],
    [4, 'medium'],
    [3.9, 'low'],
    [0, 'low'],
  ];
  for (const [score, expected] of CASES) {
    it(`${score} -> ${expected}`, () => {
      assert.equal(severityFromScore(score), expected);
    });
  }
});

describe('maxSeverity', () => {
  const CASES: [Severity, Severity, Severity][] = [
    ['unknown', 'low', 'low'],
    ['high', 'medium', 'high'],
    ['critical', 'unknown', 'critical'],
    ['unknown', 'unknown', 'unknown'],
  ];
  for (const [a, b, expected] of CASES) {
    it(`${a}, ${b} -> ${expected}`, () => {
      assert.equal(maxSeverity(a, b), expected);
    });
  }
});
