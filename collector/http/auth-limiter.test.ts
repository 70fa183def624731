import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AUTH_FAILURE_BURST, AUTH_FAILURE_REFILL_MS, AuthFailureLimiter, sourceKey } from './auth-limiter.ts';

describe('sourceKey', () => {
  const cases: [string, string][] = [
    ['192.0.2.7', '192.0.2.7'],
    ['::ffff:192.0.2.7', '192.0.2.7'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::9', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:ffff::1', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['unknown', 'unknown'],
  ];
  for (const [address, key] of cases) {
    it(`${address} counts as ${key}`, () => {
      assert.equal(sourceKey(address), key);
    });
  }
});

describe('AuthFailureLimiter', () => {
  function limiter(opts: { maxSources?: number } = {}) {
    const clock = { ms: 1_000_000 };
    return { clock, l: new AuthFailureLimiter({ ...opts, now: () => clock.ms }) };
  }

  it(`lets a source fail ${AUTH_FAILURE_BURST} times, then asks it to wait ${AUTH_FAILURE_REFILL_MS / 1000} s`, () => {
    const { l } = limiter();
    const locked: boolean[] = [];
    for (let i = 0; i < AUTH_FAILURE_BURST; i++) {
      assert.equal(l.retryAfterMs('192.0.2.7'), 0, `attempt ${i + 1} is let through`);
      locked.push(l.fail('192.0.2.7'));
    }
    assert.deepEqual(locked, [...new Array<boolean>(AUTH_FAILURE_BURST - 1).fill(false), true], 'the last allowed failure is the one that locks');
    assert.equal(l.retryAfterMs('192.0.2.7'), AUTH_FAILURE_REFILL_MS);
    assert.equal(l.retryAfterMs('192.0.2.8'), 0, 'another source is not affected');
  });

  it('gives back one failure per refill period, up to the burst', () => {
    const { l, clock } = limiter();
    for (let i = 0; i < AUTH_FAILURE_BURST; i++) l.fail('192.0.2.7');
    clock.ms += AUTH_FAILURE_REFILL_MS / 2;
    assert.equal(l.retryAfterMs('192.0.2.7'), AUTH_FAILURE_REFILL_MS / 2);
    clock.ms += AUTH_FAILURE_REFILL_MS / 2;
    assert.equal(l.retryAfterMs('192.0.2.7'), 0);
    assert.equal(l.fail('192.0.2.7'), true, 'one more failure, and it waits again');
    clock.ms += 3600_000;
    for (let i = 0; i < AUTH_FAILURE_BURST - 1; i++) assert.equal(l.fail('192.0.2.7'), false);
    assert.equal(l.fail('192.0.2.7'), true, 'an hour later the burst is back, no more');
  });

  it('counts an IPv6 /64 as one source', () => {
    const { l } = limiter();
    for (let i = 0; i < AUTH_FAILURE_BURST; i++) l.fail(`2001:db8:1:2::${(i + 1).toString(16)}`);
    assert.ok(l.retryAfterMs('2001:db8:1:2:ffff:ffff:ffff:ffff') > 0);
    assert.equal(l.retryAfterMs('2001:db8:1:3::1'), 0);
  });

  it('keeps at most maxSources sources, forgetting the least recently failed', () => {
    const { l } = limiter({ maxSources: 100 });
    for (let i = 0; i < AUTH_FAILURE_BURST; i++) l.fail('198.51.100.1');
    for (let i = 0; i < 50_000; i++) {
      l.fail(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
      if (i === 50) assert.ok(l.retryAfterMs('198.51.100.1') > 0, 'still limited while the table has room');
    }
    assert.equal(l.size, 100);
  });
});
