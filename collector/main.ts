/**
 * `patchwarden-collector`: the entry point bundled into dist/collector.js.
 */
import { UsageError, errorMessage } from '../shared/errors.ts';
import { AGENT_VERSION } from '../shared/version.ts';
import { apiTokenCommand } from './commands/api-token.ts';
import { exceptionCommand } from './commands/exception.ts';
import { feedCommand } from './commands/feed.ts';
import { scanCommand } from './commands/scan.ts';
import { serveCommand } from './commands/serve.ts';
import { tokenCommand } from './commands/token.ts';
import { hostsCommand } from './commands/hosts.ts';
import { agentCommand } from './commands/agent.ts';
import { vercmpCommand } from './commands/vercmp-cli.ts';
import { rolloutCommand } from './commands/rollout.ts';
import { reportsCommand } from './commands/reports.ts';
import { instructionsCommand } from './commands/instructions.ts';
import { storeCommand } from './commands/store.ts';

const USAGE = `patchwarden-collector ${AGENT_VERSION}

usage:
  patchwarden-collector scan --inventory FILE [--feed PATH...] [--db FILE [--record]] [--json|--csv] [--sort package|fix-first] [--policy FILE] [--now ISO]
  patchwarden-collector feed import [--db FILE] [--name NAME] [--trust=KEY]... PATH...   (upstream feed files, or bundles from feed export)
  patchwarden-collector feed export [--db FILE] --out FILE [--feed NAME]...   (a signed bundle for an offline collector)
  patchwarden-collector feed sync [--db FILE] [--config FILE]   (no config: the catalogue feeds the enrolled hosts need, and KEV)
  patchwarden-collector feed list [--db FILE] [--json]
  patchwarden-collector exception add [--db FILE] --advisory ID [--package NAME] (--host ID | --fleet-wide) --owner WHO --reason WHY --expires DATE
  patchwarden-collector exception remove [--db FILE] --id N
  patchwarden-collector exception list [--db FILE] [--json]
  patchwarden-collector api-token create [--db FILE] --name NAME --role viewer|operator|admin [--json]   (prints the token once)
  patchwarden-collector api-token revoke [--db FILE] --name NAME
  patchwarden-collector api-token list [--db FILE] [--json]
  patchwarden-collector serve [--db FILE] [--init] [--listen HOST:PORT] [--config FILE] [--tls-cert FILE --tls-key FILE]
  patchwarden-collector token create [--db FILE] --uses N --ttl 24h [--note TEXT] [--json]   (prints the enrollment token once)
  patchwarden-collector hosts [--db FILE] [--json] [--policy FILE]
  patchwarden-collector agent revoke [--db FILE] ID
  patchwarden-collector reports import [--db FILE] [--json] PATH...   (report and result files from patchwarden-agent report/apply)
  patchwarden-collector instructions export [--db FILE] --out DIR [--agent ID]... [--json]   (for patchwarden-agent apply)
  patchwarden-collector rollout create [--db FILE] --plan FILE.json [--actor NAME] [--json]   (prints the new rollout's id)
  patchwarden-collector rollout preview [--db FILE] (--plan FILE.json | --id ID) [--json]
  patchwarden-collector rollout list [--db FILE] [--json]
  patchwarden-collector rollout show [--db FILE] --id ID [--json]
  patchwarden-collector rollout submit|approve|pause|resume|cancel [--db FILE] --id ID [--actor NAME] [--json]
  patchwarden-collector store migrate --from FILE.db --to postgres://USER@HOST/DB [--json]   (password from PGPASSWORD or ~/.pgpass)
  patchwarden-collector vercmp --scheme deb|rpm|apk   (A<TAB>B lines on stdin)
  patchwarden-collector version

exit codes: scan: 0 no open finding is overdue, 1 one is, 2 error; others: 0 ok, 1 failed, 2 usage
`;

export type Command = (argv: string[], io: { stdin: NodeJS.ReadableStream; stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream }) => Promise<number>;

const commands: Record<string, Command> = {
  scan: scanCommand,
  feed: feedCommand,
  exception: exceptionCommand,
  'api-token': apiTokenCommand,
  serve: serveCommand,
  token: tokenCommand,
  hosts: hostsCommand,
  agent: agentCommand,
  vercmp: vercmpCommand,
  rollout: rolloutCommand,
  reports: reportsCommand,
  instructions: instructionsCommand,
  store: storeCommand,
  version: (_argv, io) => {
    io.stdout.write(`${AGENT_VERSION}\n`);
    return Promise.resolve(0);
  },
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(USAGE);
    return name === undefined ? 2 : 0;
  }
  try {
    const command = commands[name];
    if (command === undefined) throw new UsageError(`unknown command '${name}'`);
    return await command(rest, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
  } catch (err) {
    process.stderr.write(`patchwarden-collector: ${errorMessage(err)}\n`);
    if (err instanceof UsageError) {
      process.stderr.write(USAGE);
      return 2;
    }
    // scan keeps 1 for "an open finding is overdue", so its errors are 2; for the other
    // commands 2 means usage, and a failure (the database cannot be opened) is 1.
    return name === 'scan' ? 2 : 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`patchwarden-collector: ${errorMessage(err)}\n`);
    process.exitCode = 2;
  },
);
