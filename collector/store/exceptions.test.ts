import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openDatabase } from './db.ts';
import { ExceptionStore } from './exceptions.ts';

const NOW = new Date('2026-12-01T10:00:00.000Z');
const LATER = new Date('2026-12-20T10:00:00.000Z');

function store(audit: (action: string, target: string | null, detail: string | null) => void = () => undefined) {
  const db = openDatabase(':memory:');
  return { db, exceptions: new ExceptionStore(db, { record: (_actor, action, target, detail) => { audit(action, target, detail); } }) };
}

describe('ExceptionStore', () => {
  it('adds and ends exceptions with their audit rows, and reads the ones in force by host', (t) => {
    const rows: [string, string | null, string | null][] = [];
    const { db, exceptions } = store((...r) => rows.push(r));
    t.after(() => db.close());
    const fleetWide = exceptions.add({ advisory: 'ALSA-2025:1', owner: 'sec', reason: 'waf', expires: '2026-12-10T00:00:00.000Z' }, 'cli:alice', NOW);
    const own = exceptions.add({ advisory: 'ALSA-2025:2', package: 'bind', host: 'agent-1', owner: 'ops', reason: 'lab', expires: '2027-01-01T00:00:00.000Z' }, 'cli:bob', NOW);
    assert.deepEqual(rows[0], ['exception.add', `exception:${fleetWide}`, JSON.stringify({ advisory: 'ALSA-2025:1', package: null, host: null, owner: 'sec', reason: 'waf', expires: '2026-12-10T00:00:00.000Z' })]);
    assert.deepEqual(exceptions.inForce(NOW), {
      fleetWide: [{ advisory: 'ALSA-2025:1', package: undefined, owner: 'sec', reason: 'waf', expires: '2026-12-10T00:00:00.000Z' }],
      byHost: new Map([['agent-1', [{ advisory: 'ALSA-2025:2', package: 'bind', owner: 'ops', reason: 'lab', expires: '2027-01-01T00:00:00.000Z' }]]]),
    });
    assert.deepEqual(exceptions.signature(NOW), { inForce: 2, lastId: own, soonestExpiry: '2026-12-10T00:00:00.000Z' });
    assert.deepEqual(exceptions.signature(LATER), { inForce: 1, lastId: own, soonestExpiry: '2027-01-01T00:00:00.000Z' }, 'an expired one drops out');

    assert.equal(exceptions.end(own, 'cli:carol', LATER), '2027-01-01T00:00:00.000Z');
    assert.equal(exceptions.end(own, 'cli:carol', LATER), undefined, 'ended already: nothing to end, nothing audited');
    assert.deepEqual(rows.map((r) => r[0]), ['exception.add', 'exception.add', 'exception.remove']);
    assert.deepEqual(exceptions.signature(LATER), { inForce: 0, lastId: 0, soonestExpiry: '' });
    assert.deepEqual(exceptions.all().map((e) => [e.id, e.createdBy, e.expires]), [
      [fleetWide, 'cli:alice', '2026-12-10T00:00:00.000Z'],
      [own, 'cli:bob', LATER.toISOString()],
    ], 'ended exceptions stay on record');
  });

  it('keeps no exception whose audit row could not be written', (t) => {
    const { db, exceptions } = store(() => {
      throw new Error('audit unavailable');
    });
    t.after(() => db.close());
    assert.throws(() => exceptions.add({ advisory: 'ALSA-2025:1', owner: 'sec', reason: 'waf', expires: '2027-01-01T00:00:00.000Z' }, 'cli:alice', NOW), /audit unavailable/);
    assert.deepEqual(exceptions.all(), []);
  });
});
