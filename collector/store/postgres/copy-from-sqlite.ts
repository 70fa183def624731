/**
 * `patchwarden-collector store migrate`: an existing SQLite collector's whole store (agents
 * with their keys, tokens, reports, findings history, rollouts, outbox, audit, feeds) copied
 * into an empty PostgreSQL database, so a site moves to several replicas without enrolling
 * any agent again (issue 12).
 *
 * All or nothing: one PostgreSQL transaction holds the copy, and it commits only when every
 * table's row count and checksum read back from PostgreSQL equal SQLite's; otherwise it rolls
 * back and the target stays empty. The SQLite side is read inside one read transaction, a
 * consistent snapshot even while a collector still writes to it (stop it first all the
 * same: what it writes after the snapshot is not copied).
 *
 * Not copied: `replicas`, the liveness of the collector processes that served the SQLite
 * file (store/replicas.ts): none of them serves the new store. Their agents' connection
 * marks are cleared after the copy is verified, as a starting SQLite collector would.
 *
 * Checksums: sha256 over each table's rows in primary-key order, each row as the JSON array
 * of its values. Text keys are compared in byte order on both sides (SQLite's BINARY
 * collation; `COLLATE "C"` in PostgreSQL), so the orders and the sums agree.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { PatchwardenError } from '../../../shared/errors.ts';
import type { Db } from '../db.ts';
import type { PostgresDatabase } from '../sql/postgres.ts';
import { migratePostgres } from './migrate.ts';
import { ROWID_COLUMNS } from './schema.ts';

/** The target already holds a collector's data: a copy would mix two stores. */
export class StoreNotEmptyError extends PatchwardenError {
  constructor(message: string) {
    super(message, 'PW_ERR_STORE_NOT_EMPTY');
  }
}

/** A table whose copy did not read back as it was written: the copy was rolled back. */
export class StoreCopyMismatchError extends PatchwardenError {
  constructor(message: string) {
    super(message, 'PW_ERR_STORE_COPY_MISMATCH');
  }
}

export interface TableCopy {
  table: string;
  rows: number;
  sha256: string;
}

interface Column {
  name: string;
  /** PostgreSQL array type for unnest. */
  arrayType: string;
  /** Part of the primary key, at this position (1-based), or 0. */
  pk: number;
  text: boolean;
}

interface Table {
  name: string;
  columns: Column[];
  /** SQLite's rowid, copied into this PostgreSQL column (schema.ts ROWID_COLUMNS). */
  rowidAs: string | null;
}

const ARRAY_TYPE: Readonly<Record<string, string>> = { TEXT: 'text[]', INTEGER: 'int8[]', REAL: 'float8[]' };
/** Rows per INSERT, and bytes: inventory contents are hundreds of KB each. */
const BATCH_ROWS = 500;
const BATCH_BYTES = 16 * 1024 * 1024;
const FETCH_ROWS = 1000;

const quote = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/** Tables of what is running, not of what the collector knows: left behind by a move (see the top of this file). */
export const NOT_COPIED: readonly string[] = ['replicas'];

/** The store's tables, each after the tables it references. */
function tablesOf(src: Db): Table[] {
  const names = (src.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all() as string[]).filter(
    (n) => !NOT_COPIED.includes(n),
  );
  const deps = new Map(
    names.map((n) => [n, new Set((src.pragma(`foreign_key_list(${quote(n)})`) as { table: string }[]).map((f) => f.table).filter((t) => t !== n))]),
  );
  const ordered: string[] = [];
  const visit = (n: string, path: Set<string>): void => {
    if (ordered.includes(n)) return;
    if (path.has(n)) throw new Error(`foreign keys form a cycle through ${n}`);
    path.add(n);
    for (const d of deps.get(n) ?? []) visit(d, path);
    path.delete(n);
    ordered.push(n);
  };
  for (const n of names) visit(n, new Set());
  return ordered.map((name) => ({
    name,
    rowidAs: ROWID_COLUMNS[name] ?? null,
    columns: (src.pragma(`table_info(${quote(name)})`) as { name: string; type: string; pk: number }[]).map((c) => {
      const arrayType = ARRAY_TYPE[c.type];
      if (arrayType === undefined) throw new Error(`${name}.${c.name} has SQLite type ${c.type}, which store migrate does not know`);
      return { name: c.name, arrayType, pk: c.pk, text: c.type === 'TEXT' };
    }),
  }));
}

/** `SELECT` of a table's rows in primary-key order (rowid order where it has none), the same on both sides. */
function selectAll(t: Table, dialect: 'sqlite' | 'postgres'): string {
  const cols = t.columns.map((c) => quote(c.name));
  const rowid = t.rowidAs === null ? [] : [dialect === 'sqlite' ? `rowid AS ${quote(t.rowidAs)}` : quote(t.rowidAs)];
  const keys = t.columns.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk);
  const order =
    keys.length > 0
      ? keys.map((c) => (c.text && dialect === 'postgres' ? `${quote(c.name)} COLLATE "C"` : quote(c.name)))
      : [dialect === 'sqlite' ? 'rowid' : quote(t.rowidAs ?? 'ctid')];
  return `SELECT ${[...rowid, ...cols].join(', ')} FROM ${quote(t.name)} ORDER BY ${order.join(', ')}`;
}

function rowText(row: Record<string, unknown>): string {
  return JSON.stringify(Object.values(row));
}

