/**
 * `serve [--db FILE] [--init] [--listen HOST:PORT] [--config FILE] [--tls-cert FILE --tls-key FILE]`:
 * the collector service, on the SQLite file --db names or on the store the config names
 * (`store`: a PostgreSQL database several collectors share, with `keyFile`). A missing --db file is made; an existing empty one is refused
 * (PW_ERR_STORE_EMPTY_FILE) unless --init says to make a new database in it.
 * Prints where it listens, then runs until SIGTERM or SIGINT, when
 * it closes agent connections (1001), lets requests finish and closes the database; a
 * second signal a second or more after the first exits at once.
 */
import { readFileSync } from 'node:fs';
import { UsageError, errorMessage } from '../../shared/errors.ts';
import { loadConfig } from '../config.ts';
import { createCollector, DEFAULT_LISTEN } from '../server.ts';
import { parse } from './args.ts';
import { DEFAULT_DB } from './feed.ts';

type Io = { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };

/** Signals this close together are one request to stop, not an operator asking twice. */
const SIGNAL_PAIR_MS = 1000;

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`cannot read the TLS ${what} ${path}: ${errorMessage(err)}`);
  }
}

export async function serveCommand(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, {
    db: { type: 'string' },
    init: { type: 'boolean', default: false },
    listen: { type: 'string', default: DEFAULT_LISTEN },
    config: { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
  });
  const certPath = values['tls-cert'];
  const keyPath = values['tls-key'];
  if ((certPath === undefined) !== (keyPath === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
  const config = await loadConfig(values.config);
  if (config.store !== undefined && values.db !== undefined) throw new UsageError(`--db and the config's store both name a store: give one`);
  if (config.store?.kind === 'postgres' && values.init) throw new UsageError('--init makes a SQLite file; a PostgreSQL store is made by its first collector');
  const tls = certPath === undefined || keyPath === undefined ? undefined : { cert: readPem(certPath, 'certificate'), key: readPem(keyPath, 'key') };
  // Signals are handled before the URL is printed: whoever reads that line may signal at
  // once. One listener for the whole run, removed only after the close.
  let firstSignalAt: number | null = null;
  let stop: (s: NodeJS.Signals) => void = () => undefined;
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    stop = resolve;
  });
  const listener = (s: NodeJS.Signals) => {
    // A second signal while closing: the operator wants it gone now. Not one that comes
    // with the first: Ctrl-C sends SIGINT to the whole process group, and a supervisor
    // (npm start, a shell script) passes a SIGTERM of its own at the same moment.
    if (firstSignalAt !== null) {
      if (Date.now() - firstSignalAt >= SIGNAL_PAIR_MS) process.exit(1);
      return;
    }
    firstSignalAt = Date.now();
    stop(s);
  };
  process.on('SIGTERM', listener);
  process.on('SIGINT', listener);
  try {
    // The collector keeps its own feeds current (config `feedSync`, default on); PATCHWARDEN_FEED_SYNC=off is the same as "feedSync": false.
    const feedSync = process.env.PATCHWARDEN_FEED_SYNC === 'off' ? {} : { feedSync: {} };
    const collector = await createCollector({ dbPath: values.db ?? DEFAULT_DB, init: values.init, listen: values.listen, config, ...feedSync, ...(tls === undefined ? {} : { tls }) });
    io.stdout.write(`patchwarden-collector listening on ${collector.url} (agents: ${collector.agentUrl})\n`);
    const signal = await stopped;
    collector.logger.info({ signal }, 'closing');
    await collector.close();
  } finally {
    process.off('SIGTERM', listener);
    process.off('SIGINT', listener);
  }
  return 0;
}
