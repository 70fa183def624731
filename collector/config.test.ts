import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from './config.ts';

describe('config replicas.leaseSeconds', () => {
  test('defaults to 15 s when the config says nothing', () => {
    assert.equal(parseConfig({}).replicas.leaseSeconds, 15);
    assert.equal(parseConfig({ replicas: {} }).replicas.leaseSeconds, 15);
  });
  test('takes a whole number of seconds from 1 to 300', () => {
    assert.equal(parseConfig({ replicas: { leaseSeconds: 1 } }).replicas.leaseSeconds, 1);
    assert.equal(parseConfig({ replicas: { leaseSeconds: 300 } }).replicas.leaseSeconds, 300);
  });
  for (const [what, value] of [
    ['0', 0],
    ['301', 301],
    ['2.5', 2.5],
    ['a string', '15'],
  ] as const) {
    test(`refuses ${what} at start-up with the field named (PW_ERR_USAGE)`, () => {
      assert.throws(() => parseConfig({ replicas: { leaseSeconds: value } }, 'collector.json'), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'PW_ERR_USAGE');
        assert.match(err.message, /^collector\.json: replicas\.leaseSeconds: /);
        return true;
      });
    });
  }
  test('refuses an unknown key beside it', () => {
    assert.throws(() => parseConfig({ replicas: { leaseSecs: 3 } }), /replicas/);
  });
});
