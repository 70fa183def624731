/**
 * The agent's config file: written once by `enroll`, read by `run`. Validated once at
 * start-up and deep-frozen (the fastify habit); inside the daemon the types are trusted.
 *
 * The ed25519 private key is not in this file but beside it (`agent.key`, PKCS#8 PEM,
 * mode 0600), so the config can be read, copied into a ticket or backed up without
 * leaking the agent's identity.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { open } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import * as z from 'zod';
import { issueText, UsageError } from '../../shared/errors.ts';
import { writeFileAtomic } from '../../shared/atomic-write.ts';

export const DEFAULT_CONFIG_PATH = '/etc/patchwarden/agent.json';
/** Inside the agent unit's StateDirectory (systemd/patchwarden-agent.service), apart from the collector's /var/lib/patchwarden. */
export const DEFAULT_SPOOL_DIR = '/var/lib/patchwarden-agent/spool';
export const KEY_FILE_NAME = 'agent.key';
/** The gateway's path on the collector's HTTP server. */
export const AGENT_PATH = '/v1/agent';
/** 64 MiB holds about 200 full 2,000-package inventories: days of changes while the collector is away. */
export const DEFAULT_SPOOL_MAX_BYTES = 64 * 1024 * 1024;
/** Package changes are seen at once through fs.watch; the timer catches the rest (reboot flags, kernels, livepatch). */
export const DEFAULT_INTERVAL_SECONDS = 900;
/** A real config is a few hundred bytes; anything far larger is not one. */
const MAX_CONFIG_BYTES = 64 * 1024;
const MAX_KEY_BYTES = 16 * 1024;

/**
 * Accepts ws:// and wss:// (http:// and https:// are taken to mean the same server); a URL
 * with no path gets the gateway's path, so `--collector wss://collector.example:8443` works.
 */
export function normalizeCollectorUrl(input: string): string {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new UsageError(`collector URL '${input}' is not a URL (expected wss://host:port)`);
  }
  const schemes: Record<string, string> = { 'ws:': 'ws:', 'wss:': 'wss:', 'http:': 'ws:', 'https:': 'wss:' };
  const scheme = schemes[url.protocol];
  if (scheme === undefined) throw new UsageError(`collector URL '${input}' must start with wss:// or ws://`);
  if (url.username !== '' || url.password !== '') throw new UsageError(`collector URL '${input}' must not carry credentials`);
  const normalized = new URL(`${scheme}//${url.host}${url.pathname === '/' ? AGENT_PATH : url.pathname}${url.search}`);
  return normalized.toString();
}

const b64url32 = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'not a base64url ed25519 public key');
const path = z.string().min(1).max(4096);

