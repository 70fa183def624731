/** Test support for the collector as a whole. Tests only. */
import { createLogger, type Logger } from '../../collector/logger.ts';

/** A real pino logger whose JSON lines are kept in `lines`. */
export function captureLogger(): { lines: string[]; logger: Logger } {
  const lines: string[] = [];
  return {
    lines,
    logger: createLogger({
      destination: {
        write(l: string) {
          lines.push(l);
        },
      },
    }),
  };
}
