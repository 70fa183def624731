import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { tokenHash } from './enrollment-tokens.ts';
import { tempFleet, FLEET_NOW } from '../../shared/testing/store-fixtures.ts';

const NOW = FLEET_NOW;
const HOUR = 3600_000;

describe('EnrollmentTokens', () => {
  it('stores only the sha256 of the token and audits its creation', async (t) => {
    const { db, fleet, path } = await tempFleet(t);
    const { token, id, expiresAt } = fleet.tokens.create({ uses: 3, ttlMs: 24 * HOUR, createdBy: 'cli:root', note: 'rack 4' }, NOW);
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(expiresAt, '2026-11-27T18:00:00.000Z');
    const row = db.prepare('SELECT * FROM enrollment_tokens WHERE id = ?').get(id) as Record<string, unknown>;
    assert.equal(row.hash, createHash('sha256').update(token).digest('hex'));
    assert.equal(row.uses_left, 3);
    db.pragma('wal_checkpoint(TRUNCATE)');
    assert.equal((await readFile(path)).includes(Buffer.from(token)), false, 'the token itself is nowhere in the database file');
    const audit = db.prepare('SELECT actor, action, target FROM audit').all();
    assert.deepEqual(audit, [{ actor: 'cli:root', action: 'enrollment-token.create', target: `token:${id}` }]);
  });

  it('never makes a token that starts with a dash (a command line would read it as an option)', async (t) => {
    const { fleet } = await tempFleet(t);
    // One base64url string in 64 starts with '-': among 500, one almost surely would.
    const tokens = Array.from({ length: 500 }, () => fleet.tokens.create({ uses: 1, ttlMs: HOUR, createdBy: 'test' }, NOW).token);
    assert.deepEqual(tokens.filter((k) => k.startsWith('-')), []);
    assert.ok(tokens.every((k) => /^[A-Za-z0-9_-]{43}$/.test(k)));
  });

  const cases: { name: string; uses: number; createdAt: Date; consumeAt: Date; attempts: number; expect: (string | number)[] }[] = [
    { name: 'uses 2, three attempts: ok, ok, used-up', uses: 2, createdAt: NOW, consumeAt: NOW, attempts: 3, expect: ['ok', 'ok', 'used-up'] },
    { name: 'uses 1, ttl 1h, used 2h later: expired', uses: 1, createdAt: new Date(NOW.getTime() - 2 * HOUR), consumeAt: NOW, attempts: 1, expect: ['expired'] },
    { name: 'uses 1, used exactly at expiry: expired', uses: 1, createdAt: new Date(NOW.getTime() - HOUR), consumeAt: NOW, attempts: 1, expect: ['expired'] },
  ];
  for (const c of cases) {
    it(c.name, async (t) => {
      const { fleet } = await tempFleet(t);
      const { token } = fleet.tokens.create({ uses: c.uses, ttlMs: HOUR, createdBy: 'test' }, c.createdAt);
      const got = Array.from({ length: c.attempts }, () => {
        const r = fleet.tokens.consume(token, c.consumeAt);
        return r.ok ? 'ok' : r.reason;
      });
      assert.deepEqual(got, c.expect);
    });
  }

  it('an unknown token is refused as unknown', async (t) => {
    const { fleet } = await tempFleet(t);
    assert.deepEqual(fleet.tokens.consume('x'.repeat(43), NOW), { ok: false, reason: 'unknown' });
  });

  for (const [uses, ttlMs] of [[0, HOUR], [1.5, HOUR], [1, 0], [1, Number.NaN]] as const) {
    it(`uses ${uses}, ttl ${ttlMs} ms is refused`, async (t) => {
      const { fleet } = await tempFleet(t);
      assert.throws(() => fleet.tokens.create({ uses, ttlMs, createdBy: 'test' }, NOW), RangeError);
    });
  }
});

describe('tokenHash', () => {
  it('is the hex sha256 of the token', () => {
    assert.equal(tokenHash('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

