/**
 * Brings a PostgreSQL database to the schema this collector knows (schema.ts), in one
 * transaction: PostgreSQL's DDL is transactional, so a migration that fails leaves the
 * database as it was. Several replicas starting at once take an advisory lock in turn; the
 * first migrates, the others find the work done.
 */
import { StoreError } from '../db.ts';
import type { PostgresDatabase } from '../sql/postgres.ts';
import { MIGRATION_LOCK, PG_MIGRATIONS } from './schema.ts';

export async function migratePostgres(db: PostgresDatabase): Promise<{ from: number; to: number }> {
  return db.session(async (client) => {
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK.toString()]);
      await client.query('CREATE TABLE IF NOT EXISTS patchwarden_schema (version integer NOT NULL)');
      const rows = (await client.query<{ version: number }>('SELECT version FROM patchwarden_schema')).rows;
      if (rows.length > 1) throw new StoreError(`patchwarden_schema has ${rows.length} rows, expected one: this database was changed by hand`);
      const from = rows[0]?.version ?? 0;
      if (from > PG_MIGRATIONS.length) {
        throw new StoreError(`database schema version ${from} is newer than this collector knows (${PG_MIGRATIONS.length}): upgrade the collector`);
      }
      for (let v = from; v < PG_MIGRATIONS.length; v++) await client.query(PG_MIGRATIONS[v] as string);
      if (rows.length === 0) await client.query('INSERT INTO patchwarden_schema (version) VALUES ($1)', [PG_MIGRATIONS.length]);
      else await client.query('UPDATE patchwarden_schema SET version = $1', [PG_MIGRATIONS.length]);
      await client.query('COMMIT');
      return { from, to: PG_MIGRATIONS.length };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err instanceof StoreError ? err : new StoreError(`cannot migrate the PostgreSQL schema: ${(err as Error).message}`, { cause: err });
    }
  });
}
