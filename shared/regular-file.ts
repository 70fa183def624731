/**
 * Opening an input file that may have been put in place by someone else: a carried report,
 * instructions or bundle file, a feed path. open(2) of a FIFO for reading blocks until a
 * writer comes, and a read of a FIFO or a device may never end, so such a path named like
 * an input (`x.pwreport`, `feed.jsonl.gz`) would stall `reports import`, `agent apply`
 * or `feed import` for ever. The path is checked with stat first, so nothing is opened
 * that is not a regular file; it is then opened with O_NONBLOCK (which never blocks on a
 * FIFO that replaced the file since, and changes nothing for a regular file) and checked
 * again with fstat on the descriptor, which is what will be read.
 */
import { constants, type Stats } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { errorMessage, NotRegularFileError, SourceUnavailableError } from './errors.ts';

const FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

function what(info: Stats): string {
  if (info.isDirectory()) return 'a directory';
  if (info.isFIFO()) return 'a FIFO';
  if (info.isSocket()) return 'a socket';
  if (info.isCharacterDevice()) return 'a character device';
  if (info.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

function refuse(path: string, info: Stats): NotRegularFileError {
  return new NotRegularFileError(`${path} is ${what(info)}, not a regular file: refused without reading it`);
}

/**
 * The open file, or PW_ERR_NOT_REGULAR_FILE for anything but a regular file (symbolic links
 * are followed: the target counts), PW_ERR_SOURCE_UNAVAILABLE when it cannot be opened.
 * The caller closes the handle.
 */
export async function openRegularFile(path: string): Promise<FileHandle> {
  let info: Stats;
  try {
    info = await stat(path);
  } catch (err) {
    throw new SourceUnavailableError(`cannot open ${path}: ${errorMessage(err)}`, { cause: err });
  }
  if (!info.isFile()) throw refuse(path, info);
  let handle: FileHandle;
  try {
    handle = await open(path, FLAGS);
  } catch (err) {
    throw new SourceUnavailableError(`cannot open ${path}: ${errorMessage(err)}`, { cause: err });
  }
  try {
    const now = await handle.stat();
    if (!now.isFile()) throw refuse(path, now);
  } catch (err) {
    await handle.close();
    throw err;
  }
  return handle;
}

/** Opens `path` with openRegularFile for `read`, and closes it after. */
export async function withRegularFile<T>(path: string, read: (handle: FileHandle) => Promise<T>): Promise<T> {
  const handle = await openRegularFile(path);
  try {
    return await read(handle);
  } finally {
    await handle.close();
  }
}
