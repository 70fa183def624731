/**
 * `store migrate --from FILE.db --to postgres://USER@HOST[:PORT]/DB [--json]`: moves a SQLite
 * collector's store into an empty PostgreSQL database, verified table by table and audited
 * (collector/store/postgres/copy-from-sqlite.ts). Agents keep their keys and ids: none
 * enrolls again. The password comes from PGPASSWORD or ~/.pgpass, as for psql, so that it
 * is not on the command line for `ps` to show; a URL carrying one is never printed.
 */
import { UsageError } from '../../shared/errors.ts';
import { openDatabase } from '../store/db.ts';
import { copySqliteToPostgres } from '../store/postgres/copy-from-sqlite.ts';
import { PostgresDatabase } from '../store/sql/postgres.ts';
import { cliActor } from './actor.ts';
import { parse } from './args.ts';

type Io = { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };

/** The URL with any password left out: what the output and the audit may show. */
export function displayUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError('--to: expected a URL such as postgres://patchwarden@db.example.net/patchwarden');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new UsageError(`--to: expected a postgres:// URL, not ${url.protocol}`);
  }
  url.password = '';
  url.search = '';
  return url.toString();
}

async function migrate(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { from: { type: 'string' }, to: { type: 'string' }, json: { type: 'boolean', default: false } });
  if (values.from === undefined) throw new UsageError('--from FILE.db is required: the SQLite database of the collector to move');
  if (values.to === undefined) throw new UsageError('--to postgres://USER@HOST/DB is required: an empty PostgreSQL database');
  const shown = displayUrl(values.to);
  const src = openDatabase(values.from, { readonly: true });
  const dst = new PostgresDatabase({ url: values.to, max: 1 });
  try {
    const copies = await copySqliteToPostgres(src, dst, {
      actor: cliActor(),
      onTable: (t) => {
        if (!values.json) io.stderr.write(`  ${t.table.padEnd(22)} ${String(t.rows).padStart(9)} rows  sha256 ${t.sha256.slice(0, 16)}  verified\n`);
      },
    });
    const rows = copies.reduce((n, c) => n + c.rows, 0);
    if (values.json) io.stdout.write(JSON.stringify({ from: values.from, to: shown, tables: copies }) + '\n');
    else io.stdout.write(`copied ${copies.length} tables, ${rows} rows, from ${values.from} to ${shown}: every table read back with the same count and sha256; audited as store.migrate\n`);
    return 0;
  } finally {
    src.close();
    await dst.close();
  }
}

export function storeCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'migrate') return migrate(rest, io);
  return Promise.reject(new UsageError(`store ${sub ?? ''}: expected migrate`));
}
