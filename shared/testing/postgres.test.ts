import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, test } from 'node:test';
import pg from 'pg';
import { startPostgres } from './postgres.ts';
import { needs, TOOLS } from './system-tools.ts';

/** Connected, and an idle connection the server cuts is not an uncaught 'error' event. */
async function connected(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

describe('a throwaway PostgreSQL cluster', { skip: needs(TOOLS.postgres) }, () => {
  test('keeps what was written across a restart and a crash, and stop removes its directory', async (t) => {
    const cluster = await startPostgres();
    t.after(() => cluster.stop());
    assert.match(cluster.url, /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);

    let client = await connected(cluster.url);
    t.after(() => client.end().catch(() => undefined));
    const version = await client.query<{ server_version_num: string }>('SHOW server_version_num');
    assert.ok(Number(version.rows[0]?.server_version_num) >= 150000, 'PostgreSQL 15 or newer');
    await client.query('CREATE TABLE t (id integer PRIMARY KEY, note text NOT NULL)');
    await client.query('INSERT INTO t (id, note) VALUES ($1, $2), ($3, $4)', [1, 'one', 2, 'two']);
    assert.deepEqual((await client.query('SELECT id, note FROM t ORDER BY id')).rows, [
      { id: 1, note: 'one' },
      { id: 2, note: 'two' },
    ]);

    await cluster.restart();
    // The old connection was cut by the shutdown.
    await assert.rejects(client.query('SELECT 1'));
    await client.end().catch(() => undefined);
    client = await connected(cluster.url);
    await client.query("INSERT INTO t (id, note) VALUES (3, 'three')");

    // A SIGKILL loses nothing committed: the server replays its WAL at the next start.
    await cluster.kill();
    await assert.rejects(client.query('SELECT 1'));
    await client.end().catch(() => undefined);
    await cluster.start();
    client = await connected(cluster.url);
    assert.deepEqual((await client.query('SELECT id FROM t ORDER BY id')).rows, [{ id: 1 }, { id: 2 }, { id: 3 }]);

    // The unix socket answers too.
    const local = new pg.Client({ host: cluster.socketDir, port: cluster.port, user: 'postgres', database: 'postgres' });
    await local.connect();
    t.after(() => local.end().catch(() => undefined));
    assert.equal((await local.query<{ n: string }>('SELECT count(*) AS n FROM t')).rows[0]?.n, '3');
    await local.end();
    await client.end();

    assert.ok(existsSync(cluster.socketDir));
    await cluster.stop();
    assert.equal(existsSync(cluster.socketDir), false, 'stop() removes the cluster');
    await cluster.stop();
  });
});
