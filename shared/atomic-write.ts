/**
 * Writes a file so that a crash or power loss leaves either the old file or the whole new
 * one, never a torn mix: write a temporary file in the same directory, fsync it, rename it
 * over the target, then fsync the directory so the rename itself is durable (ext4 and xfs
 * may otherwise lose the new directory entry on power loss).
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Temporary files start with this; readers of a directory skip (and may remove) them. */
export const TEMP_PREFIX = '.tmp-';

export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `${TEMP_PREFIX}${basename(path)}-${randomBytes(6).toString('hex')}`);
  // 'wx' with the final mode: the bytes are never readable by others, not even for the
  // moment between create and chmod.
  const handle = await open(temp, 'wx', mode);
  try {
    try {
      await handle.writeFile(data);
      // The process umask may have narrowed the mode given to open(); the caller's mode is the contract.
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await fsyncDirectory(dir);
}
