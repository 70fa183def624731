/**
 * Enrollment: make this host's ed25519 key, present the one-time token to the collector,
 * and write the agent's config and key once the collector has registered the key.
 *
 * Order matters for the operator: everything that can fail locally (a bad token format,
 * an existing enrollment, an unwritable config directory, an unreadable CA file) fails
 * BEFORE the token is presented, so a typo or a permissions problem never spends a use
 * of a counted token. The key is written before the config, so a config on disk always
 * has its key.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { CLOSE, MalformedInputError, PatchwardenError, ProtocolError, UsageError } from '../../shared/errors.ts';
import { enrollMessage } from '../../shared/messages.ts';
import { EnrollMessageSchema, PROTOCOL_VERSION } from '../../shared/protocol.ts';
import { generateKeyPair } from '../../shared/signing.ts';
import { createContext } from '../inventory/context.ts';
import { readHost } from '../inventory/host.ts';
import { TEMP_PREFIX } from '../../shared/atomic-write.ts';
import {
  type AgentConfig,
  DEFAULT_CONFIG_PATH,
  DEFAULT_INTERVAL_SECONDS,
  DEFAULT_SPOOL_DIR,
  DEFAULT_SPOOL_MAX_BYTES,
  defaultKeyFile,
  loadConfig,
  normalizeCollectorUrl,
  MAX_COLLECTOR_URLS,
  saveConfig,
  savePrivateKey,
} from './config.ts';
import { acceptsProtocol } from '../../shared/protocol-version.ts';
import { CollectorConnection, readCaFile } from './connection.ts';

export interface EnrollOptions {
  /** The collector to enroll with. */
  collectorUrl: string;
  /** More collectors of the same fleet (replicas), saved for the daemon to spread over and fail over to. */
  collectorUrls?: readonly string[];
  token: string;
  configPath: string;
  /** Default: /var/lib/patchwarden-agent/spool for the default config, else `spool` beside the config. */
  spoolDir?: string;
  caFile?: string;
  /** Enroll again even though the config names an agent already (a revoked one, a cloned VM). */
  force?: boolean;
  intervalSeconds?: number;
  spoolMaxBytes?: number;
  timeoutMs?: number;
  /** This host's name and machine id; read from the system (under `root`) by default. */
  identity?: { hostname: string; machineId: string | null };
  /** The system this agent reports and patches, when it is not `/` (config `root`). */
  root?: string;
  /** Enroll over ws:// to a host that is not loopback (`--insecure-cleartext`); refused without it. */
  insecureCleartext?: boolean;
  /** Where the cleartext warning goes; default stderr. */
  warn?: (message: string) => void;
}

export type EnrollTransport = 'tls' | 'loopback' | 'cleartext';

const LOOPBACK_V4 = /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;
// ::ffff:127.x.y.z as WHATWG URL serialises it.
const LOOPBACK_V4_MAPPED = /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/;

/**
 * How an enrollment to `url` (normalised) travels. Enrollment pins the collector's key from
 * its `enrolled` answer: over ws:// anyone on the path can hand the agent their own key
 * (and read the token), and from then on sign the instructions it runs as root. Loopback
 * never leaves the host; any other ws:// host name, even one that resolves to this host
 * (0.0.0.0, the machine's own name), is cleartext on a network as far as we can tell.
 */
export function enrollTransport(url: string): EnrollTransport {
  const u = new URL(url);
  if (u.protocol === 'wss:') return 'tls';
  const host = u.hostname.toLowerCase();
  if (host === 'localhost' || host === '[::1]' || LOOPBACK_V4.test(host) || LOOPBACK_V4_MAPPED.test(host)) return 'loopback';
  return 'cleartext';
}

/** Refuses (PW_ERR_CLEARTEXT_REFUSED) or, with the flag, warns about a cleartext enrollment. */
export function checkEnrollTransport(url: string, insecureCleartext: boolean, warn: (message: string) => void): void {
  if (enrollTransport(url) !== 'cleartext') return;
  const host = new URL(url).host;
  const risk =
    `the enrollment token and the collector key this agent pins would cross the network to ${host} in cleartext (ws://): ` +
    'anyone on the path could enroll in its place or hand it their own key, then run commands on this host as root';
  if (!insecureCleartext) {
    throw new PatchwardenError(`refusing to enroll over ws:// to ${host}: ${risk}. Use wss:// (serve --tls-cert/--tls-key on the collector), or pass --insecure-cleartext on a network you trust`, 'PW_ERR_CLEARTEXT_REFUSED');
  }
  warn(`WARNING: --insecure-cleartext: ${risk}. Compare the pinned collector key that enroll prints with the collector's own before starting the agent.`);
}

export interface EnrollResult {
  config: AgentConfig;
  configPath: string;
}

