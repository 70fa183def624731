import assert from 'node:assert/strict';
import { test } from 'node:test';
import { audited, blockAudit, onEachEngine } from '../../shared/testing/store-engines.ts';
import { sql } from './sql/query.ts';

const NOW = new Date('2026-12-01T10:00:00.000Z');
const LATER = new Date('2026-12-20T10:00:00.000Z');

const exceptionCount = sql('SELECT count(*) AS n FROM exceptions');


onEachEngine('ExceptionStore', (engine) => {
  test('adds and ends exceptions with their audit rows, and reads the ones in force by host', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const fleetWide = await store.exceptions.add({ advisory: 'ALSA-2025:1', owner: 'sec', reason: 'waf', expires: '2026-12-10T00:00:00.000Z' }, 'cli:alice', NOW);
    const own = await store.exceptions.add({ advisory: 'ALSA-2025:2', package: 'bind', host: 'agent-1', owner: 'ops', reason: 'lab', expires: '2027-01-01T00:00:00.000Z' }, 'cli:bob', NOW);
    assert.deepEqual((await audited(db))[0], [
      'cli:alice',
      'exception.add',
      `exception:${fleetWide}`,
      JSON.stringify({ advisory: 'ALSA-2025:1', package: null, host: null, owner: 'sec', reason: 'waf', expires: '2026-12-10T00:00:00.000Z' }),
    ]);
    assert.deepEqual(await store.exceptions.inForce(NOW), {
      fleetWide: [{ advisory: 'ALSA-2025:1', package: undefined, owner: 'sec', reason: 'waf', expires: '2026-12-10T00:00:00.000Z' }],
      byHost: new Map([['agent-1', [{ advisory: 'ALSA-2025:2', package: 'bind', owner: 'ops', reason: 'lab', expires: '2027-01-01T00:00:00.000Z' }]]]),
    });
    assert.deepEqual(await store.exceptions.forHost('agent-1', NOW), [
      { advisory: 'ALSA-2025:1', package: undefined, owner: 'sec', reason: 'waf', expires: '2026-12-10T00:00:00.000Z' },
      { advisory: 'ALSA-2025:2', package: 'bind', owner: 'ops', reason: 'lab', expires: '2027-01-01T00:00:00.000Z' },
    ]);
    assert.deepEqual(await store.exceptions.forHost('agent-2', LATER), [], 'another host: the fleet-wide one only, expired by then');
    assert.deepEqual(await store.exceptions.fleetWide(NOW), [{ advisory: 'ALSA-2025:1', package: undefined, owner: 'sec', reason: 'waf', expires: '2026-12-10T00:00:00.000Z' }]);
    assert.deepEqual(await store.exceptions.signature(NOW), { inForce: 2, lastId: own, soonestExpiry: '2026-12-10T00:00:00.000Z' });
    assert.deepEqual(await store.exceptions.signature(LATER), { inForce: 1, lastId: own, soonestExpiry: '2027-01-01T00:00:00.000Z' }, 'an expired one drops out');

    assert.equal(await store.exceptions.end(own, 'cli:carol', LATER), '2027-01-01T00:00:00.000Z');
    assert.equal(await store.exceptions.end(own, 'cli:carol', LATER), undefined, 'ended already: nothing to end, nothing audited');
    assert.equal(await store.exceptions.end(own + 100, 'cli:carol', LATER), undefined, 'no such exception');
    assert.deepEqual((await audited(db)).map((r) => [r[0], r[1]]), [
      ['cli:alice', 'exception.add'],
      ['cli:bob', 'exception.add'],
      ['cli:carol', 'exception.remove'],
    ]);
    assert.equal((await audited(db))[2]?.[3], JSON.stringify({ expired: '2027-01-01T00:00:00.000Z' }));
    assert.deepEqual(await store.exceptions.signature(LATER), { inForce: 0, lastId: 0, soonestExpiry: '' });
    assert.deepEqual(
      (await store.exceptions.all()).map((e) => [e.id, e.createdBy, e.expires]),
      [
        [fleetWide, 'cli:alice', '2026-12-10T00:00:00.000Z'],
        [own, 'cli:bob', LATER.toISOString()],
      ],
      'ended exceptions stay on record',
    );
    const [first] = await store.exceptions.all();
    assert.deepEqual(first, {
      id: fleetWide,
      advisory: 'ALSA-2025:1',
      package: null,
      host: null,
      owner: 'sec',
      reason: 'waf',
      expires: '2026-12-10T00:00:00.000Z',
      createdAt: NOW.toISOString(),
      createdBy: 'cli:alice',
    });
  });

  test('an empty table: nothing in force, a zero signature', async (t) => {
    const { store } = await engine.open(t);
    assert.deepEqual(await store.exceptions.inForce(NOW), { fleetWide: [], byHost: new Map() });
    assert.deepEqual([await store.exceptions.forHost('agent-1', NOW), await store.exceptions.fleetWide(NOW)], [[], []]);
    assert.deepEqual(await store.exceptions.signature(NOW), { inForce: 0, lastId: 0, soonestExpiry: '' });
    assert.deepEqual(await store.exceptions.all(), []);
  });

  test('keeps no exception whose audit row could not be written, nor one rolled back with its transaction', async (t) => {
    const { store, sql: db } = await engine.open(t);
    // The audit table refuses rows: the exception inserted before its audit row must go too.
    const unblock = await blockAudit(engine.name, db);
    await assert.rejects(store.exceptions.add({ advisory: 'ALSA-2025:1', owner: 'sec', reason: 'waf', expires: '2027-01-01T00:00:00.000Z' }, 'cli:alice', NOW), /audit unavailable/);
    assert.equal((await db.get<{ n: number }>(exceptionCount))?.n, 0);
    await unblock();

    // Inside a caller's transaction the add is a savepoint: the caller's rollback takes it away.
    await assert.rejects(
      store.transaction(async (tx) => {
        await tx.exceptions.add({ advisory: 'ALSA-2025:1', owner: 'sec', reason: 'waf', expires: '2027-01-01T00:00:00.000Z' }, 'cli:alice', NOW);
        throw new Error('changed my mind');
      }),
      /changed my mind/,
    );
    assert.deepEqual([await store.exceptions.all(), await audited(db)], [[], []]);
    const id = await store.transaction((tx) => tx.exceptions.add({ advisory: 'ALSA-2025:1', owner: 'sec', reason: 'waf', expires: '2027-01-01T00:00:00.000Z' }, 'cli:alice', NOW));
    assert.deepEqual((await store.exceptions.all()).map((e) => e.id), [id]);
  });

  test('two ends of one exception at once: one ends it and is audited, the other finds it ended', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const id = await store.exceptions.add({ advisory: 'ALSA-2025:1', owner: 'sec', reason: 'waf', expires: '2027-01-01T00:00:00.000Z' }, 'cli:alice', NOW);
    const ends = await Promise.all([store.exceptions.end(id, 'cli:bob', LATER), store.exceptions.end(id, 'cli:carol', LATER)]);
    assert.deepEqual(ends.filter((e) => e !== undefined), ['2027-01-01T00:00:00.000Z']);
    assert.equal((await audited(db)).filter((r) => r[1] === 'exception.remove').length, 1);
  });
});
