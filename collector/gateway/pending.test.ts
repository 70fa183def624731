import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressKey, PendingHandshakes } from './pending.ts';

describe('addressKey: the source a pending connection counts against', () => {
  const cases: [string | undefined, string][] = [
    ['127.0.0.1', '127.0.0.1'],
    ['203.0.113.9', '203.0.113.9'],
    ['::ffff:203.0.113.9', '203.0.113.9'],
    ['::FFFF:10.1.2.3', '10.1.2.3'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::7', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:aaaa::1', '2001:db8:1:2::/64'],
    ['2001:DB8::1', '2001:db8:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['64:ff9b::192.0.2.1', '64:ff9b:0:0::/64'],
    ['', 'unknown'],
    [undefined, 'unknown'],
    ['not an address', 'not an address'],
  ];
  for (const [address, key] of cases) {
    it(`${String(address)} -> ${key}`, () => {
      assert.equal(addressKey(address), key);
    });
  }
  it('two addresses of one /64 share a key; the next /64 does not', () => {
    assert.equal(addressKey('2001:db8:0:1::a'), addressKey('2001:db8:0:1:ffff:ffff:ffff:ffff'));
    assert.notEqual(addressKey('2001:db8:0:1::a'), addressKey('2001:db8:0:2::a'));
  });
});

describe('PendingHandshakes: per-source limits and fair eviction', () => {
  type Step = [op: 'add' | 'delete', source: string, item: string];
  const cases: { name: string; limits: { total: number; perAddress: number }; steps: Step[]; admit: string; expect: ReturnType<PendingHandshakes<string>['admit']> }[] = [
    { name: 'room: admitted, nothing closed', limits: { total: 4, perAddress: 2 }, steps: [['add', 'a', 'a1']], admit: 'b', expect: { ok: true, evict: null } },
    { name: 'a source at its own limit is refused while there is room', limits: { total: 4, perAddress: 2 }, steps: [['add', 'a', 'a1'], ['add', 'a', 'a2']], admit: 'a', expect: { ok: false, reason: 'per-address' } },
    {
      name: 'full: a new source closes the busiest source\'s oldest',
      limits: { total: 3, perAddress: 3 },
      steps: [['add', 'b', 'b1'], ['add', 'a', 'a1'], ['add', 'a', 'a2']],
      admit: 'c',
      expect: { ok: true, evict: 'a1' },
    },
    {
      name: 'full and even: equals do not close each other\'s',
      limits: { total: 4, perAddress: 4 },
      steps: [['add', 'a', 'a1'], ['add', 'a', 'a2'], ['add', 'b', 'b1'], ['add', 'b', 'b2']],
      admit: 'a',
      expect: { ok: false, reason: 'full' },
    },
    {
      name: 'full: a source one below the busiest is refused (taking a slot would only swap who is busiest)',
      limits: { total: 3, perAddress: 3 },
      steps: [['add', 'a', 'a1'], ['add', 'a', 'a2'], ['add', 'b', 'b1']],
      admit: 'b',
      expect: { ok: false, reason: 'full' },
    },
    {
      name: 'a deleted connection frees its slot',
      limits: { total: 2, perAddress: 2 },
      steps: [['add', 'a', 'a1'], ['add', 'a', 'a2'], ['delete', 'a', 'a1']],
      admit: 'a',
      expect: { ok: true, evict: null },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const p = new PendingHandshakes<string>(c.limits);
      for (const [op, source, item] of c.steps) {
        if (op === 'add') p.add(source, item);
        else p.delete(source, item);
      }
      assert.deepEqual(p.admit(c.admit), c.expect);
    });
  }

  it('counts each connection once and forgets emptied sources', () => {
    const p = new PendingHandshakes<string>({ total: 10, perAddress: 10 });
    p.add('a', 'x');
    p.add('a', 'x');
    assert.equal(p.size, 1);
    assert.equal(p.delete('a', 'x'), true);
    assert.equal(p.delete('a', 'x'), false);
    assert.equal(p.delete('b', 'y'), false);
    assert.deepEqual([p.size, p.countOf('a')], [0, 0]);
  });

  it('limits are whole numbers from 1', () => {
    for (const limits of [{ total: 0, perAddress: 1 }, { total: 1, perAddress: 1.5 }, { total: Number.NaN, perAddress: 1 }]) {
      assert.throws(() => new PendingHandshakes(limits), RangeError);
    }
  });
});