export function defaultSpoolDir(configPath: string): string {
  return resolve(configPath) === DEFAULT_CONFIG_PATH ? DEFAULT_SPOOL_DIR : join(dirname(resolve(configPath)), 'spool');
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Creates the directory and proves a file can be created in it, before the token is spent. */
async function ensureWritableDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const probe = join(dir, `${TEMP_PREFIX}enroll-probe-${randomBytes(6).toString('hex')}`);
    const h = await open(probe, 'wx', 0o600);
    await h.close();
    await unlink(probe);
  } catch (err) {
    throw new UsageError(`cannot write the agent config in ${dir}: ${(err as Error).message} (run enroll as root, or pass --config FILE)`, { cause: err });
  }
}

export async function enroll(options: EnrollOptions): Promise<EnrollResult> {
  const url = normalizeCollectorUrl(options.collectorUrl);
  // Checked before the token is spent: the daemon will send inventories to every one of them.
  const others = [...new Set((options.collectorUrls ?? []).map(normalizeCollectorUrl))].filter((u) => u !== url);
  if (others.length >= MAX_COLLECTOR_URLS) throw new UsageError(`at most ${MAX_COLLECTOR_URLS} collector URLs: replicas of one fleet, not a list of every collector`);
  for (const u of [url, ...others]) checkEnrollTransport(u, options.insecureCleartext ?? false, options.warn ?? ((m) => process.stderr.write(`${m}\n`)));
  const configPath = resolve(options.configPath);
  const keyFile = defaultKeyFile(configPath);
  const spoolDir = resolve(options.spoolDir ?? defaultSpoolDir(configPath));
  const timeoutMs = options.timeoutMs ?? 30_000;

  if (!EnrollMessageSchema.shape.token.safeParse(options.token).success) {
    throw new UsageError('the enrollment token is not one: 16 to 256 characters of A-Z a-z 0-9 _ . - (as printed by `patchwarden-collector token create`)');
  }
  if (!options.force && (await exists(configPath))) {
    let who = 'an agent';
    try {
      who = `agent ${(await loadConfig(configPath)).agentId}`;
    } catch {
      // An unreadable config is still one we would overwrite: refuse all the same.
    }
    throw new UsageError(`${configPath} already enrolls this host as ${who}; pass --force to enroll again with a new key`);
  }
  await ensureWritableDir(dirname(configPath));
  if (dirname(keyFile) !== dirname(configPath)) await ensureWritableDir(dirname(keyFile));
  const ca = await readCaFile(options.caFile);

  const identity = options.identity ?? (await readHost(createContext(options.root ?? '/')));
  const pair = generateKeyPair();
  const draft = enrollMessage({ token: options.token, publicKey: pair.publicKey, hostname: identity.hostname, machineId: identity.machineId });
  const checked = EnrollMessageSchema.safeParse(draft);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new MalformedInputError(`cannot enroll: ${issue?.path.join('.') ?? ''} ${JSON.stringify(issue?.path[0] === 'hostname' ? identity.hostname : '')}: ${issue?.message ?? 'invalid'}`);
  }

  const conn = await CollectorConnection.open({ url, ...(ca === undefined ? {} : { ca }), openTimeoutMs: timeoutMs });
  let agentId: string;
  let collectorPublicKey: string;
  try {
    const challenge = await conn.next(timeoutMs);
    if (challenge.type !== 'challenge') throw new ProtocolError(`expected a challenge from the collector, got ${challenge.type}`, 'PW_ERR_PROTOCOL', CLOSE.protocol);
    if (!acceptsProtocol(challenge.protocol)) {
      throw new ProtocolError(`the collector speaks protocol ${challenge.protocol}, this agent ${PROTOCOL_VERSION}: upgrade one of them`, 'PW_ERR_PROTOCOL_VERSION', CLOSE.version);
    }
    await conn.send(checked.data);
    const answer = await conn.next(timeoutMs);
    if (answer.type !== 'enrolled') throw new ProtocolError(`expected enrolled from the collector, got ${answer.type}`, 'PW_ERR_PROTOCOL', CLOSE.protocol);
    ({ agentId, collectorPublicKey } = answer);
  } catch (err) {
    conn.close(err instanceof ProtocolError && err.closeCode !== undefined && err.closeCode >= 4000 ? err.closeCode : 1000);
    throw err;
  }
  conn.close(1000, 'enrolled');

  const config = {
    collectorUrl: url,
    ...(others.length === 0 ? {} : { collectorUrls: others }),
    agentId,
    collectorPublicKey,
    keyFile,
    spoolDir,
    spoolMaxBytes: options.spoolMaxBytes ?? DEFAULT_SPOOL_MAX_BYTES,
    intervalSeconds: options.intervalSeconds ?? DEFAULT_INTERVAL_SECONDS,
    ...(options.caFile === undefined ? {} : { caFile: resolve(options.caFile) }),
    ...(options.root === undefined ? {} : { root: resolve(options.root) }),
  };
  try {
    await savePrivateKey(keyFile, pair.privateKeyPem);
    await saveConfig(configPath, config);
  } catch (err) {
    throw new UsageError(`the collector enrolled this host as agent ${agentId}, but its key or config could not be written (${(err as Error).message}); revoke that agent and enroll again`, { cause: err });
  }
  return { config: Object.freeze(config), configPath };
}
