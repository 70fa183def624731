import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CollectorRotation } from './collectors.ts';

const URLS = ['wss://c1:8443/v1/agent', 'wss://c2:8443/v1/agent', 'wss://c3:8443/v1/agent'];

describe('CollectorRotation', () => {
  test('an agent starts at its own place in the list, and a fleet spreads over every collector', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const url = new CollectorRotation(URLS, `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`).current;
      counts.set(url, (counts.get(url) ?? 0) + 1);
    }
    assert.deepEqual([...counts.keys()].sort(), URLS);
    for (const [url, n] of counts) assert.ok(n > 800 && n < 1200, `${url}: ${n} of 3000`);
    // The same agent always starts at the same place.
    const id = '7d6f3c1e-8a1b-4c2d-9e0f-112233445566';
    assert.equal(new CollectorRotation(URLS, id).current, new CollectorRotation(URLS, id).current);
  });

  test('the agents of a collector that fails spread evenly over the others', () => {
    const next = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const r = new CollectorRotation(URLS, `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
      if (r.current !== URLS[1]) continue;
      r.failed();
      next.set(r.current, (next.get(r.current) ?? 0) + 1);
    }
    const moved = [...next.values()].reduce((a, b) => a + b, 0);
    assert.deepEqual([...next.keys()].sort(), [URLS[0], URLS[2]]);
    for (const [url, n] of next) assert.ok(n > moved * 0.4 && n < moved * 0.6, `${url}: ${n} of ${moved}`);
  });

  // Each step: what happened, then [whether every collector has failed since the last connection, the place of the current one in the agent's order].
  const cases: { name: string; urls: string[]; steps: ('failed' | 'connected')[]; want: [boolean | null, number][] }[] = [
    {
      name: 'moves on after each failure, and says so once all have failed',
      urls: URLS,
      steps: ['failed', 'failed', 'failed', 'failed'],
      want: [[false, 1], [false, 2], [true, 0], [false, 1]],
    },
    {
      name: 'a connection starts the count again, and it stays where it connected',
      urls: URLS,
      steps: ['failed', 'connected', 'failed', 'failed', 'failed'],
      want: [[false, 1], [null, 1], [false, 2], [false, 0], [true, 1]],
    },
    { name: 'one collector: every failure is a full round (backoff as before)', urls: URLS.slice(0, 1), steps: ['failed', 'failed'], want: [[true, 0], [true, 0]] },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const r = new CollectorRotation(c.urls, 'agent-1');
      assert.deepEqual([...r.order].sort(), [...c.urls].sort(), 'every collector is in the order once');
      assert.equal(r.current, r.order[0]);
      c.steps.forEach((step, i) => {
        const all = step === 'failed' ? r.failed() : (r.connected(), null);
        assert.deepEqual([all, r.order.indexOf(r.current)], c.want[i], `step ${i + 1}: ${step}`);
      });
    });
  }

  test('an empty list is refused', () => {
    assert.throws(() => new CollectorRotation([], 'a'), RangeError);
  });
});
