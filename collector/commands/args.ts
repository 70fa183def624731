import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../../shared/errors.ts';
import { NO_NUL } from '../../shared/grammar.ts';

/**
 * node:util parseArgs, strict, with its errors turned into usage errors (exit 2). An argument
 * holding U+0000 is one too, for every command at once: an option's value may be written to
 * the store, whose PostgreSQL `text` cannot hold it (shared/text.ts). A process started by
 * execve cannot be given one; a caller in this process can.
 */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, positionals = false) {
  const nul = argv.findIndex((a) => !NO_NUL.test(a));
  if (nul !== -1) throw new UsageError(`argument ${nul + 1} contains U+0000 (NUL), which the store cannot hold`);
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: positionals });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
