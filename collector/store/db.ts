/**
 * Opens the collector's SQLite database (better-sqlite3, WAL) and brings its schema up
 * to date. Every statement elsewhere is prepared once and reused.
 */
import Database from 'better-sqlite3';
import { PatchwardenError } from '../../shared/errors.ts';
import { MIGRATIONS } from './migrations.ts';

export type Db = Database.Database;

export class StoreError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_STORE', options);
  }
}

export function openDatabase(path: string, options: { readonly?: boolean } = {}): Db {
  const readonly = options.readonly ?? false;
  let db: Db | undefined;
  try {
    db = new Database(path, { readonly, fileMustExist: readonly });
    if (path !== ':memory:' && !readonly) db.pragma('journal_mode = WAL');
    // NORMAL is durable in WAL mode across process crashes (SIGKILL); only an OS crash or
    // power loss can drop the last transactions, and agents re-send unacknowledged reports.
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    if (readonly) checkVersion(db, path);
    else migrate(db);
    return db;
  } catch (err) {
    db?.close();
    if (err instanceof StoreError) throw err;
    throw new StoreError(`cannot open database ${path}: ${(err as Error).message}`, { cause: err });
  }
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