const collectorUrl = z.string().max(2048).refine((u) => /^wss?:\/\//.test(u), 'must start with ws:// or wss://');
/** Replicas of one collector fleet an agent may list (daemon/collectors.ts); more is not a fleet but a typo. */
export const MAX_COLLECTOR_URLS = 16;

export const AgentConfigSchema = z.strictObject({
  collectorUrl,
  /**
   * More collectors serving the same store (replicas, issue 12): the agent spreads over
   * `collectorUrl` and these, and moves on when one cannot be reached. They must share the
   * collector key pinned below; one that does not is refused like any stranger.
   */
  collectorUrls: z.array(collectorUrl).max(MAX_COLLECTOR_URLS - 1).optional(),
  agentId: z.uuid(),
  /** Pinned at enrollment; instructions signed by any other key are refused. */
  collectorPublicKey: b64url32,
  keyFile: path,
  spoolDir: path,
  /** The spool never holds more than this, except the newest full inventory (see spool.ts). */
  spoolMaxBytes: z.number().int().min(64 * 1024).max(16 * 1024 * 1024 * 1024),
  /** Below a minute is for tests and labs: every check costs a dpkg/rpm read. */
  intervalSeconds: z.number().int().min(1).max(7 * 24 * 3600),
  /** PEM bundle to trust for wss:// besides the system's CAs (a private CA). */
  caFile: path.optional(),
  /**
   * The system this agent reports and patches: `/` (the default) or the root directory of
   * another one (an image being built, a test root); instructions then run in `chroot`.
   */
  root: path.optional(),
});
export type AgentConfigInput = z.infer<typeof AgentConfigSchema>;
export type AgentConfig = Readonly<AgentConfigInput>;

export function defaultKeyFile(configPath: string): string {
  return join(dirname(resolve(configPath)), KEY_FILE_NAME);
}


async function readLimited(file: string, limit: number, what: string): Promise<Buffer> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint = code === 'ENOENT' && what === 'config' ? ': run `patchwarden-agent enroll --collector URL --token T` first' : '';
    throw new UsageError(`cannot open the agent ${what} ${file}: ${(err as Error).message}${hint}`, { cause: err });
  }
  try {
    const buf = Buffer.alloc(limit + 1);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    if (bytesRead > limit) throw new UsageError(`the agent ${what} ${file} is larger than ${limit} bytes: it is not one`);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Every collector the agent may connect to: `collectorUrl` first, then `collectorUrls`, each once. */
export function collectorsOf(config: Pick<AgentConfig, 'collectorUrl' | 'collectorUrls'>): string[] {
  return [...new Set([config.collectorUrl, ...(config.collectorUrls ?? [])])];
}

/** Reads, validates and freezes the config; relative paths in it are relative to the file. */
export async function loadConfig(file: string): Promise<AgentConfig> {
  const raw = await readLimited(file, MAX_CONFIG_BYTES, 'config');
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new UsageError(`the agent config ${file} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  const parsed = AgentConfigSchema.safeParse(json);
  if (!parsed.success) throw new UsageError(`the agent config ${file} is invalid: ${issueText(parsed.error, 5)}`);
  const base = dirname(resolve(file));
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  const c = parsed.data;
  return Object.freeze({
    ...c,
    collectorUrl: normalizeCollectorUrl(c.collectorUrl),
    ...(c.collectorUrls === undefined ? {} : { collectorUrls: c.collectorUrls.map(normalizeCollectorUrl) }),
    keyFile: abs(c.keyFile),
    spoolDir: abs(c.spoolDir),
    ...(c.caFile === undefined ? {} : { caFile: abs(c.caFile) }),
  });
}

/**
 * Validates and writes the config atomically, 0600 whatever the umask: it holds no secret,
 * but it names the key this agent runs every instruction under and the collector it obeys,
 * which no other local user has reason to read or learn from.
 */
export async function saveConfig(file: string, config: AgentConfigInput): Promise<void> {
  const parsed = AgentConfigSchema.safeParse(config);
  if (!parsed.success) throw new UsageError(`refusing to write an invalid agent config: ${issueText(parsed.error, 5)}`);
  await writeFileAtomic(file, JSON.stringify(parsed.data, null, 2) + '\n', 0o600);
}

export async function savePrivateKey(file: string, privateKeyPem: string): Promise<void> {
  await writeFileAtomic(file, privateKeyPem, 0o600);
}

export interface LoadedKey {
  key: KeyObject;
  /** Set when group or others can read the key: the caller warns, as ssh does. */
  looseMode: number | null;
}

export async function loadPrivateKey(file: string): Promise<LoadedKey> {
  const raw = await readLimited(file, MAX_KEY_BYTES, 'key');
  let key: KeyObject;
  try {
    key = createPrivateKey(raw);
  } catch (err) {
    throw new UsageError(`the agent key ${file} is not a PEM private key: ${(err as Error).message}`, { cause: err });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new UsageError(`the agent key ${file} is ${key.asymmetricKeyType ?? 'unknown'}, not ed25519`);
  const handle = await open(file, 'r');
  let mode: number;
  try {
    mode = (await handle.stat()).mode & 0o777;
  } finally {
    await handle.close();
  }
  return { key, looseMode: (mode & 0o077) === 0 ? null : mode };
}
