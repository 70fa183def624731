/**
 * `exception add --db FILE --advisory ID [--package NAME] [--host ID] --owner WHO
 *  --reason WHY --expires DATE` and `exception list --db FILE [--json]`: accepted risks.
 * An accepted finding has an owner and an expiry, never forever: when it expires the
 * finding is open again and its due date applies.
 */
import * as z from 'zod';
import { UsageError } from '../../shared/errors.ts';
import { HOSTNAME, PACKAGE_NAME } from '../../shared/protocol.ts';
import { ADVISORY_ID } from '../feeds/types.ts';
import { openDatabase } from '../store/db.ts';
import { FindingHistoryStore } from '../store/history.ts';
import { DEFAULT_DB } from './feed.ts';
import { parse } from './args.ts';

type Io = { stdout: NodeJS.WritableStream };

const ExceptionInput = z.strictObject({
  advisory: z.string().max(256).regex(ADVISORY_ID, 'not an advisory id'),
  package: z.string().max(256).regex(PACKAGE_NAME, 'not a package name').optional(),
  host: z.string().max(253).regex(HOSTNAME, 'not a host name or machine id').optional(),
  owner: z.string().trim().min(1).max(256),
  reason: z.string().trim().min(1).max(4096),
  expires: z.iso.date().or(z.iso.datetime()),
});

function add(argv: string[], io: Io): number {
  const { values } = parse(argv, {
    db: { type: 'string', default: DEFAULT_DB },
    advisory: { type: 'string' },
    package: { type: 'string' },
    host: { type: 'string' },
    owner: { type: 'string' },
    reason: { type: 'string' },
    expires: { type: 'string' },
  });
  const { db: dbPath, ...input } = values;
  const r = ExceptionInput.safeParse(input);
  if (!r.success) throw new UsageError(`exception add: ${r.error.issues.map((i) => `--${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const now = new Date();
  const expires = r.data.expires.length === 10 ? `${r.data.expires}T23:59:59.999Z` : new Date(r.data.expires).toISOString();
  if (expires <= now.toISOString()) throw new UsageError(`exception add: --expires ${r.data.expires} is in the past`);
  const db = openDatabase(dbPath);
  try {
    const id = new FindingHistoryStore(db).addException({ ...r.data, expires }, now);
    io.stdout.write(`exception ${id}: ${r.data.advisory}${r.data.package === undefined ? '' : ` on ${r.data.package}`} accepted by ${r.data.owner} until ${expires}\n`);
  } finally {
    db.close();
  }
  return 0;
}

function list(argv: string[], io: Io): number {
  const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, json: { type: 'boolean', default: false } });
  const db = openDatabase(values.db, { readonly: true });
  try {
    const rows = db.prepare('SELECT id, advisory, package, host, owner, reason, expires, created_at AS createdAt FROM exceptions ORDER BY id').all();
    io.stdout.write(values.json ? JSON.stringify(rows, null, 2) + '\n' : rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length > 0 ? '\n' : ''));
  } finally {
    db.close();
  }
  return 0;
}

export function exceptionCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (sub === 'add') return Promise.resolve(add(rest, io));
    if (sub === 'list') return Promise.resolve(list(rest, io));
    throw new UsageError(`exception ${sub ?? ''}: expected add or list`);
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}
