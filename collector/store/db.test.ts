import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MIGRATIONS } from './migrations.ts';
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
});
