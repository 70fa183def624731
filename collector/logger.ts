/**
 * The collector's logger: pino, JSON lines to stdout (journald and log shippers read them
 * as they are). Secrets are redacted by field name, so a careless `log.info({ msg })` of
 * an enroll message cannot leak the token.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

export const REDACT_PATHS = ['token', '*.token', '*.*.token', 'authorization', '*.authorization', 'headers.authorization', 'privateKey', '*.privateKey'];

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.PATCHWARDEN_LOG_LEVEL ?? 'info',
      base: { name: 'patchwarden-collector' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    options.destination,
  );
}
