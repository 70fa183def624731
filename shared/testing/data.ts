/**
 * Where the real upstream data lives for tests: ../shared/data beside the repository
 * (never copied into it). Tests only.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

export const DATA_DIR = join(import.meta.dirname, '..', '..', '..', 'shared', 'data');

export function dataPath(...parts: string[]): string {
  return join(DATA_DIR, ...parts);
}

/** Reads a data file, gunzipping `.gz`. */
export function readData(...parts: string[]): string {
  const buf = readFileSync(dataPath(...parts));
  return (parts[parts.length - 1]?.endsWith('.gz') ? gunzipSync(buf) : buf).toString('utf8');
}
