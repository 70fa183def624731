/**
 * `exception add --db FILE --advisory ID [--package NAME] (--host ID | --fleet-wide) --owner WHO
 *  --reason WHY --expires DATE`, `exception remove --db FILE --id N` and `exception list
 * --db FILE [--json]`: accepted risks. An accepted finding has an owner and an expiry, never
 * forever: when it expires the finding is open again and its due date applies.
 *
 * Accepting a risk changes what the collector reports, so each add and remove is written to
 * the audit log (actor `cli:<unix user>`, in the same transaction) and the exception keeps
 * who added it beside the owner it names. A fleet-wide acceptance must be asked for by name.
 */
import * as z from 'zod';
import { UsageError } from '../../shared/errors.ts';
import { HOSTNAME, PACKAGE_NAME } from '../../shared/protocol.ts';
import { ADVISORY_ID } from '../domain/feeds/types.ts';
import { openCollector } from '../open-collector.ts';
import { cliActor } from './actor.ts';
import { DEFAULT_DB } from './feed.ts';
import { parse } from './args.ts';

type Io = { stdout: NodeJS.WritableStream };

/**
 * Who answers for the risk: a team or a mailbox, one token, so it can be matched, filtered
 * and shown without escaping (free text let an owner read like a log line or markup).
 */
export const OWNER = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;
// eslint-disable-next-line no-control-regex -- the point is to find them
const NO_CONTROL = /^[^\u0000-\u001f\u007f-\u009f]*$/;

const ExceptionInput = z.strictObject({
  advisory: z.string().max(256).regex(ADVISORY_ID, 'not an advisory id'),
  package: z.string().max(256).regex(PACKAGE_NAME, 'not a package name').optional(),
  host: z.string().max(253).regex(HOSTNAME, 'not a host name or machine id').optional(),
  owner: z.string().regex(OWNER, 'a team or person such as sec-team or alice@example.org: 1-128 letters, digits and ._@+-'),
  reason: z.string().trim().min(1).max(4096).regex(NO_CONTROL, 'no control characters (the reason is shown on terminals)'),
  expires: z.iso.date().or(z.iso.datetime()),
  'fleet-wide': z.boolean(),
});

async function add(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, {
    db: { type: 'string', default: DEFAULT_DB },
    advisory: { type: 'string' },
    package: { type: 'string' },
    host: { type: 'string' },
    owner: { type: 'string' },
    reason: { type: 'string' },
    expires: { type: 'string' },
    'fleet-wide': { type: 'boolean', default: false },
  });
  const { db: dbPath, ...input } = values;
  const r = ExceptionInput.safeParse(input);
  if (!r.success) throw new UsageError(`exception add: ${r.error.issues.map((i) => `--${i.path.join('.')}: ${i.message}`).join('; ')}`);
  if ((r.data.host === undefined) === !r.data['fleet-wide']) throw new UsageError('exception add: give --host ID for one host, or --fleet-wide to accept the risk on every host (not both)');
  const now = new Date();
  const expires = r.data.expires.length === 10 ? `${r.data.expires}T23:59:59.999Z` : new Date(r.data.expires).toISOString();
  if (expires <= now.toISOString()) throw new UsageError(`exception add: --expires ${r.data.expires} is in the past`);
  const { 'fleet-wide': _fleetWide, ...e } = r.data;
  const actor = cliActor();
  const collector = await openCollector({ store: { kind: 'sqlite', path: dbPath } });
  try {
    const id = await collector.exceptions.accept({ ...e, expires }, actor, now);
    io.stdout.write(`exception ${id}: ${e.advisory}${e.package === undefined ? '' : ` on ${e.package}`} ${e.host === undefined ? 'on every host' : `on ${e.host}`} accepted by ${e.owner} until ${expires}\n`);
  } finally {
    await collector.close();
  }
  return 0;
}

async function remove(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, id: { type: 'string' } });
  if (values.id === undefined || !/^[1-9][0-9]{0,15}$/.test(values.id)) throw new UsageError('exception remove: --id N is required (exception list shows the ids)');
  const id = Number(values.id);
  const now = new Date();
  const actor = cliActor();
  const collector = await openCollector({ store: { kind: 'sqlite', path: values.db } });
  try {
    const ended = await collector.exceptions.end(id, actor, now);
    if (ended === undefined) {
      io.stdout.write(`exception ${id}: no such exception, or it has expired already\n`);
      return 1;
    }
    io.stdout.write(`exception ${id}: ended (it was to expire ${ended}); its findings are open again\n`);
  } finally {
    await collector.close();
  }
  return 0;
}

async function list(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, json: { type: 'boolean', default: false } });
  const collector = await openCollector({ store: { kind: 'sqlite', path: values.db, readonly: true } });
  try {
    const rows = await collector.exceptions.list();
    io.stdout.write(values.json ? JSON.stringify(rows, null, 2) + '\n' : rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length > 0 ? '\n' : ''));
  } finally {
    await collector.close();
  }
  return 0;
}

export function exceptionCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (sub === 'add') return add(rest, io);
    if (sub === 'remove') return remove(rest, io);
    if (sub === 'list') return list(rest, io);
    throw new UsageError(`exception ${sub ?? ''}: expected add, remove or list`);
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}
