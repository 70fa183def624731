/**
 * The agent daemon's logger: pino, JSON lines to stdout, which journald keeps as they are.
 * Every warning and error carries a stable `code` field (the README's error table) so a
 * log shipper can alert on codes, not on text. The enrollment token is redacted by field
 * name, so no careless log call can leak it.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

const REDACT_PATHS = ['token', '*.token', 'privateKey', '*.privateKey', 'privateKeyPem', '*.privateKeyPem'];

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.PATCHWARDEN_LOG_LEVEL ?? 'info',
      base: { name: 'patchwarden-agent' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    options.destination,
  );
}
