/** `npm run node18`: fetches Node 18.19 for the bundle tests (scripts/node18-path.ts). */
import { ensureNode18 } from './node18-path.ts';

process.stdout.write(`${ensureNode18()}\n`);
