/**
 * The gateway's connection marks (agents.connected, connected_by) under a store whose
 * statements finish out of order, as PostgreSQL's pool connections can: an agent that
 * drops and comes straight back to this collector must stay marked connected.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { TestAgent, newKeys } from '../../shared/testing/fake-agent.ts';
import { onEachEngine } from '../../shared/testing/store-engines.ts';
import { createLogger } from '../logger.ts';
import type { Agents } from '../store/agents.ts';
import { AGENT_PATH, Gateway } from './gateway.ts';

/** The store's agents, with every disconnect mark held back `ms` (the reconnect's mark would land first without the gateway's ordering). */
function slowDisconnects(agents: Agents, ms: number): Agents {
  return new Proxy(agents, {
    get(target, prop) {
      if (prop === 'markDisconnected') {
        return async (...args: Parameters<Agents['markDisconnected']>) => {
          await new Promise((r) => setTimeout(r, ms));
          return target.markDisconnected(...args);
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

const DELAY_MS = 300;

onEachEngine('Gateway connection marks', (engine) => {
  test('an agent that drops and reconnects at once stays marked connected to this replica, however late the drop\'s mark is written', async (t) => {
    const { store } = await engine.open(t);
    const keys = newKeys();
    const agentId = await store.agents.enroll({ publicKey: keys.publicKey, hostname: 'web-1', machineId: null, tokenId: null });
    const gateway = new Gateway({
      store: { kind: store.kind, agents: slowDisconnects(store.agents, DELAY_MS), reports: store.reports },
      replica: 'replica-a',
      collectorPublicKey: keys.publicKey,
      logger: createLogger({ level: 'silent' }),
    });
    const server = createServer();
    gateway.attach(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(async () => {
      await gateway.close();
      await new Promise((r) => server.close(r));
    });
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}${AGENT_PATH}`;

    const first = await TestAgent.connect(url);
    await first.hello(agentId, keys);
    await first.close();
    const second = await TestAgent.connect(url);
    t.after(() => second.close());
    await second.hello(agentId, keys);
    await gateway.marksWritten();
    // Longer than the held-back disconnect: written out of order, it would have landed by now.
    await new Promise((r) => setTimeout(r, 2 * DELAY_MS));
    const agent = await store.agents.get(agentId);
    assert.deepEqual([agent?.connected, agent?.connectedBy], [true, 'replica-a']);

    await second.close();
    for (let i = 0; i < 50 && gateway.isConnected(agentId); i++) await new Promise((r) => setTimeout(r, 20));
    await gateway.marksWritten();
    const gone = await store.agents.get(agentId);
    assert.deepEqual([gone?.connected, gone?.connectedBy], [false, null]);
  });
});
