import assert from 'node:assert/strict';
import { test } from 'node:test';
import { captureLogger } from '../../../shared/testing/capture-logger.ts';
import { onEachEngine } from '../../../shared/testing/store-engines.ts';
import { enrollAgent as enroll, FLEET_NOW as NOW } from '../../../shared/testing/store-fixtures.ts';
import { sql } from '../../store/sql/query.ts';
import type { AsyncStore } from '../../store/store.ts';
import type { Duty } from './duties.ts';
import { type Connections, ReplicaLiveness } from './liveness.ts';

const HOUR = 3_600_000;
const expire = sql("UPDATE replicas SET expires_at = '2000-01-01T00:00:00.000Z' WHERE id = ?");

/** A duty a test hands out and takes back. */
class TestDuty implements Duty {
  readonly name = 'housekeeping';
  held: boolean;
  readonly #listeners: ((held: boolean) => void)[] = [];
  constructor(held: boolean) {
    this.held = held;
  }
  onChange(listener: (held: boolean) => void): void {
    this.#listeners.push(listener);
  }
}

/** The gateway's side as far as liveness sees it: what is connected, and clearing the marks of what closed (as the gateway does). */
function connectionsOf(store: AsyncStore, replica: string, open: Set<string>): Connections & { cleared: string[][]; closeWhenListed: Set<string> } {
  const cleared: string[][] = [];
  /** Connections that close right after the next listing (before the marks written from it are checked). */
  const closeWhenListed = new Set<string>();
  return {
    cleared,
    closeWhenListed,
    connectedAgentIds: () => {
      const ids = [...open];
      for (const id of closeWhenListed) open.delete(id);
      closeWhenListed.clear();
      return ids;
    },
    clearClosed: async (ids) => {
      const closed = ids.filter((id) => !open.has(id));
      cleared.push(closed);
      for (const id of closed) await store.agents.markDisconnected(id, replica, NOW);
    },
  };
}

async function connectedBy(store: AsyncStore, ids: readonly string[]): Promise<(string | null)[]> {
  return Promise.all(ids.map(async (id) => (await store.agents.get(id))?.connectedBy ?? null));
}

onEachEngine('ReplicaLiveness', (engine) => {
  test('the replica holding housekeeping clears a dead replica\'s marks and says so; one that does not hold it leaves them', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const [ours, theirs] = [await enroll(store), await enroll(store)];
    const { logger, lines } = captureLogger();
    const duty = new TestDuty(false);
    const liveness = new ReplicaLiveness({ store, replica: 'r-a', leaseMs: HOUR, housekeeping: duty, connections: connectionsOf(store, 'r-a', new Set([ours])), logger });
    await liveness.start();
    t.after(() => liveness.stop());
    await store.replicas.beat({ id: 'r-b', host: 'b', pid: 2, startedAt: NOW.toISOString() }, HOUR, () => []);
    await store.agents.markConnected(ours, 'r-a', NOW);
    await store.agents.markConnected(theirs, 'r-b', NOW);
    await db.run(expire, ['r-b']);

    await liveness.beatOnce();
    assert.deepEqual(await connectedBy(store, [ours, theirs]), ['r-a', 'r-b'], 'not this replica\'s duty');
    duty.held = true;
    await liveness.beatOnce();
    assert.deepEqual(await connectedBy(store, [ours, theirs]), ['r-a', null]);
    const said = lines.map((l) => JSON.parse(l) as { msg: string; replica?: string; agents?: number }).find((l) => l.replica === 'r-b');
    assert.equal(said?.msg, 'replica r-b stopped beating: the agents it held (1) are marked disconnected');
  });

  test('a replica whose row had expired marks its connections again, less those that closed meanwhile; stop clears its marks and row', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const [kept, closing] = [await enroll(store), await enroll(store)];
    const open = new Set([kept, closing]);
    const connections = connectionsOf(store, 'r-a', open);
    const { logger } = captureLogger();
    const liveness = new ReplicaLiveness({ store, replica: 'r-a', leaseMs: HOUR, housekeeping: new TestDuty(false), connections, logger });
    await liveness.start();
    for (const id of [kept, closing]) await store.agents.markConnected(id, 'r-a', NOW);
    // Cut off for longer than its lease: another replica swept its marks.
    await db.run(expire, ['r-a']);
    await store.replicas.sweep({ orphans: false });
    assert.deepEqual(await connectedBy(store, [kept, closing]), [null, null]);

    // The listing says both; the second closes before the marks written from it are checked.
    connections.closeWhenListed.add(closing);
    await liveness.beatOnce();
    assert.deepEqual(await connectedBy(store, [kept, closing]), ['r-a', null]);
    assert.deepEqual(connections.cleared.at(-1), [closing]);
    assert.equal((await store.replicas.list()).find((r) => r.id === 'r-a')?.live, true);

    await liveness.stop();
    assert.deepEqual(await connectedBy(store, [kept, closing]), [null, null]);
    assert.deepEqual(await store.replicas.list(), []);
  });
});
