/**
 * `agent revoke [--db FILE] ID`: the agent can no longer connect or report (4003
 * PW_ERR_AGENT_REVOKED). A running collector refuses its next report; its host and
 * history stay for the record. Written to the audit log.
 */
import { UsageError } from '../../shared/errors.ts';
import { openCollector } from '../open-collector.ts';
import { cliActor } from './actor.ts';
import { parse } from './args.ts';
import { DEFAULT_DB } from './feed.ts';

type Io = { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

async function revoke(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { db: { type: 'string', default: DEFAULT_DB } }, true);
  const [id, ...extra] = positionals;
  if (id === undefined || extra.length > 0) throw new UsageError('agent revoke takes one agent ID');
  if (!UUID.test(id)) throw new UsageError(`${id} is not an agent id (see the AGENT column of 'hosts')`);
  const collector = await openCollector({ store: { kind: 'sqlite', path: values.db } });
  const store = collector.store;
  try {
    const agent = await store.agents.get(id.toLowerCase());
    if (agent === undefined) {
      io.stderr.write(`patchwarden-collector: no agent ${id} is enrolled\n`);
      return 1;
    }
    if (!(await store.agents.revoke(agent.id, cliActor()))) {
      io.stdout.write(`agent ${agent.id} (${agent.hostname}) was revoked already at ${agent.revokedAt ?? '?'}\n`);
      return 0;
    }
    io.stdout.write(`agent ${agent.id} (${agent.hostname}) revoked\n`);
  } finally {
    await collector.close();
  }
  return 0;
}

export function agentCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (sub === 'revoke') return revoke(rest, io);
    throw new UsageError(`agent ${sub ?? ''}: expected revoke`);
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}
