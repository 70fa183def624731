import { join } from 'node:path';

export const NODE18_DIR = join(import.meta.dirname, '..', '.cache', 'node18');
export const NODE18_BIN = join(NODE18_DIR, 'bin', 'node');
