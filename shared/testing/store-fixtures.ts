/**
 * Test helpers for the store. Tests only.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { parseOsv } from '../../collector/domain/feeds/osv.ts';
import { type Advisory, FeedReport } from '../../collector/domain/feeds/types.ts';
import { openDatabase, type Db } from '../../collector/store/db.ts';
import type { SqlDatabase, SqlExecutor } from '../../collector/store/sql/executor.ts';
import { type Query, sql } from '../../collector/store/sql/query.ts';
import { type AsyncStore, type Store, storeOn } from '../../collector/store/store.ts';
import { generateKeyPair } from '../signing.ts';
import { readData } from './data.ts';

/** A migrated database file in a new temp directory; closed and removed after the test. */
export async function tempDatabase(t: TestContext, name: string): Promise<{ db: Db; path: string }> {
  const dir = await mkdtemp(join(tmpdir(), `pw-${name}-`));
  const path = join(dir, 'c.db');
  const db = openDatabase(path);
  t.after(async () => {
    if (db.open) db.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { db, path };
}

/** The asynchronous store's advisories over a connection a test holds (feed import and sync take it). */
export function asyncAdvisories(db: Db): AsyncStore['advisories'] {
  return storeOn(db).async.advisories;
}

/** The asynchronous store's EPSS scores over a connection a test holds. */
export function asyncEpss(db: Db): AsyncStore['epss'] {
  return storeOn(db).async.epss;
}

let almaLines: string[] | undefined;
/** One real record of the AlmaLinux 9 OSV export, parsed (the feed-import tests' advisories). */
export function realAlma9Osv(id: string): Advisory {
  almaLines ??= readData('osv', 'almalinux9.osv.jsonl.gz').split('\n');
  const line = almaLines.find((l) => l.includes(`"id":"${id}"`));
  assert.ok(line !== undefined, `${id} is in almalinux9.osv.jsonl.gz`);
  return parseOsv(JSON.parse(line), new FeedReport(), id);
}

/** The clock the fleet store tests run at. */
export const FLEET_NOW = new Date('2026-11-26T18:00:00.000Z');

/** Enrolls an agent with a new key, at FLEET_NOW; returns its id. */
export function enrollAgent(store: AsyncStore, hostname = 'web-1'): Promise<string> {
  return store.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname, machineId: null, tokenId: null }, FLEET_NOW);
}

const COUNTED = ['agents', 'audit', 'enrollment_tokens', 'hosts', 'inventory_contents', 'report_imports', 'reports'] as const;
const COUNTS = new Map(COUNTED.map((table) => [table, sql(`SELECT count(*) AS n FROM ${table}`)]));

/** Rows in a table, on either engine (OpenedEngine.sql). */
export async function rowCount(db: SqlDatabase, table: (typeof COUNTED)[number]): Promise<number> {
  return (await db.get<{ n: number }>(COUNTS.get(table) as Query))?.n ?? 0;
}

/** Row counts and a hash of every row of the data tables, in key order (feeds left out: checked_at moves). */
export function dumpStore(db: Db): { advisories: number; affected: number; kev: number; sha256: string } {
  const h = createHash('sha256');
  const counts = { advisories: 0, affected: 0, kev: 0 };
  const queries = {
    advisories: 'SELECT * FROM advisories ORDER BY source, id',
    affected: 'SELECT * FROM affected ORDER BY source, id, ecosystem, package',
    kev: 'SELECT * FROM kev ORDER BY feed, cve',
  } as const;
  for (const [table, sql] of Object.entries(queries) as [keyof typeof queries, string][]) {
    for (const row of db.prepare(sql).iterate()) {
      h.update(JSON.stringify(row) + '\n');
      counts[table]++;
    }
  }
  return { ...counts, sha256: h.digest('hex') };
}

const DUMPED = {
  advisories: sql('SELECT * FROM advisories ORDER BY source, id'),
  affected: sql('SELECT * FROM affected ORDER BY source, id, ecosystem, package'),
  kev: sql('SELECT * FROM kev ORDER BY feed, cve'),
} as const;

/** dumpStore through an executor, on either engine (a hash compares with one of the same engine only). */
export async function dumpRows(ex: SqlExecutor): Promise<ReturnType<typeof dumpStore>> {
  const h = createHash('sha256');
  const counts = { advisories: 0, affected: 0, kev: 0 };
  for (const [table, query] of Object.entries(DUMPED) as [keyof typeof DUMPED, (typeof DUMPED)[keyof typeof DUMPED]][]) {
    for (const row of await ex.all(query)) {
      h.update(JSON.stringify(row) + '\n');
      counts[table]++;
    }
  }
  return { ...counts, sha256: h.digest('hex') };
}

/** dumpStore of a database file, opened read-only for the moment. */
export function dumpStoreFile(path: string): ReturnType<typeof dumpStore> {
  const conn = openDatabase(path, { readonly: true });
  try {
    return dumpStore(conn);
  } finally {
    conn.close();
  }
}

/** A SQLite collector's synchronous side (its connection), for fixtures that read the file: refused on PostgreSQL. */
export function sqliteSide(collector: { readonly sqlite: Store | null }): Store {
  if (collector.sqlite === null) throw new Error('this fixture needs a SQLite store');
  return collector.sqlite;
}
