/**
 * Test fixtures for the HTTP side: a real store with real advisories (the AlmaLinux 9 OSV
 * export and CISA KEV from ../shared/data) and hosts whose inventories are real (this
 * project's Debian 12 host's dpkg status, the RHEL 9.5 image's rpms), ingested through
 * Fleet as the gateway does. Tests only.
 */
import { sqliteSide } from './store-fixtures.ts';
import { randomUUID } from 'node:crypto';
import { parseDpkgStatus } from '../../agent/inventory/dpkg.ts';
import { inventoryHash } from '../inventory-hash.ts';
import type { Inventory } from '../protocol.ts';
import { generateKeyPair } from '../signing.ts';
import { readData, dataPath } from './data.ts';
import { Correlator } from '../../collector/domain/correlate/correlator.ts';
import { DEFAULT_POLICY } from '../../collector/domain/correlate/policy.ts';
import { inventoryOf, rhel95Packages } from './correlate-fixtures.ts';
import { openCollector } from '../../collector/open-collector.ts';
import type { ApiTokenStore, Role } from '../../collector/store/access.ts';
import type { Db } from '../../collector/store/db.ts';
import type { Store } from '../../collector/store/store.ts';
import { createLogger } from '../../collector/logger.ts';
import { createApp } from '../../collector/http/app.ts';
import { AuthFailureLimiter } from '../../collector/http/auth-limiter.ts';
import { createMetrics, type CollectorMetrics } from '../../collector/http/metrics.ts';

export const NOW = new Date('2026-11-26T18:00:00.000Z');
export const HOSTILE_HOSTNAME = '<script>alert(1)</script>';

let debianPackages: ReturnType<typeof parseDpkgStatus> | undefined;

/** This project's real Debian 12 host (732 dpkg rows, the installed ones kept). */
export function debianInventory(hostname: string): Inventory {
  debianPackages ??= parseDpkgStatus(readData('host-inventory', 'debian12-host.dpkg-status.gz'));
  const inv = inventoryOf('Debian:12', 'deb', debianPackages);
  inv.host.hostname = hostname;
  inv.host.os = { id: 'debian', idLike: [], versionId: '12', codename: 'bookworm', prettyName: 'Debian GNU/Linux 12 (bookworm)' };
  return inv;
}

/** The real RHEL 9.5 image's 243 rpms, judged as AlmaLinux 9 (AlmaLinux's OSV export has real fixes for them). */
export function almaInventory(hostname: string, opts: { rebootRequired?: boolean } = {}): Inventory {
  const inv = inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages());
  inv.host.hostname = hostname;
  inv.host.os = { id: 'almalinux', idLike: ['rhel', 'centos', 'fedora'], versionId: '9.5', codename: null, prettyName: 'AlmaLinux 9.5' };
  if (opts.rebootRequired === true) inv.reboot = { required: true, reasons: [{ kind: 'kernel-update', detail: 'running 5.14.0-503.11.1.el9_5, newest installed 5.14.0-503.15.1.el9_5' }], services: [] };
  return inv;
}

export interface Fixture {
  db: Db;
  /** The store the app runs on (openCollector's, in memory). */
  store: Store;
  correlator: Correlator;
  metrics: CollectorMetrics;
  tokens: ApiTokenStore;
  app: ReturnType<typeof createApp>;
  clock: { now: Date };
  /** Agent ids the app reported as revoked (what the gateway would disconnect). */
  revokedAgents: string[];
  /** Errors the app answered with 500. */
  errors: unknown[];
  /** The app's log lines (refused authentications, 403s), as JSON text. */
  logs: string[];
  /** Bearer tokens by name: viewer, operator, admin, revoked (an admin token, revoked). */
  bearer: Record<'viewer' | 'operator' | 'admin' | 'revoked', string>;
  /** Enrolls an agent and stores one report of `inv`; returns the agent id. */
  addHost(inv: Inventory, opts?: { tags?: string[]; seenAt?: Date; connected?: boolean }): Promise<string>;
  close(): void;
}

/** Feeds are imported at `feedsAt` (default: an hour before NOW, so they are fresh). */
/**
 * `authLimiter`: app.request() has no socket, so every request comes from one source
 * (`unknown`); the fixture's default limiter lets the table-driven 401 tests through, and
 * the limiter's own tests pass a real one.
 */
export async function makeFixture(opts: { feeds?: boolean; feedsAt?: Date; authLimiter?: AuthFailureLimiter } = {}): Promise<Fixture> {
  const clock = { now: NOW };
  const collector = await openCollector({ store: { kind: 'sqlite', path: ':memory:' }, now: () => clock.now });
  const store = sqliteSide(collector);
  const db = store.db;
  const correlator = new Correlator();
  if (opts.feeds !== false) {
    const at = opts.feedsAt ?? new Date(NOW.getTime() - 3600_000);
    await collector.feeds.importPath(dataPath('osv', 'almalinux9.osv.jsonl.gz'), { correlator, now: at });
    await collector.feeds.importPath(dataPath('kev', 'known_exploited_vulnerabilities.json.gz'), { correlator, now: at });
  }
  const metrics = createMetrics();
  const revokedAgents: string[] = [];
  const errors: unknown[] = [];
  const logs: string[] = [];
  const app = createApp({
    logger: createLogger({ level: 'info', destination: { write: (line: string) => logs.push(line) } }),
    authLimiter: opts.authLimiter ?? new AuthFailureLimiter({ burst: Number.MAX_SAFE_INTEGER }),
    store: store.async,
    correlator,
    policy: DEFAULT_POLICY,
    now: () => clock.now,
    metrics,
    onAgentRevoked: (id) => revokedAgents.push(id),
    onError: (err) => errors.push(err),
  });
  const tokens: ApiTokenStore = store.async.apiTokens;
  const make = async (name: string, role: Role) => (await tokens.create({ name, role, createdBy: 'cli:test' }, NOW)).token;
  const bearer = { viewer: await make('viewer', 'viewer'), operator: await make('operator', 'operator'), admin: await make('admin', 'admin'), revoked: await make('gone', 'admin') };
  await tokens.revoke('gone', 'cli:test', NOW);
  const addHost: Fixture['addHost'] = async (inv, o = {}) => {
    const parts = store.async;
    const id = await parts.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: inv.host.hostname, machineId: null, tokenId: null }, NOW);
    await parts.reports.ingest(id, randomUUID(), inventoryHash(inv), inv, NOW);
    if (o.tags !== undefined) await parts.agents.setTags(id, o.tags, 'cli:test', NOW);
    if (o.seenAt !== undefined || o.connected !== undefined) {
      // A connection marked at seenAt (moving last_seen there, even back from the report's time), left open or closed.
      await parts.agents.markConnected(id, 'fixture', o.seenAt ?? NOW);
      if (o.connected !== true) await parts.agents.markDisconnected(id, 'fixture', o.seenAt ?? NOW);
    }
    return id;
  };
  const close = () => {
    void collector.close();
  };
  return { db, store, correlator, metrics, tokens, app, clock, revokedAgents, errors, logs, bearer, addHost, close };
}

export function auth(token: string): { headers: Record<string, string> } {
  return { headers: { authorization: `Bearer ${token}` } };
}
