import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { DATA_DIR } from '../../../shared/testing/data.ts';
import { startPostgres, type Postgres } from '../../../shared/testing/postgres.ts';
import { needs, TOOLS } from '../../../shared/testing/system-tools.ts';
import { importFeedPath } from '../../services/feeds/store-import.ts';
import { openDatabase, type Db } from '../db.ts';
import { MIGRATIONS } from '../migrations.ts';
import type { SqlExecutor } from '../sql/executor.ts';
import { PostgresDatabase } from '../sql/postgres.ts';
import { sql } from '../sql/query.ts';
import { SqliteDatabase } from '../sql/sqlite.ts';
import { migratePostgres } from './migrate.ts';
import { PG_MIGRATIONS, PG_ONLY_TABLES, ROWID_COLUMNS, SQLITE_SCHEMA_EQUIVALENT } from './schema.ts';
import { asyncAdvisories } from '../../../shared/testing/store-fixtures.ts';

const TYPE_OF: Readonly<Record<string, string>> = { TEXT: 'text', INTEGER: 'bigint', REAL: 'double precision' };

interface Column {
  name: string;
  type: string;
  notNull: boolean;
}

function sqliteTables(db: Db): Map<string, Column[]> {
  const names = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all() as string[];
  return new Map(
    names.map((t) => [
      t,
      (db.pragma(`table_info("${t}")`) as { name: string; type: string; notnull: number; pk: number }[]).map((c) => ({
        name: c.name,
        type: TYPE_OF[c.type] ?? `unmapped ${c.type}`,
        // A primary key column is NOT NULL in PostgreSQL whatever it says; SQLite allows NULL in a rowid table's TEXT key.
        notNull: c.notnull === 1 || c.pk > 0,
      })),
    ]),
  );
}

async function postgresTables(db: PostgresDatabase): Promise<Map<string, Column[]>> {
  const rows = await db.all<{ table_name: string; column_name: string; data_type: string; is_nullable: string }>(
    sql(
      `SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
       WHERE table_schema = 'public' AND table_name IN (SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE')
         AND table_name != 'patchwarden_schema' AND NOT table_name = ANY (?)
       ORDER BY table_name, ordinal_position`,
    ),
    [PG_ONLY_TABLES],
  );
  const out = new Map<string, Column[]>();
  for (const r of rows) {
    // Columns PostgreSQL has where SQLite keeps its hidden rowid (schema.ts says why).
    if (ROWID_COLUMNS[r.table_name] === r.column_name) continue;
    const cols = out.get(r.table_name) ?? [];
    cols.push({ name: r.column_name, type: r.data_type, notNull: r.is_nullable === 'NO' });
    out.set(r.table_name, cols);
  }
  return out;
}

const byName = (cols: readonly Column[]): Column[] => [...cols].sort((a, b) => a.name.localeCompare(b.name));

