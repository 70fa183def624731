/**
 * Command-line checks both CLIs make the same way.
 */
import { stat } from 'node:fs/promises';
import { UsageError } from './errors.ts';

/** A flag that names a directory: anything else (missing, a file) is a usage error naming the flag. */
export async function requireDirectory(flag: string, path: string): Promise<void> {
  const info = await stat(path).catch(() => null);
  if (info === null || !info.isDirectory()) throw new UsageError(`${flag} ${path} is not a directory`);
}
