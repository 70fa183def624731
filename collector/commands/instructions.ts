/**
 * `instructions export [--db FILE] --out DIR [--agent ID]... [--json]`: the pending
 * instructions of hosts that cannot reach the collector, one signed file per agent, for
 * `patchwarden-agent apply --from DIR` (collector/services/airgap/instruction-export.ts).
 *
 * Exit codes: 0 written (or nothing pending); 2 usage.
 */
import { requireDirectory } from '../../shared/cli-args.ts';
import { UsageError } from '../../shared/errors.ts';
import { UUID } from './agent.ts';
import { cliActor } from './actor.ts';
import { parse } from './args.ts';
import { DEFAULT_DB } from './feed.ts';
import { openCollector } from '../open-collector.ts';

type Io = { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };

async function exportCmd(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, out: { type: 'string' }, agent: { type: 'string', multiple: true }, json: { type: 'boolean', default: false } });
  if (values.out === undefined) throw new UsageError('instructions export needs --out DIR');
  await requireDirectory('--out', values.out);
  for (const a of values.agent ?? []) if (!UUID.test(a)) throw new UsageError(`--agent ${a} is not an agent id (see the AGENT column of 'hosts')`);
  const agentIds = values.agent?.map((a) => a.toLowerCase());
  // The key is read first: without it nothing can be signed, and the database is not opened.
  const collector = await openCollector({ store: { kind: 'sqlite', path: values.db }, key: 'read' });
  try {
    const files = await collector.airGap.exportInstructions(values.out, agentIds, cliActor());
    if (values.json) io.stdout.write(JSON.stringify(files, null, 2) + '\n');
    else {
      for (const f of files) io.stdout.write(`wrote ${f.file}: ${f.instructions} instruction${f.instructions === 1 ? '' : 's'} for agent ${f.agentId}\n`);
      if (files.length === 0) io.stdout.write('no instructions are waiting for these agents\n');
    }
    return 0;
  } finally {
    await collector.close();
  }
}

export async function instructionsCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'export') return exportCmd(rest, io);
  throw new UsageError(`instructions ${sub ?? ''}: expected export`);
}
