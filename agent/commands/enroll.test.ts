import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from '../../shared/testing/daemon-fixtures.ts';
import { enrollCommand, glueTokenValue } from './enroll.ts';

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

describe('enroll --collector ws://NOT-LOOPBACK', () => {
  // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): nothing answers there, so a connection attempt
  // would hang until the 30 s timeout; the refusal comes before any.
  it('is refused with PW_ERR_CLEARTEXT_REFUSED (exit 1, not usage) at once, nothing written', async (t) => {
    const dir = tempDir(t);
    const started = Date.now();
    await assert.rejects(enrollCommand(['--collector', 'ws://192.0.2.10:8443', '--token', 'a'.repeat(32), '--config', join(dir, 'agent.json')], process.stdout), {
      code: 'PW_ERR_CLEARTEXT_REFUSED',
      message: /--insecure-cleartext/,
    });
    assert.ok(Date.now() - started < 5000);
    assert.deepEqual(readdirSync(dir), []);
  });

  it('http:// is ws:// for this rule', async (t) => {
    const dir = tempDir(t);
    await assert.rejects(enrollCommand(['--collector', 'http://collector.example:8443', '--token', 'a'.repeat(32), '--config', join(dir, 'agent.json')], process.stdout), { code: 'PW_ERR_CLEARTEXT_REFUSED' });
  });
});
