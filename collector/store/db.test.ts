import assert from 'node:assert/strict';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MIGRATIONS } from './migrations.ts';
import Database from 'better-sqlite3';
import { openDatabase } from './db.ts';

describe('openDatabase', () => {
  it('creates a WAL database at the newest schema version, and reopening changes nothing', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pw-db-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'c.db');
    const db = openDatabase(path);
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    db.close();
    const again = openDatabase(path);
    assert.equal(again.pragma('user_version', { simple: true }), MIGRATIONS.length);
    again.close();
  });

  it('refuses a database from a newer collector with PW_ERR_STORE', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pw-db-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'c.db');
    const db = openDatabase(path);
    db.pragma(`user_version = ${MIGRATIONS.length + 5}`);
    db.close();
    assert.throws(() => openDatabase(path), { code: 'PW_ERR_STORE' });
  });

  it('a file that is not a database is refused with PW_ERR_STORE', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pw-db-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const { writeFile } = await import('node:fs/promises');
    const path = join(dir, 'junk.db');
    await writeFile(path, 'this is not sqlite '.repeat(100));
    assert.throws(() => openDatabase(path), { code: 'PW_ERR_STORE' });
  });

  it('migration 7 rebuilds inventory_contents as a rowid table: stored reports keep their contents, foreign keys hold and stay enforced', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pw-db-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'c.db');
    // A database as a collector at schema 6 left it, with a stored report.
    const old = new Database(path);
    old.pragma('foreign_keys = ON');
    for (const sql of MIGRATIONS.slice(0, 6)) old.exec(sql);
    old.pragma('user_version = 6');
    old.exec(`INSERT INTO agents (id, public_key, hostname, enrolled_at) VALUES ('a1', 'k1', 'web-1', '2026-11-26T00:00:00Z');
      INSERT INTO inventory_contents (hash, ecosystem, package_count, packages, created_at, package_set) VALUES ('c1', 'Debian:12', 1, '[{"name":"zlib1g"}]', '2026-11-26T00:00:00Z', 's1');
      INSERT INTO reports (id, agent_id, received_at, inventory_hash, content_hash, envelope) VALUES ('r1', 'a1', '2026-11-26T00:00:00Z', 'h1', 'c1', '{}');`);
    old.close();

    const db = openDatabase(path);
    t.after(() => db.close());
    assert.equal(db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    const sql = db.prepare<[], string>("SELECT sql FROM sqlite_schema WHERE name = 'inventory_contents'").pluck().get() ?? '';
    assert.doesNotMatch(sql, /WITHOUT ROWID/);
    assert.deepEqual(db.prepare('SELECT hash, package_set, packages FROM inventory_contents').all(), [{ hash: 'c1', package_set: 's1', packages: '[{"name":"zlib1g"}]' }]);
    assert.deepEqual(db.pragma('foreign_key_check'), []);
    assert.equal(db.pragma('foreign_keys', { simple: true }), 1);
    // Still the parent of reports.content_hash: a report naming no stored content is refused.
    assert.throws(() => db.exec("INSERT INTO reports (id, agent_id, received_at, inventory_hash, content_hash, envelope) VALUES ('r2', 'a1', 'x', 'h', 'nope', '{}')"), /FOREIGN KEY/);
  });
});

