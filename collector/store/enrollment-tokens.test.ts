import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { describe, it, test } from 'node:test';
import { onEachEngine } from '../../shared/testing/store-engines.ts';
import { FLEET_NOW, tempDatabase } from '../../shared/testing/store-fixtures.ts';
import { tokenHash } from './enrollment-tokens.ts';
import { sql } from './sql/query.ts';
import { storeOn } from './store.ts';

const NOW = FLEET_NOW;
const HOUR = 3600_000;

const tokenRow = sql('SELECT hash, uses_left FROM enrollment_tokens WHERE id = ?');
const auditRows = sql('SELECT actor, action, target FROM audit');

onEachEngine('EnrollmentTokens', (engine) => {
  test('stores only the sha256 of the token and audits its creation', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const { token, id, expiresAt } = await store.tokens.create({ uses: 3, ttlMs: 24 * HOUR, createdBy: 'cli:root', note: 'rack 4' }, NOW);
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(expiresAt, '2026-11-27T18:00:00.000Z');
    const row = await db.get<Record<string, unknown>>(tokenRow, [id]);
    assert.equal(row?.hash, createHash('sha256').update(token).digest('hex'));
    assert.equal(row.uses_left, 3);
    assert.deepEqual(await db.all(auditRows), [{ actor: 'cli:root', action: 'enrollment-token.create', target: `token:${id}` }]);
  });

  test('never makes a token that starts with a dash (a command line would read it as an option)', async (t) => {
    const { store } = await engine.open(t);
    // One base64url string in 64 starts with '-': among 500, one almost surely would.
    const tokens: string[] = [];
    for (let i = 0; i < 500; i++) tokens.push((await store.tokens.create({ uses: 1, ttlMs: HOUR, createdBy: 'test' }, NOW)).token);
    assert.deepEqual(tokens.filter((k) => k.startsWith('-')), []);
    assert.ok(tokens.every((k) => /^[A-Za-z0-9_-]{43}$/.test(k)));
  });

  const cases: { name: string; uses: number; createdAt: Date; consumeAt: Date; attempts: number; expect: (string | number)[] }[] = [
    { name: 'uses 2, three attempts: ok, ok, used-up', uses: 2, createdAt: NOW, consumeAt: NOW, attempts: 3, expect: ['ok', 'ok', 'used-up'] },
    { name: 'uses 1, ttl 1h, used 2h later: expired', uses: 1, createdAt: new Date(NOW.getTime() - 2 * HOUR), consumeAt: NOW, attempts: 1, expect: ['expired'] },
    { name: 'uses 1, used exactly at expiry: expired', uses: 1, createdAt: new Date(NOW.getTime() - HOUR), consumeAt: NOW, attempts: 1, expect: ['expired'] },
  ];
  for (const c of cases) {
    test(c.name, async (t) => {
      const { store } = await engine.open(t);
      const { token } = await store.tokens.create({ uses: c.uses, ttlMs: HOUR, createdBy: 'test' }, c.createdAt);
      const got: string[] = [];
      for (let i = 0; i < c.attempts; i++) {
        const r = await store.tokens.consume(token, c.consumeAt);
        got.push(r.ok ? 'ok' : r.reason);
      }
      assert.deepEqual(got, c.expect);
    });
  }

  test('an unknown token is refused as unknown', async (t) => {
    const { store } = await engine.open(t);
    assert.deepEqual(await store.tokens.consume('x'.repeat(43), NOW), { ok: false, reason: 'unknown' });
  });

  for (const [uses, ttlMs] of [[0, HOUR], [1.5, HOUR], [1, 0], [1, Number.NaN]] as const) {
    test(`uses ${uses}, ttl ${ttlMs} ms is refused`, async (t) => {
      const { store } = await engine.open(t);
      await assert.rejects(store.tokens.create({ uses, ttlMs, createdBy: 'test' }, NOW), RangeError);
    });
  }

  test('a token with 3 uses taken by 8 at once gives exactly 3', async (t) => {
    const { store } = await engine.open(t);
    const { token } = await store.tokens.create({ uses: 3, ttlMs: HOUR, createdBy: 'test' }, NOW);
    const got = await Promise.all(Array.from({ length: 8 }, () => store.tokens.consume(token, NOW)));
    assert.equal(got.filter((r) => r.ok).length, 3);
    assert.deepEqual(got.filter((r) => !r.ok), Array.from({ length: 5 }, () => ({ ok: false, reason: 'used-up' })));
  });
});

describe('EnrollmentTokens on a SQLite file', () => {
  it('the token itself is nowhere in the database file', async (t) => {
    const { db, path } = await tempDatabase(t, 'tokens');
    const { token } = await storeOn(db).async.tokens.create({ uses: 3, ttlMs: 24 * HOUR, createdBy: 'cli:root', note: 'rack 4' }, NOW);
    db.pragma('wal_checkpoint(TRUNCATE)');
    assert.equal((await readFile(path)).includes(Buffer.from(token)), false, 'the token itself is nowhere in the database file');
  });
});

describe('tokenHash', () => {
  it('is the hex sha256 of the token', () => {
    assert.equal(tokenHash('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});
