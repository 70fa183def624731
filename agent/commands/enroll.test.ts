import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { glueTokenValue } from './enroll.ts';

describe('glueTokenValue: --token takes the next argument unless it is one of enroll’s options', () => {
  const cases: [string, string[], string[]][] = [
    ['a token starting with -', ['--token', '-abc', '--config', 'x'], ['--token=-abc', '--config', 'x']],
    ['a token starting with --', ['--token', '--abc'], ['--token=--abc']],
    ['a plain token is left to parseArgs', ['--token', 'abc'], ['--token', 'abc']],
    ['--token=-abc is already glued', ['--token=-abc'], ['--token=-abc']],
    ['the next argument is --collector: left alone', ['--token', '--collector', 'ws://c'], ['--token', '--collector', 'ws://c']],
    ['the next argument is --config=FILE: left alone', ['--token', '--config=a.json'], ['--token', '--config=a.json']],
    ['the next argument is --force: left alone', ['--token', '--force'], ['--token', '--force']],
    ['--token last: left alone', ['--collector', 'ws://c', '--token'], ['--collector', 'ws://c', '--token']],
    ['a -x after a value-less option is not glued', ['--force', '-abc'], ['--force', '-abc']],
  ];
  for (const [name, argv, want] of cases) {
    it(name, () => {
      assert.deepEqual(glueTokenValue(argv), want);
    });
  }
});
