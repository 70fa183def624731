/**
 * `reports import [--db FILE] [--json] PATH...`: report and results files from hosts that
 * cannot reach the collector (`patchwarden-agent report --out DIR`, `patchwarden-agent
 * apply`), each PATH a file or a directory of them. One line per file; a refused file
 * names its code and the rest still go in. Results move their rollouts on here, as a live
 * agent's do at the gateway.
 *
 * A collector serving the same database correlates the imported hosts at its next tick;
 * one that is not running does so when it starts.
 *
 * Exit codes: 0 every file stored, unchanged or already imported; 1 some file refused;
 * 2 usage.
 */
import { UsageError } from '../../shared/errors.ts';
import { reportFilesIn, type ReportFileOutcome } from '../services/airgap/air-gap.ts';
import { cliActor } from './actor.ts';
import { parse } from './args.ts';
import { DEFAULT_DB } from './feed.ts';
import { openCliCollector } from './rollout.ts';

type Io = { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };

/** Control characters in a name from the file system are shown escaped, never written to the terminal. */
function shown(text: string): string {
  return JSON.stringify(text).slice(1, -1);
}

export function outcomeLine(o: ReportFileOutcome): string {
  if (o.status === 'refused') return `refused    ${shown(o.file)}: ${shown(o.message)} (${o.code})`;
  const what = { stored: 'stored', unchanged: 'unchanged', duplicate: 'imported already' }[o.status];
  if (o.kind === 'results') {
    const rest = [o.known > 0 ? `${o.known} known already` : '', o.unknown > 0 ? `${o.unknown} for no instruction of ours` : ''].filter((x) => x !== '');
    return `${what.padEnd(10)} ${shown(o.file)}: ${o.recorded} result${o.recorded === 1 ? '' : 's'} of agent ${o.agentId} recorded${rest.length > 0 ? ` (${rest.join(', ')})` : ''}, written ${o.createdAt}`;
  }
  return `${what.padEnd(10)} ${shown(o.file)}: ${shown(o.hostname)} (agent ${o.agentId}), ${o.packages} packages, written ${o.createdAt}`;
}

async function importCmd(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, json: { type: 'boolean', default: false } }, true);
  if (positionals.length === 0) throw new UsageError('reports import needs at least one PATH (a report file or a directory of them)');
  const files = await reportFilesIn(positionals);
  const collector = await openCliCollector(values.db, io, false);
  let outcomes: ReportFileOutcome[];
  try {
    outcomes = await collector.airGap.importReports(files, cliActor());
  } finally {
    await collector.close();
  }
  if (values.json) io.stdout.write(JSON.stringify(outcomes, null, 2) + '\n');
  else for (const o of outcomes) (o.status === 'refused' ? io.stderr : io.stdout).write(outcomeLine(o) + '\n');
  const refused = outcomes.filter((o) => o.status === 'refused').length;
  if (!values.json) io.stdout.write(`${files.length} file${files.length === 1 ? '' : 's'}: ${outcomes.length - refused} imported or known, ${refused} refused\n`);
  return refused === 0 ? 0 : 1;
}

export async function reportsCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'import') return importCmd(rest, io);
  throw new UsageError(`reports ${sub ?? ''}: expected import`);
}
