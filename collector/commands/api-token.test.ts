/**
 * `api-token` through the real CLI (node --import tsx collector/main.ts), against a real
 * database file; the token it prints is then used against the HTTP app.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Correlator } from '../domain/correlate/correlator.ts';
import { DEFAULT_POLICY } from '../domain/correlate/policy.ts';
import { createApp } from '../http/app.ts';
import { createMetrics } from '../http/metrics.ts';
import { openDatabase } from '../store/db.ts';
import { storeOn } from '../store/store.ts';

const ROOT = join(import.meta.dirname, '..', '..');

function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', join(ROOT, 'collector', 'main.ts'), ...args], { cwd: ROOT, timeout: 60_000, maxBuffer: 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

describe('api-token CLI', () => {
  let dir: string;
  let db: string;
  let adminToken: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pw-api-token-'));
    db = join(dir, 'c.db');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('creates a token, prints it once, stores only its sha256 and audits the creation as cli:<user>', async () => {
    const r = await cli('api-token', 'create', '--db', db, '--name', 'ops', '--role', 'admin');
    assert.equal(r.code, 0, r.stderr);
    adminToken = r.stdout.trim();
    assert.match(adminToken, /^pwa_[A-Za-z0-9_-]{43}$/);
    const conn = openDatabase(db);
    try {
      assert.deepEqual(conn.prepare('SELECT name, role, hash, created_by AS createdBy, revoked_at AS revokedAt FROM api_tokens').all(), [
        { name: 'ops', role: 'admin', hash: createHash('sha256').update(adminToken).digest('hex'), createdBy: `cli:${userInfo().username}`, revokedAt: null },
      ]);
      assert.deepEqual(conn.prepare('SELECT actor, action, target, detail FROM audit').all(), [
        { actor: `cli:${userInfo().username}`, action: 'api-token.create', target: 'api-token:ops', detail: '{"role":"admin"}' },
      ]);
      conn.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      conn.close();
    }
    assert.equal((await readFile(db)).includes(Buffer.from(adminToken)), false, 'the token itself is nowhere in the database file');
  });

  const usage: [string, string[], RegExp][] = [
    ['a name taken already', ['--name', 'ops', '--role', 'viewer'], /exists already/],
    ['an unknown role', ['--name', 'x', '--role', 'root'], /--role must be one of viewer, operator, admin/],
    ['no role', ['--name', 'x'], /--role must be one of/],
    ['a name with shell in it', ['--name', '$(id)', '--role', 'viewer'], /--name "\$\(id\)"/],
    ['no name', ['--role', 'viewer'], /--name NAME is required/],
  ];
  for (const [name, args, message] of usage) {
    it(`exits 2 for ${name}`, async () => {
      const r = await cli('api-token', 'create', '--db', db, ...args);
      assert.equal(r.code, 2);
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '');
    });
  }

  it('prints the record and the token with --json, and lists tokens without their secrets', async () => {
    const r = await cli('api-token', 'create', '--db', db, '--name', 'dash', '--role', 'viewer', '--json');
    assert.equal(r.code, 0, r.stderr);
    const created = JSON.parse(r.stdout) as { name: string; role: string; token: string; revokedAt: null };
    assert.equal(created.name, 'dash');
    assert.equal(created.role, 'viewer');
    assert.match(created.token, /^pwa_/);
    const list = await cli('api-token', 'list', '--db', db, '--json');
    const rows = JSON.parse(list.stdout) as Record<string, unknown>[];
    assert.deepEqual(rows.map((t) => [t.name, t.role]), [['ops', 'admin'], ['dash', 'viewer']]);
    assert.ok(!list.stdout.includes('pwa_') && !list.stdout.includes('hash'), 'no token or hash is listed');
  });

  it('makes a token the API accepts until it is revoked', async () => {
    const conn = openDatabase(db);
    try {
      const app = createApp({ store: storeOn(conn).async, correlator: new Correlator(), policy: DEFAULT_POLICY, metrics: createMetrics() });
      const whoami = () => app.request('/api/v1/whoami', { headers: { authorization: `Bearer ${adminToken}` } });
      assert.deepEqual(await (await whoami()).json(), { name: 'ops', role: 'admin' });
      const r = await cli('api-token', 'revoke', '--db', db, '--name', 'ops');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'API token ops (admin) revoked\n');
      assert.equal((await whoami()).status, 401);
      const audit = conn.prepare("SELECT actor, target FROM audit WHERE action = 'api-token.revoke'").all();
      assert.deepEqual(audit, [{ actor: `cli:${userInfo().username}`, target: 'api-token:ops' }]);
    } finally {
      conn.close();
    }
    const again = await cli('api-token', 'revoke', '--db', db, '--name', 'ops');
    assert.equal(again.code, 0);
    assert.match(again.stdout, /was revoked already/);
    const unknown = await cli('api-token', 'revoke', '--db', db, '--name', 'nobody');
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /no API token is named nobody/);
  });
});
