/**
 * `patchwarden-agent run [--config FILE]`: the daemon. Logs are JSON lines on stdout.
 *
 * Exit codes: 0 stopped by SIGTERM/SIGINT; 2 usage or config error; 4 the collector
 * revoked this agent (a distinct code so a service manager can stop restarting it:
 * systemd `RestartPreventExitStatus=4`).
 */
import { parseArgs } from 'node:util';
import { UsageError } from '../../shared/errors.ts';
import { Agent } from '../daemon/agent.ts';
import { DEFAULT_CONFIG_PATH, loadConfig, loadPrivateKey } from '../daemon/config.ts';
import { readCaFile } from '../daemon/connection.ts';
import { createLogger } from '../daemon/log.ts';

export const EXIT_REVOKED = 4;

export async function runCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { config: { type: 'string', default: DEFAULT_CONFIG_PATH } }, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const config = await loadConfig(values.config);
  const { key, looseMode } = await loadPrivateKey(config.keyFile);
  const ca = await readCaFile(config.caFile);
  const log = createLogger({ destination: out });
  if (looseMode !== null) {
    log.warn({ code: 'PW_WARN_KEY_PERMISSIONS', keyFile: config.keyFile, mode: looseMode.toString(8) }, `the agent key ${config.keyFile} is readable by others (mode ${looseMode.toString(8)}): chmod 600 it`);
  }
  const agent = await Agent.create({ config, key, log, ...(ca === undefined ? {} : { ca }) });
  const onSignal = (signal: NodeJS.Signals): void => {
    log.info({ signal }, `${signal}: stopping`);
    void agent.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    const exit = await agent.run();
    if (exit.reason === 'revoked') {
      process.stderr.write(`patchwarden-agent: the collector revoked agent ${config.agentId} (${exit.error.code}); it will not reconnect. Re-enroll: patchwarden-agent enroll --collector URL --token T --force --config ${values.config}\n`);
      return EXIT_REVOKED;
    }
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
