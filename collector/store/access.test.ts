import assert from 'node:assert/strict';
import { test } from 'node:test';
import { audited, blockAudit, onEachEngine } from '../../shared/testing/store-engines.ts';
import { API_TOKEN, newApiToken, roleAtLeast } from './access.ts';
import { sql } from './sql/query.ts';

const NOW = new Date('2026-12-01T10:00:00.000Z');
const LATER = new Date('2026-12-02T10:00:00.000Z');

const tokenRows = sql('SELECT name, hash FROM api_tokens ORDER BY id');


test('roles are ordered viewer < operator < admin; tokens have the pwa_ shape', () => {
  const table: [Parameters<typeof roleAtLeast>[0], Parameters<typeof roleAtLeast>[1], boolean][] = [
    ['viewer', 'viewer', true],
    ['viewer', 'operator', false],
    ['operator', 'viewer', true],
    ['operator', 'admin', false],
    ['admin', 'operator', true],
  ];
  for (const [have, need, ok] of table) assert.equal(roleAtLeast(have, need), ok, `${have} for ${need}`);
  assert.match(newApiToken(), API_TOKEN);
});

onEachEngine('ApiTokenStore', (engine) => {
  test('creates tokens with their audit rows, finds them by token, name and id, revokes them once', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const ci = await store.apiTokens.create({ name: 'ci', role: 'viewer', createdBy: 'cli:alice' }, NOW);
    const ops = await store.apiTokens.create({ name: 'ops@example.org', role: 'admin', createdBy: 'cli:bob' }, NOW);
    assert.match(ci.token, API_TOKEN);
    assert.deepEqual(ci.record, { id: ci.record.id, name: 'ci', role: 'viewer', createdAt: NOW.toISOString(), createdBy: 'cli:alice', revokedAt: null });
    const stored = await db.all<{ name: string; hash: string }>(tokenRows);
    assert.equal(stored.length, 2);
    assert.ok(stored.every((r) => /^[0-9a-f]{64}$/.test(r.hash) && r.hash !== ci.token && r.hash !== ops.token), 'only the hash is kept');

    assert.deepEqual(await store.apiTokens.lookup(ci.token), ci.record);
    assert.deepEqual(await store.apiTokens.byName('ops@example.org'), ops.record);
    assert.deepEqual(await store.apiTokens.byId(ops.record.id), ops.record);
    // Table-driven: strings that are no token of ours, well-formed or not.
    for (const s of ['', 'pwa_', ci.token.slice(0, -1), `${ci.token}x`, newApiToken(), 'Bearer ' + ci.token]) assert.equal(await store.apiTokens.lookup(s), undefined, JSON.stringify(s));
    assert.equal(await store.apiTokens.byName('nobody'), undefined);
    assert.equal(await store.apiTokens.byId(ops.record.id + 100), undefined);

    assert.equal(await store.apiTokens.revoke('ci', 'cli:carol', LATER), true);
    assert.equal(await store.apiTokens.revoke('ci', 'cli:carol', LATER), false, 'revoked already: nothing audited');
    assert.equal(await store.apiTokens.revoke('nobody', 'cli:carol', LATER), false);
    assert.equal((await store.apiTokens.lookup(ci.token))?.revokedAt, LATER.toISOString(), 'a revoked token is still found, as revoked');
    assert.deepEqual(
      (await store.apiTokens.list()).map((r) => [r.name, r.role, r.revokedAt]),
      [
        ['ci', 'viewer', LATER.toISOString()],
        ['ops@example.org', 'admin', null],
      ],
    );
    assert.deepEqual(await audited(db), [
      ['cli:alice', 'api-token.create', 'api-token:ci', JSON.stringify({ role: 'viewer' })],
      ['cli:bob', 'api-token.create', 'api-token:ops@example.org', JSON.stringify({ role: 'admin' })],
      ['cli:carol', 'api-token.revoke', 'api-token:ci', null],
    ]);
  });

  test('refuses a malformed name before the store, and a taken one (revoked too) with PW_ERR_STORE, writing nothing', async (t) => {
    const { store, sql: db } = await engine.open(t);
    for (const name of ['', '-lead', 'a b', 'x'.repeat(65), 'nul\u0000name']) {
      await assert.rejects(store.apiTokens.create({ name, role: 'viewer', createdBy: 'cli:alice' }, NOW), RangeError, JSON.stringify(name));
    }
    assert.deepEqual(await db.all(tokenRows), []);
    await store.apiTokens.create({ name: 'ci', role: 'viewer', createdBy: 'cli:alice' }, NOW);
    await store.apiTokens.revoke('ci', 'cli:alice', NOW);
    await assert.rejects(store.apiTokens.create({ name: 'ci', role: 'admin', createdBy: 'cli:bob' }, LATER), { code: 'PW_ERR_STORE', message: /named ci exists already/ });
    assert.deepEqual((await store.apiTokens.list()).map((r) => [r.name, r.role]), [['ci', 'viewer']]);
    assert.deepEqual((await audited(db)).map((r) => r[1]), ['api-token.create', 'api-token.revoke'], 'the refused create wrote no audit row');
  });

  test('a create rolled back with its caller’s transaction leaves neither token nor audit row', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const unblock = await blockAudit(engine.name, db);
    await assert.rejects(store.apiTokens.create({ name: 'ci', role: 'viewer', createdBy: 'cli:alice' }, NOW), /audit unavailable/);
    assert.deepEqual(await db.all(tokenRows), [], 'the token went with its audit row');
    await unblock();
    await assert.rejects(
      store.transaction(async (tx) => {
        await tx.apiTokens.create({ name: 'ci', role: 'viewer', createdBy: 'cli:alice' }, NOW);
        throw new Error('changed my mind');
      }),
      /changed my mind/,
    );
    assert.deepEqual([await db.all(tokenRows), await audited(db)], [[], []]);
  });

  test('two creates of one name at once: one token, one audit row, the other refused', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const results = await Promise.allSettled([
      store.apiTokens.create({ name: 'ci', role: 'viewer', createdBy: 'cli:alice' }, NOW),
      store.apiTokens.create({ name: 'ci', role: 'admin', createdBy: 'cli:bob' }, NOW),
    ]);
    assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
    assert.equal((await store.apiTokens.list()).length, 1);
    assert.equal((await audited(db)).length, 1);
  });
});
