/**
 * A FIFO at `path` (mkfifo(1), coreutils: on every Debian system): what a hostile carry
 * medium puts where an input file is expected. Reading it with no writer would block for
 * ever. Tests only.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

export async function mkfifo(path: string): Promise<string> {
  await promisify(execFile)('mkfifo', ['-m', '600', '--', path]);
  return path;
}
