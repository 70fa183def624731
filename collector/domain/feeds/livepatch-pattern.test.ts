import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileModulePattern } from './livepatch-pattern.ts';

const REAL = 'lkp_Ubuntu_6_8_0[_|\\d]+_linux_(\\d+)';

describe('live-patch module patterns: a narrow grammar, matched without backtracking', () => {
  const levels: [string, string, number | null][] = [
    [REAL, 'lkp_Ubuntu_6_8_0_31_31_linux_105', 105],
    [REAL, 'lkp_Ubuntu_6_8_0_31_31_linux_0', 0],
    [REAL, 'lkp_Ubuntu_6_8_0_|_linux_7', 7],
    [REAL, 'lkp_Ubuntu_6_8_0_linux_105', null],
    [REAL, 'lkp_Ubuntu_6_8_0_31_31_aws_105', null],
    [REAL, 'xlkp_Ubuntu_6_8_0_31_31_linux_105', null],
    [REAL, 'lkp_Ubuntu_6_8_0_31_31_linux_105x', null],
    [REAL, 'lkp_Ubuntu_6_8_0_31_31_linux_', null],
    [REAL, 'lkp_Ubuntu_6_8_0_31_31_linux_1234567890', null],
    [REAL, '', null],
    ['a+b_(\\d+)', 'aaab_3', 3],
    ['a+b_(\\d+)', 'b_3', null],
  ];
  for (const [pattern, name, level] of levels) {
    it(`${pattern} on ${JSON.stringify(name)}: ${level}`, () => {
      const p = compileModulePattern(pattern);
      assert.ok(p !== null);
      assert.equal(p.level(name), level);
    });
  }

  const refused = [
    '(a+)+$',
    'lkp_((a|a)+)+_(\\d+)',
    'lkp_.*_(\\d+)',
    'lkp_[^_]+_(\\d+)',
    'lkp_[a-z]+_(\\d+)',
    'lkp_a{1,99}_(\\d+)',
    'lkp_a*_(\\d+)',
    'lkp_linux',
    'lkp_linux(\\d+)(\\d+)',
    'lkp_linux1(\\d+)',
    'lkp_[_|\\d]+(\\d+)',
    'lkp_(?:x)_(\\d+)',
    'lkp_\\w+_(\\d+)',
    '(\\d+)',
    'lkp_[]_(\\d+)',
    'lkp_++_(\\d+)',
    `${'a'.repeat(300)}_(\\d+)`,
  ];
  for (const p of refused) {
    it(`refuses ${JSON.stringify(p.slice(0, 40))}`, () => {
      assert.equal(compileModulePattern(p), null);
    });
  }

  it('a name built to make a backtracking engine explode is matched in linear time', () => {
    const p = compileModulePattern('lkp_[_|\\d]+[_|\\d]+[_|\\d]+[_|\\d]+[_|\\d]+x_(\\d+)');
    assert.ok(p !== null);
    const name = `lkp_${'_1'.repeat(50_000)}_7`;
    const start = performance.now();
    assert.equal(p.level(name), null);
    assert.ok(performance.now() - start < 500, `${(performance.now() - start).toFixed(0)} ms`);
  });
});
