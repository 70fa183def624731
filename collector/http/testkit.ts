/**
 * Test fixtures for the HTTP side: a real store with real advisories (the AlmaLinux 9 OSV
 * export and CISA KEV from ../shared/data) and hosts whose inventories are real (this
 * project's Debian 12 host's dpkg status, the RHEL 9.5 image's rpms), ingested through
 * Fleet as the gateway does. Tests only.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { parseDpkgStatus } from '../../agent/inventory/dpkg.ts';
import { inventoryHash } from '../../shared/inventory-hash.ts';
import type { Inventory } from '../../shared/protocol.ts';
import { generateKeyPair } from '../../shared/signing.ts';
import { readData, dataPath } from '../../shared/testing/data.ts';
import { Correlator } from '../correlate/correlator.ts';
import { DEFAULT_POLICY } from '../correlate/policy.ts';
import { inventoryOf, rhel95Packages } from '../correlate/testkit.ts';
import { importFeedPath } from '../feeds/store-import.ts';
import { ApiTokenStore, type Role } from '../store/access.ts';
import { AdvisoryStore } from '../store/advisories.ts';
import { openDatabase, type Db } from '../store/db.ts';
import { type Fleet, fleetOn } from '../store/fleet.ts';
import { createLogger } from '../logger.ts';
import { createApp } from './app.ts';
import { AuthFailureLimiter } from './auth-limiter.ts';
import { createMetrics, type CollectorMetrics } from './metrics.ts';

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
  fleet: Fleet;
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
  addHost(inv: Inventory, opts?: { tags?: string[]; seenAt?: Date; connected?: boolean }): string;
  close(): void;
}

/** Feeds are imported at `feedsAt` (default: an hour before NOW, so they are fresh). */
/**
 * `authLimiter`: app.request() has no socket, so every request comes from one source
 * (`unknown`); the fixture's default limiter lets the table-driven 401 tests through, and
 * the limiter's own tests pass a real one.
 */
export async function makeFixture(opts: { feeds?: boolean; feedsAt?: Date; authLimiter?: AuthFailureLimiter } = {}): Promise<Fixture> {
  const db = openDatabase(':memory:');
  const fleet = fleetOn(db);
  const correlator = new Correlator();
  if (opts.feeds !== false) {
    const store = new AdvisoryStore(db);
    const at = opts.feedsAt ?? new Date(NOW.getTime() - 3600_000);
    await importFeedPath(store, dataPath('osv', 'almalinux9.osv.jsonl.gz'), { correlator, now: at });
    await importFeedPath(store, dataPath('kev', 'known_exploited_vulnerabilities.json.gz'), { correlator, now: at });
  }
  const metrics = createMetrics();
  const clock = { now: NOW };
  const revokedAgents: string[] = [];
  const errors: unknown[] = [];
  const logs: string[] = [];
  const app = createApp({
    logger: createLogger({ level: 'info', destination: { write: (line: string) => logs.push(line) } }),
    authLimiter: opts.authLimiter ?? new AuthFailureLimiter({ burst: Number.MAX_SAFE_INTEGER }),
    db,
    fleet,
    correlator,
    policy: DEFAULT_POLICY,
    now: () => clock.now,
    metrics,
    onAgentRevoked: (id) => revokedAgents.push(id),
    onError: (err) => errors.push(err),
  });
  const tokens = new ApiTokenStore(db, fleet.audit);
  const make = (name: string, role: Role) => tokens.create({ name, role, createdBy: 'cli:test' }, NOW).token;
  const bearer = { viewer: make('viewer', 'viewer'), operator: make('operator', 'operator'), admin: make('admin', 'admin'), revoked: make('gone', 'admin') };
  tokens.revoke('gone', 'cli:test', NOW);
  const addHost: Fixture['addHost'] = (inv, o = {}) => {
    const id = fleet.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: inv.host.hostname, machineId: null, tokenId: null }, NOW);
    fleet.reports.ingest(id, randomUUID(), inventoryHash(inv), inv, NOW);
    if (o.tags !== undefined) fleet.agents.setTags(id, o.tags, 'cli:test', NOW);
    if (o.seenAt !== undefined || o.connected !== undefined) fleet.agents.setConnected(id, o.connected ?? false, o.seenAt ?? NOW);
    return id;
  };
  const close = () => {
    if (db.open) db.close();
  };
  return { db, fleet, correlator, metrics, tokens, app, clock, revokedAgents, errors, logs, bearer, addHost, close };
}

export function auth(token: string): { headers: Record<string, string> } {
  return { headers: { authorization: `Bearer ${token}` } };
}

export interface MetricFamily {
  name: string;
  type: string;
  help: string;
  samples: { name: string; labels: Record<string, string>; value: number }[];
}

/**
 * The official Python client's text parser (Debian python3-prometheus-client) reads our
 * output back: an independent check of the exposition format and its escaping.
 */
export function parseWithPrometheusClient(text: string): MetricFamily[] {
  const script = `
import sys, json, math
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": (str(s.value) if math.isinf(s.value) or math.isnan(s.value) else s.value)} for s in f.samples]})
print(json.dumps(out))
`;
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { input: text, encoding: 'utf8', timeout: 30_000, maxBuffer: 16 * 1024 * 1024 })) as MetricFamily[];
}

export function sample(families: MetricFamily[], name: string, labels: Record<string, string> = {}): number | undefined {
  for (const f of families) {
    for (const s of f.samples) {
      if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s.value;
    }
  }
  return undefined;
}
