/**
 * The collector's signing key for CLI commands that sign (rollouts, instruction exports,
 * feed bundles): the one `serve` made beside the database, read, never made here.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { SourceUnavailableError, errorMessage } from '../../shared/errors.ts';
import { publicKeyOfPem } from '../../shared/signing.ts';
import { KEY_FILE } from '../server.ts';

/** The collector's signing key, as `serve` made it; never made here (agents pinned the existing one). */
export function readCollectorKey(dbPath: string): string {
  const path = join(dirname(resolve(dbPath)), KEY_FILE);
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SourceUnavailableError(`cannot read the collector key ${path} to sign with: ${errorMessage(err)} (serve makes it beside the database at its first start)`, { cause: err });
  }
  try {
    publicKeyOfPem(pem);
  } catch (err) {
    throw new SourceUnavailableError(`the collector key ${path} is not an ed25519 private key (PKCS#8 PEM): ${errorMessage(err)}`, { cause: err });
  }
  return pem;
}