/** Row count and checksum of a table in SQLite, streamed. */
function sqliteSum(src: Db, t: Table): TableCopy {
  const hash = createHash('sha256');
  let rows = 0;
  for (const row of src.prepare(selectAll(t, 'sqlite')).iterate() as IterableIterator<Record<string, unknown>>) {
    hash.update(rowText(row)).update('\n');
    rows++;
  }
  return { table: t.name, rows, sha256: hash.digest('hex') };
}

/** The same in PostgreSQL, through a cursor inside the copy's transaction (it sees the rows just written). */
async function postgresSum(client: pg.PoolClient, t: Table): Promise<TableCopy> {
  const hash = createHash('sha256');
  let rows = 0;
  await client.query(`DECLARE pw_verify NO SCROLL CURSOR FOR ${selectAll(t, 'postgres')}`);
  for (;;) {
    const page = await client.query<Record<string, unknown>>(`FETCH ${FETCH_ROWS} FROM pw_verify`);
    for (const row of page.rows) hash.update(rowText(row)).update('\n');
    rows += page.rows.length;
    if (page.rows.length < FETCH_ROWS) break;
  }
  await client.query('CLOSE pw_verify');
  return { table: t.name, rows, sha256: hash.digest('hex') };
}

async function copyTable(src: Db, client: pg.PoolClient, t: Table): Promise<void> {
  const names = [...(t.rowidAs === null ? [] : [t.rowidAs]), ...t.columns.map((c) => c.name)];
  const types = [...(t.rowidAs === null ? [] : ['int8[]']), ...t.columns.map((c) => c.arrayType)];
  const text = `INSERT INTO ${quote(t.name)} (${names.map(quote).join(', ')}) SELECT * FROM unnest(${types.map((ty, i) => `$${i + 1}::${ty}`).join(', ')})`;
  let batch: unknown[][] = names.map(() => []);
  let count = 0;
  let bytes = 0;
  const flush = async (): Promise<void> => {
    if (count === 0) return;
    await client.query(text, batch);
    batch = names.map(() => []);
    count = 0;
    bytes = 0;
  };
  for (const row of src.prepare(selectAll(t, 'sqlite')).iterate() as IterableIterator<Record<string, unknown>>) {
    names.forEach((n, i) => {
      const v = row[n];
      (batch[i] as unknown[]).push(v);
      if (typeof v === 'string') bytes += v.length;
    });
    count++;
    if (count >= BATCH_ROWS || bytes >= BATCH_BYTES) await flush();
  }
  await flush();
}

/**
 * Copies every table of `src` (a SQLite store at the schema this collector knows) into `dst`
 * (migrated here; it must hold no rows), verifies each, and commits with one audit row
 * (`store.migrate` by `actor`). Returns each table's count and checksum. `onTable` reports
 * progress.
 */
export async function copySqliteToPostgres(
  src: Db,
  dst: PostgresDatabase,
  options: { actor: string; now?: Date; onTable?: (t: TableCopy) => void },
): Promise<TableCopy[]> {
  await migratePostgres(dst);
  const tables = tablesOf(src);
  return dst.session(async (client) => {
    await client.query('BEGIN');
    // A snapshot of the source: a serving collector's later writes do not tear the copy.
    src.exec('BEGIN');
    try {
      for (const t of tables) {
        const r = await client.query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM ${quote(t.name)}) AS any`);
        if (r.rows[0]?.any === true) {
          throw new StoreNotEmptyError(`the PostgreSQL database already holds ${t.name} rows: store migrate copies into an empty database only (make a new one, or drop this one's tables)`);
        }
      }
      // The change-log triggers would log every copied advisory as new; the log is copied as it was.
      for (const t of tables) await client.query(`ALTER TABLE ${quote(t.name)} DISABLE TRIGGER USER`);
      const copies: TableCopy[] = [];
      for (const t of tables) {
        await copyTable(src, client, t);
        const want = sqliteSum(src, t);
        const got = await postgresSum(client, t);
        if (got.rows !== want.rows || got.sha256 !== want.sha256) {
          throw new StoreCopyMismatchError(
            `${t.name}: SQLite has ${want.rows} rows (sha256 ${want.sha256}), PostgreSQL read back ${got.rows} (sha256 ${got.sha256}); nothing was committed`,
          );
        }
        copies.push(want);
        options.onTable?.(want);
      }
      for (const t of tables) await client.query(`ALTER TABLE ${quote(t.name)} ENABLE TRIGGER USER`);
      // Verified as they were; now no replica of the new store holds any connection.
      await client.query('UPDATE agents SET connected = 0, connected_by = NULL WHERE connected = 1 OR connected_by IS NOT NULL');
      // Identity columns continue after the copied ids, as SQLite's rowids would.
      const identities = await client.query<{ table_name: string; column_name: string }>(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' AND is_identity = 'YES'",
      );
      for (const c of identities.rows) {
        await client.query(
          `SELECT setval(pg_get_serial_sequence($1, $2), coalesce((SELECT max(${quote(c.column_name)}) FROM ${quote(c.table_name)}), 0) + 1, false)`,
          [c.table_name, c.column_name],
        );
      }
      const detail = JSON.stringify({ tables: Object.fromEntries(copies.map((c) => [c.table, { rows: c.rows, sha256: c.sha256 }])) });
      await client.query('INSERT INTO audit (at, actor, action, target, detail, uid) VALUES ($1, $2, $3, $4, $5, $6)', [
        (options.now ?? new Date()).toISOString(),
        options.actor,
        'store.migrate',
        'postgres',
        detail,
        process.getuid?.() ?? null,
      ]);
      await client.query('COMMIT');
      return copies;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      if (src.inTransaction) src.exec('COMMIT');
    }
  });
}