describe('migration 13: report ids are scoped to their agent (issue 10)', () => {
  it('a database at 12 keeps its reports (rowids too), hosts and imports; then two agents may use one report id, and a host still names a report of its own', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pw-db-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'c.db');
    const old = new Database(path);
    for (const sql of MIGRATIONS.slice(0, 12)) old.exec(sql);
    old.pragma('user_version = 12');
    old.exec(`INSERT INTO agents (id, public_key, hostname, enrolled_at) VALUES ('a1', 'k1', 'web-1', '2026-11-26T00:00:00Z'), ('a2', 'k2', 'web-2', '2026-11-26T00:00:00Z');
      INSERT INTO inventory_contents (hash, ecosystem, package_count, packages, created_at) VALUES ('c1', 'Debian:12', 1, '[]', '2026-11-26T00:00:00Z');
      INSERT INTO reports (rowid, id, agent_id, received_at, inventory_hash, content_hash, envelope) VALUES (7, 'r1', 'a1', '2026-11-26T00:00:00Z', 'h1', 'c1', '{}');
      INSERT INTO hosts (agent_id, hostname, package_count, kernel_release, kernel_managed, reboot_required, last_report_id, last_report_at, open_findings) VALUES ('a1', 'web-1', 1, '6.1', 1, 0, 'r1', '2026-11-26T00:00:00Z', 3);
      INSERT INTO report_imports (seq, report_id, agent_id, status, created_at, file_sha256, imported_at, imported_by) VALUES (5, 'r1', 'a1', 'stored', 'x', 's', 'y', 'cli:test');`);
    old.close();

    const db = openDatabase(path);
    t.after(() => db.close());
    assert.equal(db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    assert.deepEqual(db.prepare('SELECT rowid, id, agent_id FROM reports').all(), [{ rowid: 7, id: 'r1', agent_id: 'a1' }]);
    assert.deepEqual(db.prepare('SELECT agent_id, last_report_id, open_findings FROM hosts').all(), [{ agent_id: 'a1', last_report_id: 'r1', open_findings: 3 }]);
    assert.deepEqual(db.prepare('SELECT seq, report_id, agent_id FROM report_imports').all(), [{ seq: 5, report_id: 'r1', agent_id: 'a1' }]);
    assert.deepEqual(db.pragma('foreign_key_check'), []);
    db.exec(`INSERT INTO reports (id, agent_id, received_at, inventory_hash, content_hash, envelope) VALUES ('r1', 'a2', 'x', 'h', 'c1', '{}');
      INSERT INTO report_imports (report_id, agent_id, status, created_at, file_sha256, imported_at, imported_by) VALUES ('r1', 'a2', 'stored', 'x', 's', 'y', 'cli:test')`);
    assert.throws(() => db.exec("INSERT INTO reports (id, agent_id, received_at, inventory_hash, content_hash, envelope) VALUES ('r1', 'a1', 'x', 'h', 'c1', '{}')"), /UNIQUE/);
    // A host's current report is one of its own agent's: an id only another agent has is a broken reference.
    db.exec("INSERT INTO reports (id, agent_id, received_at, inventory_hash, content_hash, envelope) VALUES ('r2', 'a2', 'x', 'h', 'c1', '{}')");
    assert.throws(() => db.exec("UPDATE hosts SET last_report_id = 'r2' WHERE agent_id = 'a1'"), /FOREIGN KEY/);
  });
});

describe('the database file', () => {
  it('an existing empty file is refused with PW_ERR_STORE_EMPTY_FILE and left as it was, read-write and read-only; init makes a database in it', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pw-db-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'c.db');
    writeFileSync(path, '');
    for (const readonly of [false, true]) {
      assert.throws(() => openDatabase(path, { readonly }), { code: 'PW_ERR_STORE_EMPTY_FILE', message: /is an empty file, not a patchwarden database.*serve --init/ });
      assert.equal(statSync(path).size, 0);
    }
    const db = openDatabase(path, { init: true });
    assert.equal(db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    db.close();
    // Now a database: no flag needed.
    openDatabase(path).close();
  });

  it('a missing file is made as before (npm start relies on it)', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pw-db-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const db = openDatabase(join(dir, 'new.db'));
    assert.equal(db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    db.close();
  });

  it('under umask 022 the database, its -wal and its -shm are made 0600', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pw-db-'));
    const umask = process.umask(0o022);
    t.after(async () => {
      process.umask(umask);
      await rm(dir, { recursive: true, force: true });
    });
    const path = join(dir, 'c.db');
    const db = openDatabase(path);
    t.after(() => db.close());
    db.exec("INSERT INTO store_heartbeat (id, at, pid) VALUES (1, 'x', 1)");
    const files = readdirSync(dir).sort();
    assert.deepEqual(files, ['c.db', 'c.db-shm', 'c.db-wal']);
    for (const f of files) assert.equal((statSync(join(dir, f)).mode & 0o777).toString(8), '600', f);
  });
});
