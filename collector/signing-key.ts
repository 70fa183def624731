/**
 * The collector's ed25519 signing key, in one place: where it lives, making it once, and
 * reading it. Whoever holds it can sign instructions every agent will run, so it is 0600
 * and a looser mode is said at every start.
 *
 * Where: `keyFile` when the config or a flag names one (a PostgreSQL store has no file to
 * sit beside, and every replica must sign with the same key agents pinned), else
 * `collector.key` beside the SQLite file, as every collector before this one kept it.
 *
 * Only `serve` and `feed export` make a key: every other command reads the existing one,
 * because a new key would sign instructions no enrolled agent trusts.
 */
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { SourceUnavailableError, UsageError, errorMessage } from '../shared/errors.ts';
import { generateKeyPair, publicKeyOfPem } from '../shared/signing.ts';
import type { Logger } from './logger.ts';

export const KEY_FILE = 'collector.key';

export interface SigningKey {
  /** Raw ed25519 public key, base64url: what agents pin at enrollment. */
  publicKey: string;
  privateKeyPem: string;
}

/** The key's path: the one named, else beside the SQLite file. */
export function collectorKeyPath(where: { dbPath?: string; keyFile?: string }): string {
  if (where.keyFile !== undefined) return resolve(where.keyFile);
  if (where.dbPath === undefined || where.dbPath === ':memory:') throw new UsageError('this store has no file to keep the collector key beside: name a keyFile');
  return join(dirname(resolve(where.dbPath)), KEY_FILE);
}

function warnLooseMode(path: string, log: Pick<Logger, 'warn'>): void {
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) log.warn({ path, mode: mode.toString(8) }, `the collector key ${path} can be read by other users: chmod 600 it`);
}

/** The key at `path`, made (0600, never over an existing file) when there is none; `made` says which. */
export function loadOrCreateKey(path: string, log: Pick<Logger, 'warn' | 'info'>): SigningKey & { made: boolean } {
  const existing = loadKey(path, log);
  if (existing !== undefined) return { ...existing, made: false };
  const pair = generateKeyPair();
  try {
    // `wx`: two collectors starting on one directory must not overwrite each other's key.
    writeFileSync(path, pair.privateKeyPem, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new UsageError(`cannot write the collector key ${path}: ${errorMessage(err)}`);
    // The other one made it first: that key is the one, and this pair was never used.
    const theirs = loadKey(path, log);
    if (theirs !== undefined) return { ...theirs, made: false };
    throw new UsageError(`the collector key ${path} appeared and went while it was being made`);
  }
  chmodSync(path, 0o600);
  log.info({ path }, 'made the collector key');
  return { publicKey: pair.publicKey, privateKeyPem: pair.privateKeyPem, made: true };
}

/** The key at `path`, or undefined when there is no file. */
function loadKey(path: string, log: Pick<Logger, 'warn'>): SigningKey | undefined {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UsageError(`cannot read the collector key ${path}: ${errorMessage(err)}`);
  }
  warnLooseMode(path, log);
  try {
    return { publicKey: publicKeyOfPem(pem), privateKeyPem: pem };
  } catch (err) {
    throw new UsageError(`the collector key ${path} is not an ed25519 private key (PKCS#8 PEM): ${errorMessage(err)}`);
  }
}

/** The existing key at `path`; never made here (agents pinned the existing one). */
export function readCollectorKey(path: string): SigningKey {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SourceUnavailableError(`cannot read the collector key ${path} to sign with: ${errorMessage(err)} (serve makes it at its first start)`, { cause: err });
  }
  try {
    return { publicKey: publicKeyOfPem(pem), privateKeyPem: pem };
  } catch (err) {
    throw new SourceUnavailableError(`the collector key ${path} is not an ed25519 private key (PKCS#8 PEM): ${errorMessage(err)}`, { cause: err });
  }
}
