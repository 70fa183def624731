/**
 * The one logger setup of agent and collector: pino, JSON lines to stdout (journald and log
 * shippers read them as they are), ISO times, the level from PATCHWARDEN_LOG_LEVEL. Every
 * warning and error carries a stable `code` field (the README's error table) so alerts
 * match codes, not text. Secrets are redacted by field name, so a careless
 * `log.info({ frame })` of an enroll message or a request can never leak a token or a key.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'token',
  '*.token',
  '*.*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'privateKey',
  '*.privateKey',
  'privateKeyPem',
  '*.privateKeyPem',
];

export interface LoggerOptions {
  level?: string;
  destination?: DestinationStream;
}

export function createNamedLogger(name: string, options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.PATCHWARDEN_LOG_LEVEL ?? 'info',
      base: { name },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    options.destination,
  );
}
