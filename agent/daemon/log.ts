/** The agent daemon's logger (shared/log.ts), named patchwarden-agent. */
import { createNamedLogger, type Logger, type LoggerOptions } from '../../shared/log.ts';

export type { Logger };

export function createLogger(options: LoggerOptions = {}): Logger {
  return createNamedLogger('patchwarden-agent', options);
}
