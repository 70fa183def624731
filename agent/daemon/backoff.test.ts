import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Backoff, DEFAULT_BACKOFF } from './backoff.ts';
import { seededRandom as seeded } from '../../shared/testing/random.ts';

describe('Backoff windows', () => {
  const cases: [number, number, number, number[]][] = [
    [1000, 300_000, 12, [1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000, 300000, 300000]],
    [500, 3000, 6, [500, 1000, 2000, 3000, 3000, 3000]],
    [100, 100, 3, [100, 100, 100]],
  ];
  for (const [base, cap, n, want] of cases) {
    it(`base ${base} cap ${cap}: windows ${want.join(', ')}`, () => {
      const b = new Backoff({ baseMs: base, capMs: cap, random: () => 0.5 });
      const windows: number[] = [];
      for (let i = 0; i < n; i++) {
        windows.push(b.window());
        assert.equal(b.next(), Math.floor(0.5 * (windows.at(-1) ?? 0)));
      }
      assert.deepEqual(windows, want);
    });
  }

  it('random() at its extremes gives 0 and just under the window', () => {
    assert.equal(new Backoff({ random: () => 0 }).next(), 0);
    assert.equal(new Backoff({ random: () => 0.999999 }).next(), DEFAULT_BACKOFF.baseMs - 1);
  });

  it('a thousand failures later the window is still the cap (no overflow to Infinity or NaN)', () => {
    const b = new Backoff({ random: () => 0.999 });
    let last = 0;
    for (let i = 0; i < 1000; i++) last = b.next();
    assert.equal(b.window(), DEFAULT_BACKOFF.capMs);
    assert.ok(Number.isFinite(last) && last < DEFAULT_BACKOFF.capMs);
  });

  const bad: [string, ConstructorParameters<typeof Backoff>[0]][] = [
    ['baseMs 0', { baseMs: 0 }],
    ['capMs under baseMs', { baseMs: 2000, capMs: 1000 }],
    ['negative stableMs', { stableMs: -1 }],
    ['NaN baseMs', { baseMs: Number.NaN }],
  ];
  for (const [name, options] of bad) {
    it(`${name} is refused`, () => {
      assert.throws(() => new Backoff(options), RangeError);
    });
  }
});

describe('Backoff reset after a stable connection', () => {
  const cases: [string, number, number][] = [
    ['up 60 s (stableMs 60 s): the next failure is a first one again', 60_000, 1000],
    ['up 59.999 s: still backing off, the window keeps growing', 59_999, 8000],
    ['up 0 s (accepted then dropped at once)', 0, 8000],
  ];
  for (const [name, upFor, wantWindow] of cases) {
    it(name, () => {
      const b = new Backoff({ baseMs: 1000, capMs: 300_000, stableMs: 60_000, random: () => 0.5 });
      b.next(0);
      b.next(0);
      b.next(0);
      assert.equal(b.attempts, 3);
      b.connected(1_000_000);
      b.next(1_000_000 + upFor);
      // next() drew from the window before counting the attempt; the one after it shows whether it reset.
      assert.equal(b.window(), wantWindow * 2);
    });
  }

  it('reset() starts over', () => {
    const b = new Backoff({ random: () => 0.5 });
    for (let i = 0; i < 5; i++) b.next();
    b.reset();
    assert.equal(b.attempts, 0);
    assert.equal(b.window(), DEFAULT_BACKOFF.baseMs);
  });
});

describe('Backoff distribution (full jitter, seeded)', () => {
  for (const attempt of [0, 3, 9]) {
    it(`attempt ${attempt}: 20,000 delays are uniform over [0, window): mean within 2%, each tenth of the window holds 10% +- 1%`, () => {
      const random = seeded(0xc0ffee + attempt);
      const window = Math.min(DEFAULT_BACKOFF.capMs, DEFAULT_BACKOFF.baseMs * 2 ** attempt);
      const buckets = new Array<number>(10).fill(0);
      let sum = 0;
      const n = 20_000;
      for (let i = 0; i < n; i++) {
        const b = new Backoff({ random });
        for (let k = 0; k < attempt; k++) b.next();
        const d = b.next();
        assert.ok(d >= 0 && d < window, `${d} outside [0, ${window})`);
        sum += d;
        buckets[Math.floor((d / window) * 10)]! += 1;
      }
      assert.ok(Math.abs(sum / n / (window / 2) - 1) < 0.02, `mean ${sum / n} vs ${window / 2}`);
      for (const [i, count] of buckets.entries()) assert.ok(Math.abs(count / n - 0.1) < 0.01, `bucket ${i}: ${count / n}`);
    });
  }

  it('10,000 agents dropped by a collector restart: no 100 ms slot of their first 4 reconnects holds more than 1.2x its fair share', () => {
    const random = seeded(42);
    const agents = Array.from({ length: 10_000 }, () => new Backoff({ random }));
    // Each agent retries after its delay and fails again (the collector is still starting);
    // the attempts land at the cumulative sums of the delays.
    const at = new Array<number>(agents.length).fill(0);
    const slotMs = 100;
    for (let round = 0; round < 4; round++) {
      const slots = new Map<number, number>();
      for (const [i, b] of agents.entries()) {
        const window = b.window();
        const t = (at[i] ?? 0) + b.next();
        at[i] = t;
        const slot = Math.floor(t / slotMs);
        slots.set(slot, (slots.get(slot) ?? 0) + 1);
        assert.equal(window, DEFAULT_BACKOFF.baseMs * 2 ** round);
      }
      const busiest = Math.max(...slots.values());
      const fair = agents.length / ((DEFAULT_BACKOFF.baseMs * 2 ** round) / slotMs);
      assert.ok(busiest <= fair * 1.2 + 30, `round ${round}: busiest 100 ms slot ${busiest}, fair share ${fair}`);
    }
  });
});
