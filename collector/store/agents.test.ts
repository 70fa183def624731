import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { generateKeyPair } from '../../shared/signing.ts';
import { tempFleet, rowCount as count, enrollAgent as enroll, FLEET_NOW } from '../../shared/testing/store-fixtures.ts';

const NOW = FLEET_NOW;
const HOUR = 3600_000;

describe('Agents', () => {
  it('enrollWithToken: a key enrolled already is refused and does not use up the token', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const { token, id } = fleet.tokens.create({ uses: 2, ttlMs: HOUR, createdBy: 'test' }, NOW);
    const key = generateKeyPair().publicKey;
    const first = fleet.agents.enrollWithToken(token, { publicKey: key, hostname: 'web-1', machineId: null }, NOW);
    assert.equal(first.ok, true);
    assert.throws(() => fleet.agents.enrollWithToken(token, { publicKey: key, hostname: 'web-1', machineId: null }, NOW), { name: 'AgentRefusedError', code: 'PW_ERR_ALREADY_ENROLLED', reason: 'already-enrolled' });
    assert.equal((db.prepare('SELECT uses_left FROM enrollment_tokens WHERE id = ?').get(id) as { uses_left: number }).uses_left, 1);
    assert.equal(count(db, 'agents'), 1);
  });

  it('enrollWithToken returns the refusal reason and stores no agent', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const r = fleet.agents.enrollWithToken('y'.repeat(43), { publicKey: generateKeyPair().publicKey, hostname: 'web-1', machineId: null }, NOW);
    assert.deepEqual(r, { ok: false, reason: 'unknown' });
    assert.equal(count(db, 'agents'), 0);
  });

  it('get, revoke (once, audited), setConnected, tags', async (t) => {
    const { db, fleet } = await tempFleet(t);
    const id = enroll(fleet);
    assert.equal(fleet.agents.get(id)?.revokedAt, null);
    fleet.agents.setConnected(id, true, NOW);
    assert.equal(fleet.agents.get(id)?.connected, true);
    assert.equal(fleet.agents.revoke(id, 'cli:root', NOW), true);
    assert.equal(fleet.agents.revoke(id, 'cli:root', NOW), false);
    assert.equal(fleet.agents.revoke(randomUUID(), 'cli:root', NOW), false);
    const a = fleet.agents.get(id);
    assert.equal(a?.revokedAt, NOW.toISOString());
    assert.equal(a.connected, false);
    assert.equal(fleet.agents.get(randomUUID()), undefined);
    assert.equal(fleet.agents.setTags(id, ['prod', 'eu', 'prod'], 'cli:root', NOW), true);
    assert.deepEqual(fleet.agents.get(id)?.tags, ['eu', 'prod']);
    const actions = db.prepare('SELECT action FROM audit ORDER BY id').all() as { action: string }[];
    assert.deepEqual(actions.map((r) => r.action), ['agent.enroll', 'agent.revoke', 'agent.tags']);
  });
});

