/**
 * The store's behavioural suite on both engines (issue 12, collector/store/POSTGRES.md): a
 * test body written once runs against a real SQLite file and a throwaway PostgreSQL cluster.
 *
 *   onEachEngine('FleetSummaryStore', (engine) => {
 *     test('counts hosts', async (t) => {
 *       const { store, sql } = await engine.open(t);
 *       ...
 *     });
 *   });
 *
 * `open` gives a fresh, empty, migrated store and, on the same database, an executor of its
 * own for seeding rows a part under test does not write. Everything opened closes in
 * `t.after`; the cluster is started once per file, when the first test needs it, and stopped
 * after the engine's tests. Without Debian's postgresql the PostgreSQL half is skipped with
 * one line naming the package (a failure under CI=true).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { SqlDatabase } from '../../collector/store/sql/executor.ts';
import { sql } from '../../collector/store/sql/query.ts';
import { PostgresDatabase } from '../../collector/store/sql/postgres.ts';
import { SqliteDatabase } from '../../collector/store/sql/sqlite.ts';
import { type AsyncStore, openPostgresStore, openStore } from '../../collector/store/store.ts';
import { type Postgres, startPostgres } from './postgres.ts';
import { needs, TOOLS } from './system-tools.ts';

export interface OpenedEngine {
  store: AsyncStore;
  /** The same database through a connection of its own, for seeding and checking rows. */
  sql: SqlDatabase;
  /** Another store on the same database, as another process opens it (a CLI on the file, another replica); closed after the test. */
  readonly another: () => Promise<AsyncStore>;
}

export interface Engine {
  readonly name: 'sqlite' | 'postgres';
  open(t: TestContext): Promise<OpenedEngine>;
}

/** Runs `body` in a `describe` per engine, titled `${title} on ${engine}`. */
export function onEachEngine(title: string, body: (engine: Engine) => void): void {
  void describe(`${title} on SQLite`, () => {
    body({ name: 'sqlite', open: openSqlite });
  });
  void describe(`${title} on PostgreSQL`, { skip: needs(TOOLS.postgres) }, () => {
    let cluster: Promise<Postgres> | undefined;
    let databases = 0;
    after(async () => {
      if (cluster !== undefined) await (await cluster).stop();
    });
    body({
      name: 'postgres',
      open: async (t) => {
        const server = await (cluster ??= startPostgres());
        const name = `pw_test_${++databases}`;
        const admin = new pg.Client({ connectionString: server.url });
        await admin.connect();
        try {
          await admin.query(`CREATE DATABASE ${name}`);
        } finally {
          await admin.end();
        }
        const url = server.url.replace(/\/postgres$/, `/${name}`);
        const store = await openPostgresStore({ kind: 'postgres', url, maxConnections: 4 });
        const sql = new PostgresDatabase({ url, max: 2 });
        const others: AsyncStore[] = [];
        t.after(async () => {
          for (const other of others) await other.close();
          await sql.close();
          await store.close();
        });
        const another = async (): Promise<AsyncStore> => {
          const other = await openPostgresStore({ kind: 'postgres', url, maxConnections: 2 });
          others.push(other);
          return other;
        };
        return { store, sql, another };
      },
    });
  });
}

async function openSqlite(t: TestContext): Promise<OpenedEngine> {
  const dir = mkdtempSync(join(tmpdir(), 'pw-store-'));
  const path = join(dir, 'collector.db');
  const store = openStore({ kind: 'sqlite', path }).async;
  const sql = new SqliteDatabase(new Database(path));
  const others: AsyncStore[] = [];
  t.after(async () => {
    for (const other of others) await other.close();
    await sql.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const another = (): Promise<AsyncStore> => {
    const other = openStore({ kind: 'sqlite', path }).async;
    others.push(other);
    return Promise.resolve(other);
  };
  return Promise.resolve({ store, sql, another });
}

/** Makes the audit table refuse rows, so a change whose audit row fails can be seen to go with it; resolves with the undo. */
export async function blockAudit(engine: Engine['name'], db: SqlDatabase): Promise<() => Promise<void>> {
  if (engine === 'sqlite') {
    await db.run(sql("CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END"));
    return async () => {
      await db.run(sql('DROP TRIGGER no_audit'));
    };
  }
  await db.run(sql("CREATE FUNCTION no_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit unavailable'; END $$"));
  await db.run(sql('CREATE TRIGGER no_audit BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION no_audit()'));
  return async () => {
    await db.run(sql('DROP TRIGGER no_audit ON audit'));
  };
}

const auditRows = sql('SELECT actor, action, target, detail FROM audit ORDER BY id');

/** The audit log's rows, oldest first, as [actor, action, target, detail]. */
export async function audited(db: SqlDatabase): Promise<[string, string, string | null, string | null][]> {
  const rows = await db.all<{ actor: string; action: string; target: string | null; detail: string | null }>(auditRows);
  return rows.map((r) => [r.actor, r.action, r.target, r.detail]);
}
