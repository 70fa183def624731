/**
 * Opens the collector's SQLite database (better-sqlite3, WAL) and brings its schema up
 * to date. Every statement elsewhere is prepared once and reused.
 */
import { closeSync, fchmodSync, openSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { PatchwardenError } from '../../shared/errors.ts';
import { MIGRATIONS } from './migrations.ts';

export type Db = Database.Database;

export class StoreError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_STORE', options);
  }
}

/**
 * An existing file of 0 bytes given as the database: SQLite would silently make a new,
 * empty store in it, and a collector pointed at a truncated, mistyped or not-yet-restored
 * file would start serving as if it had no hosts. Refused unless asked to initialise.
 */
export class EmptyDatabaseFileError extends PatchwardenError {
  constructor(path: string) {
    super(
      `${path} is an empty file, not a patchwarden database (a truncated file or a restore that did not finish?): ` +
        'restore the real database, remove the file, or run `patchwarden-collector serve --init --db FILE` to make a new database in it',
      'PW_ERR_STORE_EMPTY_FILE',
    );
  }
}

/** The database file, its -wal and its -shm hold every inventory and token hash: owner only. */
export const DB_FILE_MODE = 0o600;

/**
 * Makes a missing database file 0600 before SQLite opens it, whatever the umask: SQLite
 * creates files 0644 (less the umask) and gives the -wal and -shm files the database
 * file's mode, so all three follow this one. Refuses an existing empty file unless
 * `init`. Returns whether the file was made here.
 */
export function prepareDatabaseFile(path: string, init: boolean): boolean {
  if (path === ':memory:' || path === '') return false;
  let fd: number;
  try {
    fd = openSync(path, 'wx', DB_FILE_MODE);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new StoreError(`cannot create database ${path}: ${(err as Error).message}`, { cause: err });
    if (!init) refuseEmpty(path);
    return false;
  }
  try {
    fchmodSync(fd, DB_FILE_MODE);
  } finally {
    closeSync(fd);
  }
  return true;
}

export interface OpenOptions {
  readonly?: boolean;
  /** Make a new database in an existing empty file (`serve --init`); without it such a file is refused. */
  init?: boolean;
}

export function openDatabase(path: string, options: OpenOptions = {}): Db {
  const readonly = options.readonly ?? false;
  let db: Db | undefined;
  try {
    if (!readonly) prepareDatabaseFile(path, options.init ?? false);
    else if (path !== ':memory:') refuseEmpty(path);
    db = new Database(path, { readonly, fileMustExist: readonly });
    if (path !== ':memory:' && !readonly) db.pragma('journal_mode = WAL');
    // NORMAL is durable in WAL mode across process crashes (SIGKILL); only an OS crash or
    // power loss can drop the last transactions, and agents re-send unacknowledged reports.
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    // 64 MiB of page cache (SQLite's default is 2 MiB): a feed change's fan-out reads and
    // writes every content's timeline, and with 2 MiB each page came from the OS again
    // (npm run bench: fanout, 1.1 ms a content to read its changed rows). Memory only when used.
    db.pragma('cache_size = -65536');
    if (readonly) checkVersion(db, path);
    else migrate(db);
    return db;
  } catch (err) {
    db?.close();
    if (err instanceof PatchwardenError) throw err;
    throw new StoreError(`cannot open database ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Also for a read-only open, which would only say "schema version 0". stat, not open: a FIFO would block an open. */
function refuseEmpty(path: string): void {
  let st;
  try {
    st = statSync(path);
  } catch {
    return; // Missing or unreadable: SQLite's own error names it.
  }
  if (st.isFile() && st.size === 0) throw new EmptyDatabaseFileError(path);
}

/** A read-only open cannot migrate, and queries against another schema fail obscurely. */
function checkVersion(db: Db, path: string): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current !== MIGRATIONS.length) {
    throw new StoreError(
      current > MIGRATIONS.length
        ? `database ${path} has schema version ${current}, newer than this collector knows (${MIGRATIONS.length}): upgrade the collector`
        : `database ${path} has schema version ${current}, this collector needs ${MIGRATIONS.length}: open it once read-write (feed import or feed sync) to migrate it`,
    );
  }
}

export function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new StoreError(`database schema version ${current} is newer than this collector knows (${MIGRATIONS.length}): upgrade the collector`);
  }
  if (current === MIGRATIONS.length) return;
  // Off while migrating, as SQLite's table-rebuild procedure needs (the pragma cannot change
  // inside a transaction); each migration is checked before it commits instead.
  const enforced = db.pragma('foreign_keys', { simple: true }) === 1;
  db.pragma('foreign_keys = OFF');
  try {
    for (let v = current; v < MIGRATIONS.length; v++) {
      const sql = MIGRATIONS[v] as string;
      db.transaction(() => {
        db.exec(sql);
        const broken = db.pragma('foreign_key_check') as unknown[];
        if (broken.length > 0) throw new StoreError(`migration ${v + 1} would leave ${broken.length} broken references: ${JSON.stringify(broken.slice(0, 3))}`);
        db.pragma(`user_version = ${v + 1}`);
      })();
    }
  } finally {
    if (enforced) db.pragma('foreign_keys = ON');
  }
}
