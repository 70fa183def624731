/**
 * `api-token create [--db FILE] --name NAME --role viewer|operator|admin [--json]`,
 * `api-token revoke [--db FILE] --name NAME` and `api-token list [--db FILE] [--json]`:
 * the tokens of the HTTP API and the dashboard, for operators on the collector's machine.
 * The token is printed once, at creation; the database keeps only its sha256. Creating
 * and revoking are written to the audit log with the actor `cli:<unix user>`.
 */
import { UsageError } from '../../shared/errors.ts';
import { openCollector } from '../open-collector.ts';
import { ROLES, type Role, TOKEN_NAME } from '../services/access/api-tokens.ts';
import { cliActor } from './actor.ts';
import { parse } from './args.ts';
import { DEFAULT_DB } from './feed.ts';

type Io = { stdout: NodeJS.WritableStream };

function checkName(name: string | undefined): string {
  if (name === undefined) throw new UsageError('--name NAME is required');
  if (!TOKEN_NAME.test(name)) throw new UsageError(`--name ${JSON.stringify(name)}: 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit`);
  return name;
}

async function create(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, {
    db: { type: 'string', default: DEFAULT_DB },
    name: { type: 'string' },
    role: { type: 'string' },
    json: { type: 'boolean', default: false },
  });
  const name = checkName(values.name);
  if (values.role === undefined || !(ROLES as readonly string[]).includes(values.role)) throw new UsageError(`--role must be one of ${ROLES.join(', ')}`);
  const collector = await openCollector({ store: { kind: 'sqlite', path: values.db } });
  try {
    const tokens = collector.apiTokens;
    if ((await tokens.byName(name)) !== undefined) throw new UsageError(`an API token named ${name} exists already (names stay taken after revocation, so the audit log stays unambiguous)`);
    const { token, record } = await tokens.create({ name, role: values.role as Role, createdBy: cliActor() });
    if (values.json) io.stdout.write(JSON.stringify({ ...record, token }) + '\n');
    else io.stdout.write(`${token}\n`);
  } finally {
    await collector.close();
  }
  return 0;
}

async function revoke(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, name: { type: 'string' } });
  const name = checkName(values.name);
  const collector = await openCollector({ store: { kind: 'sqlite', path: values.db } });
  try {
    const tokens = collector.apiTokens;
    const t = await tokens.byName(name);
    if (t === undefined) throw new UsageError(`no API token is named ${name}`);
    if (!(await tokens.revoke(name, cliActor()))) {
      io.stdout.write(`API token ${name} was revoked already at ${t.revokedAt ?? '?'}\n`);
      return 0;
    }
    io.stdout.write(`API token ${name} (${t.role}) revoked\n`);
  } finally {
    await collector.close();
  }
  return 0;
}

async function list(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, json: { type: 'boolean', default: false } });
  const collector = await openCollector({ store: { kind: 'sqlite', path: values.db } });
  try {
    const rows = await collector.apiTokens.list();
    if (values.json) io.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    else for (const r of rows) io.stdout.write(`${r.name.padEnd(24)} ${r.role.padEnd(8)} created ${r.createdAt} by ${r.createdBy}${r.revokedAt === null ? '' : `  REVOKED ${r.revokedAt}`}\n`);
  } finally {
    await collector.close();
  }
  return 0;
}

export function apiTokenCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (sub === 'create') return create(rest, io);
    if (sub === 'revoke') return revoke(rest, io);
    if (sub === 'list') return list(rest, io);
    throw new UsageError(`api-token ${sub ?? ''}: expected create, revoke or list`);
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}
