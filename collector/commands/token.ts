/**
 * `token create [--db FILE] --uses N --ttl DURATION [--note TEXT] [--json]`: an enrollment
 * token for `patchwarden-agent enroll --token`. Printed once, alone on stdout (so a script
 * can capture it); the database keeps only its sha256. Written to the audit log.
 */
import { UsageError } from '../../shared/errors.ts';
import { openCollector } from '../open-collector.ts';
import { cliActor } from './actor.ts';
import { parse } from './args.ts';
import { DEFAULT_DB } from './feed.ts';

type Io = { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 };
/** A year: a token that outlives that is a standing credential, which an API token is for. */
export const MAX_TTL_MS = 366 * 86_400_000;
export const MAX_USES = 1_000_000;

/** `90s`, `30m`, `24h`, `7d`. */
export function parseDuration(text: string): number {
  const m = /^(\d{1,7})([smhd])$/.exec(text);
  const ms = m === null ? Number.NaN : Number(m[1]) * (UNITS[m[2] as string] as number);
  if (!(ms > 0) || ms > MAX_TTL_MS) throw new UsageError(`--ttl ${text}: expected a duration such as 30m, 24h or 7d, at most 366d`);
  return ms;
}

async function create(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, {
    db: { type: 'string', default: DEFAULT_DB },
    uses: { type: 'string' },
    ttl: { type: 'string' },
    note: { type: 'string' },
    json: { type: 'boolean', default: false },
  });
  if (values.uses === undefined || !/^\d{1,7}$/.test(values.uses) || Number(values.uses) < 1 || Number(values.uses) > MAX_USES) {
    throw new UsageError(`--uses N is required: how many agents may enroll with the token (1 to ${MAX_USES})`);
  }
  if (values.ttl === undefined) throw new UsageError('--ttl DURATION is required (for example 24h)');
  const ttlMs = parseDuration(values.ttl);
  if (values.note !== undefined && values.note.length > 1000) throw new UsageError('--note is at most 1000 characters');
  const uses = Number(values.uses);
  const collector = await openCollector({ store: { kind: 'sqlite', path: values.db } });
  const store = collector.store;
  try {
    const t = await store.tokens.create({ uses, ttlMs, createdBy: cliActor(), note: values.note ?? null });
    if (values.json) {
      io.stdout.write(JSON.stringify({ id: t.id, token: t.token, uses, expiresAt: t.expiresAt, note: values.note ?? null }) + '\n');
    } else {
      io.stdout.write(`${t.token}\n`);
      io.stderr.write(`enrollment token ${t.id}: ${uses} use${uses === 1 ? '' : 's'}, expires ${t.expiresAt}; shown once, only its hash is stored\n`);
    }
  } finally {
    await collector.close();
  }
  return 0;
}

export function tokenCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (sub === 'create') return create(rest, io);
    throw new UsageError(`token ${sub ?? ''}: expected create`);
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}
