import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { collectInventory } from '../../agent/inventory/inventory.ts';
import { inventoryHash, packageSetHash } from '../../shared/inventory-hash.ts';
import type { Inventory, Package } from '../../shared/protocol.ts';
import { KNOWN_SET_MIN_FRAME, splitKnownPackageSet } from './known-set.ts';

let inv: Inventory;
let held: Map<string, Package[]>;
/** What Reports.matchPackageSet does, by hash only. */
const match = (json: Buffer): Promise<{ hash: string; packages: Package[] } | undefined> => {
  const hash = createHash('sha256').update(json).digest('hex');
  const packages = held.get(hash);
  return Promise.resolve(packages === undefined ? undefined : { hash, packages });
};
before(async () => {
  // This machine's real inventory: hundreds of packages, a frame well over the threshold.
  inv = await collectInventory();
  held = new Map([[packageSetHash(inv.packages), inv.packages]]);
});

function frame(i: Inventory, space?: number): Buffer {
  return Buffer.from(JSON.stringify({ type: 'report', id: randomUUID(), hash: inventoryHash(i), inventory: i }, null, space), 'utf8');
}

describe('splitKnownPackageSet', () => {
  it('a JSON.stringify frame of a held set: the packages span becomes [] and the held packages come back', async () => {
    const text = frame(inv);
    assert.ok(text.length > KNOWN_SET_MIN_FRAME);
    const got = await splitKnownPackageSet(text, match);
    assert.ok(got !== null);
    assert.equal(got.hash, packageSetHash(inv.packages));
    assert.equal(got.packages, inv.packages);
    const rest = JSON.parse(got.rest) as { inventory: Inventory };
    assert.deepEqual(rest.inventory, { ...inv, packages: [] });
  });

  const misses: { name: string; text: () => Buffer | string }[] = [
    { name: 'a set the collector does not hold', text: () => frame({ ...inv, packages: inv.packages.slice(1) }) },
    { name: 'the held set, pretty-printed (not the bytes that were hashed)', text: () => frame(inv, 1) },
    { name: 'the held set in a different order', text: () => frame({ ...inv, packages: [...inv.packages].reverse() }) },
    { name: 'a frame under the threshold', text: () => frame({ ...inv, packages: inv.packages.slice(0, 2) }) },
    { name: 'no packages key at all', text: () => JSON.stringify({ type: 'report', pad: 'x'.repeat(KNOWN_SET_MIN_FRAME) }) },
    {
      name: 'the markers only inside a string (escaped quotes never match)',
      text: () => JSON.stringify({ type: 'report', note: `"packages":${JSON.stringify(inv.packages)},"kernel":` }),
    },
  ];
  it('a host name field with multi-byte UTF-8 before the packages: the span and the rest are cut at the right bytes', async () => {
    const text = JSON.stringify({ type: 'report', id: randomUUID(), note: 'höst-ünïcødé-✓'.repeat(50), inventory: { packages: inv.packages, kernel: {} } });
    const got = await splitKnownPackageSet(Buffer.from(text, 'utf8'), match);
    assert.ok(got !== null);
    assert.equal(got.rest, text.replace(JSON.stringify(inv.packages), '[]'));
  });

  for (const c of misses) {
    it(`parsed whole: ${c.name}`, async () => {
      assert.equal(
        await splitKnownPackageSet(Buffer.from(c.text()), match),
        null,
      );
    });
  }
});