describe('the PostgreSQL schema', { skip: needs(TOOLS.postgres) }, () => {
  let cluster: Postgres;
  let pg: PostgresDatabase;
  let dir: string;
  let sqliteDb: Db;
  before(async () => {
    cluster = await startPostgres();
    pg = new PostgresDatabase({ url: cluster.url, max: 4 });
    dir = mkdtempSync(join(tmpdir(), 'pw-pg-schema-'));
    sqliteDb = openDatabase(join(dir, 'collector.db'));
  });
  after(async () => {
    sqliteDb.close();
    rmSync(dir, { recursive: true, force: true });
    await pg.close();
    await cluster.stop();
  });

  test('replicas starting together migrate once, and a second start changes nothing', async () => {
    const others = [1, 2].map(() => new PostgresDatabase({ url: cluster.url, max: 1 }));
    const results = await Promise.all([migratePostgres(pg), ...others.map((o) => migratePostgres(o))]);
    await Promise.all(others.map((o) => o.close()));
    assert.deepEqual(results.map((r) => r.from).sort(), [0, PG_MIGRATIONS.length, PG_MIGRATIONS.length]);
    assert.deepEqual(await migratePostgres(pg), { from: PG_MIGRATIONS.length, to: PG_MIGRATIONS.length });
  });

  test('is level with SQLite: the SQLite migrations it answers are all there are', () => {
    // A new SQLite migration needs its PostgreSQL counterpart in schema.ts, then this number moves.
    assert.equal(MIGRATIONS.length, SQLITE_SCHEMA_EQUIVALENT);
  });

  test('has every SQLite table with the same columns, types and NOT NULLs', async () => {
    const lite = sqliteTables(sqliteDb);
    const post = await postgresTables(pg);
    assert.deepEqual([...post.keys()].sort(), [...lite.keys()].sort());
    for (const [table, cols] of lite) assert.deepEqual(byName(post.get(table) ?? []), byName(cols), table);
  });

  test('has every SQLite index and view by name', async () => {
    const liteIndexes = sqliteDb.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL ORDER BY name").pluck().all() as string[];
    const pgIndexes = (
      await pg.all<{ indexname: string }>(sql("SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key' ORDER BY indexname"))
    ).map((r) => r.indexname);
    assert.deepEqual(pgIndexes, liteIndexes);
    const liteViews = sqliteDb.prepare("SELECT name FROM sqlite_schema WHERE type = 'view' ORDER BY name").pluck().all();
    const pgViews = (await pg.all<{ table_name: string }>(sql("SELECT table_name FROM information_schema.views WHERE table_schema = 'public' ORDER BY table_name"))).map((r) => r.table_name);
    assert.deepEqual(pgViews, liteViews);
  });

  test('its triggers and view answer as SQLite does, over real advisories', async () => {
    // Real OSV records (AlmaLinux 9) as the store keeps them (imported into a scratch SQLite
    // store), one withdrawn by hand: the view leaves it out on both.
    const scratch = openDatabase(join(dir, 'scratch.db'));
    const lines = gunzipSync(readFileSync(join(DATA_DIR, 'osv', 'almalinux9.osv.jsonl.gz'))).toString('utf8').split('\n').slice(0, 40).join('\n');
    const feedFile = join(dir, 'alma9.osv.jsonl');
    writeFileSync(feedFile, lines + '\n');
    await importFeedPath(asyncAdvisories(scratch), feedFile, { name: 'alma9' });
    const records = scratch.prepare('SELECT id, data FROM advisories ORDER BY id').all() as { id: string; data: string }[];
    scratch.close();
    const script: { q: ReturnType<typeof sql>; p: (string | number | null)[] }[] = [
      { q: sql("INSERT INTO feeds (source, kind) VALUES ('alma9', 'osv')"), p: [] },
      ...records.map((rec, i) => ({
        q: sql('INSERT INTO advisories (feed, source, id, hash, severity, data, withdrawn) VALUES (?, ?, ?, ?, ?, ?, ?)'),
        p: ['alma9', 'alma9', rec.id, `h${i}`, 'high', rec.data, i === 3 ? '2026-01-01' : null],
      })),
      { q: sql("UPDATE advisories SET severity = 'low' WHERE id = (SELECT min(id) FROM advisories)"), p: [] },
      { q: sql("DELETE FROM advisories WHERE id = (SELECT max(id) FROM advisories)"), p: [] },
      { q: sql("INSERT INTO kev (feed, cve, date_added, due_date, vendor_project, product) VALUES ('alma9', 'CVE-2024-0001', '2024-01-01', '2024-01-22', 'v', 'p')"), p: [] },
      { q: sql("INSERT INTO epss_meta (id, feed, model_version, score_date, rows, hash, imported_at) VALUES (1, 'alma9', 'v4', '2026-09-29', 1, 'h', 'now')"), p: [] },
      { q: sql("INSERT INTO epss (cve, score, percentile) VALUES ('CVE-2024-0001', 0.5, 0.9)"), p: [] },
      { q: sql('DELETE FROM epss_meta'), p: [] },
    ];
    const observe = async (db: SqlExecutor) => ({
      changes: await db.all(sql('SELECT kind, source, id FROM advisory_changes ORDER BY seq')),
      affected: await db.all(sql('SELECT source, id, ecosystem, package FROM affected ORDER BY source, id, ecosystem, package')),
      epss: await db.get<{ n: number }>(sql('SELECT count(*) AS n FROM epss')),
    });
    const lite = new SqliteDatabase(sqliteDb);
    for (const db of [lite, pg]) for (const s of script) await db.run(s.q, s.p);
    const [a, b] = [await observe(lite), await observe(pg)];
    assert.ok(a.changes.length > records.length && a.affected.length > records.length, 'the script exercised the triggers and the view');
    assert.deepEqual(b, a);
  });

  test('a database newer than this collector is refused, and left as it was', async () => {
    await pg.run(sql('UPDATE patchwarden_schema SET version = ?'), [PG_MIGRATIONS.length + 1]);
    await assert.rejects(migratePostgres(pg), { code: 'PW_ERR_STORE', message: /newer than this collector knows/ });
    assert.deepEqual(await pg.get(sql('SELECT version FROM patchwarden_schema')), { version: PG_MIGRATIONS.length + 1 });
    await pg.run(sql('UPDATE patchwarden_schema SET version = ?'), [PG_MIGRATIONS.length]);
  });
});
