/**
 * `patchwarden-agent`: the entry point bundled into dist/agent.js.
 */
import { UsageError, errorMessage } from '../shared/errors.ts';
import { AGENT_VERSION } from '../shared/version.ts';
import { inventoryCommand } from './commands/inventory.ts';

const USAGE = `patchwarden-agent ${AGENT_VERSION}

usage:
  patchwarden-agent inventory [--root DIR] [--json] [--kernel-release R] [--kernel-version V]
  patchwarden-agent enroll --collector URL [--collector URL]... --token T [--config FILE] [--spool-dir DIR] [--ca-file PEM] [--root DIR] [--force] [--insecure-cleartext]
  patchwarden-agent run [--config FILE]
  patchwarden-agent execute --instruction FILE [--config FILE] [--root DIR] [--dry-run] [--json]
  patchwarden-agent report --out DIR [--config FILE]
  patchwarden-agent apply --from DIR [--out DIR] [--config FILE] [--dry-run]
  patchwarden-agent version

  --config defaults to /etc/patchwarden/agent.json; the key is written beside it (agent.key, 0600).
  enroll reads the token from PATCHWARDEN_ENROLL_TOKEN when --token is not given.
  report writes a signed report file for hosts that cannot reach the collector
  (collector side: patchwarden-collector reports import); apply runs the instruction
  files of patchwarden-collector instructions export and writes results and a report back.

exit codes: 0 ok, 1 failed, 2 usage error, 3 partial inventory (see the warnings; report still writes the file),
            4 run: the collector revoked this agent (re-enroll; do not restart)
            execute, apply: 0 succeeded, 1 failed, 2 refused (nothing ran)
`;

type Command = (argv: string[], out: NodeJS.WritableStream) => Promise<number>;

// The daemon's modules (ws, pino) load only for enroll and run, so `inventory` and
// `version` start as fast as before.
const commands: Record<string, Command> = {
  inventory: inventoryCommand,
  enroll: async (argv, out) => (await import('./commands/enroll.ts')).enrollCommand(argv, out),
  run: async (argv, out) => (await import('./commands/run.ts')).runCommand(argv, out),
  execute: async (argv, out) => (await import('./commands/execute.ts')).executeCommand(argv, out),
  report: async (argv, out) => (await import('./commands/report.ts')).reportCommand(argv, out),
  apply: async (argv, out) => (await import('./commands/apply.ts')).applyCommand(argv, out),
  version: (_argv, out) => {
    out.write(`${AGENT_VERSION}\n`);
    return Promise.resolve(0);
  },
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(USAGE);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  try {
    if (command === undefined) throw new UsageError(`unknown command '${name}'`);
    return await command(rest, process.stdout);
  } catch (err) {
    process.stderr.write(`patchwarden-agent: ${errorMessage(err)}\n`);
    if (err instanceof UsageError) {
      process.stderr.write(USAGE);
      return 2;
    }
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`patchwarden-agent: ${errorMessage(err)}\n`);
    process.exitCode = 1;
  },
);
