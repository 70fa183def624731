/**
 * The fleet in the store: enrollment tokens, agents, their reports and each host's
 * current state. Every statement is prepared once; every change that must be all-or-
 * nothing (enrolling with a counted token, ingesting a report) is one transaction, and a
 * caller acknowledges a report only after ingestReport has returned (the commit).
 *
 * Reports: the packages of an inventory are stored once per content (packagesHash), so a
 * fleet built from one image keeps one copy; each stored report keeps the rest of its
 * inventory (host, kernel, reboot, warnings) as its envelope. An unchanged report (the
 * agent sends only the hash) updates last-seen and stores no row: history records changes,
 * and 10,000 agents re-checking every few minutes would otherwise fill the table with copies.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { AgentRefusedError, MalformedInputError } from '../../shared/errors.ts';
import { packagesHash, packageSetJson, packageSetRef } from '../../shared/inventory-hash.ts';
import { type Inventory, LIMITS, type Package } from '../../shared/protocol.ts';
import type { Db } from './db.ts';
import { orphanTimelineDropper } from './history.ts';

export type TokenRefusal = 'unknown' | 'expired' | 'used-up';

export interface AgentRecord {
  id: string;
  publicKey: string;
  hostname: string;
  machineId: string | null;
  tokenId: number | null;
  enrolledAt: string;
  revokedAt: string | null;
  agentVersion: string | null;
  connected: boolean;
  lastSeen: string | null;
  lastInventoryHash: string | null;
  tags: string[];
}

/**
 * A report's packages: `json` is their JSON text as hashed (stored as is, so no second
 * serialisation), or null when they came from the store by reference.
 */
export interface PackageSetRef {
  hash: string;
  json: string | null;
}

/** Parsed package sets kept in memory: a fleet built from a few images names the same few sets over and over. */
const PACKAGE_SET_CACHE = 32;

/**
 * Reports kept per agent, newest first (with the inventories they name): the newest is
 * the host's state, the others are recent history nothing reads yet. Each stored report
 * of a changed inventory deletes the agent's older ones, and each inventory content no
 * remaining report names. An agent that sends distinct large inventories over and over
 * holds at most this many (8 x a 16 MiB frame: 128 MiB), where it grew the store by its
 * every report; a real host, whose inventory changes with each upgrade, keeps its last 8.
 */
export const REPORTS_PER_AGENT = 8;

/** One report of a batch (see ingestBatch). */
export interface IngestItem {
  agentId: string;
  reportId: string;
  hash: string;
  inventory: Inventory;
  set?: PackageSetRef | undefined;
}

export type IngestResult =
  | { status: 'stored'; contentHash: string; newContent: boolean }
  | { status: 'unchanged' }
  | { status: 'duplicate' };

export interface HostSummary {
  agentId: string;
  hostname: string;
  ecosystem: string | null;
  packageCount: number;
  kernelRelease: string;
  kernelManaged: boolean;
  rebootRequired: boolean;
  lastReportId: string;
  lastReportAt: string;
  openFindings: number;
  overdueFindings: number;
  connected: boolean;
  lastSeen: string | null;
  revokedAt: string | null;
  tags: string[];
}

export interface HostQuery {
  ecosystem?: string | undefined;
  rebootRequired?: boolean | undefined;
  /** ISO date-time: hosts whose agent was seen at or after it. */
  seenSince?: string | undefined;
  tag?: string | undefined;
  /** 1..1000, default 100. */
  limit?: number | undefined;
  /** The `nextCursor` of the previous page. */
  cursor?: string | undefined;
}

export const MAX_PAGE = 1000;

/** The API's host listing: FleetStore.queryHosts. */
export interface HostListQuery {
  ecosystem?: string | undefined;
  /**
   * Coverage (collector/correlate/coverage.ts), as the caller judged it from the feeds:
   * `in`: hosts of these ecosystems whose inventory is readable; `out`: every other host.
   */
  coverage?: { in: readonly string[] } | { out: readonly string[] } | undefined;
  rebootRequired?: boolean | undefined;
  /** ISO date-time (toISOString form, as the store writes): agents seen at or after it. */
  seenSince?: string | undefined;
  tag?: string | undefined;
  /** Host name prefix, case-sensitive (the store keeps names as the agent reported them). */
  hostnamePrefix?: string | undefined;
  /** Hosts after this (hostname, agent id) in the listing order. */
  after?: readonly [string, string] | undefined;
  limit: number;
}

export interface HostListItem extends HostSummary {
  machineId: string | null;
  /** The packagesHash of the last stored inventory: hosts sharing it share their matches. */
  contentHash: string;
}

interface HostListRow extends HostRow {
  machine_id: string | null;
  content_hash: string;
}

/**
 * The smallest string greater than every string starting with `prefix`, for a range scan
 * on the hostname index; the API only lets ASCII letters, digits and `._-` through, so
 * the last character has a successor.
 */
function prefixEnd(prefix: string): string {
  const last = prefix.charCodeAt(prefix.length - 1);
  return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}

function hostItem(r: HostListRow): HostListItem {
  return { ...hostOf(r), machineId: r.machine_id, contentHash: r.content_hash };
}

interface AgentRow {
  id: string;
  public_key: string;
  hostname: string;
  machine_id: string | null;
  token_id: number | null;
  enrolled_at: string;
  revoked_at: string | null;
  agent_version: string | null;
  connected: number;
  last_seen: string | null;
  last_inventory_hash: string | null;
  tags: string;
}

export interface HostRow {
  agent_id: string;
  hostname: string;
  ecosystem: string | null;
  package_count: number;
  kernel_release: string;
  kernel_managed: number;
  reboot_required: number;
  last_report_id: string;
  last_report_at: string;
  open_findings: number;
  overdue_findings: number;
  connected: number;
  last_seen: string | null;
  revoked_at: string | null;
  tags: string;
}

export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

function agentOf(r: AgentRow): AgentRecord {
  return {
    id: r.id,
    publicKey: r.public_key,
    hostname: r.hostname,
    machineId: r.machine_id,
    tokenId: r.token_id,
    enrolledAt: r.enrolled_at,
    revokedAt: r.revoked_at,
    agentVersion: r.agent_version,
    connected: r.connected === 1,
    lastSeen: r.last_seen,
    lastInventoryHash: r.last_inventory_hash,
    tags: JSON.parse(r.tags) as string[],
  };
}

export function hostOf(r: HostRow): HostSummary {
  return {
    agentId: r.agent_id,
    hostname: r.hostname,
    ecosystem: r.ecosystem,
    packageCount: r.package_count,
    kernelRelease: r.kernel_release,
    kernelManaged: r.kernel_managed === 1,
    rebootRequired: r.reboot_required === 1,
    lastReportId: r.last_report_id,
    lastReportAt: r.last_report_at,
    openFindings: r.open_findings,
    overdueFindings: r.overdue_findings,
    connected: r.connected === 1,
    lastSeen: r.last_seen,
    revokedAt: r.revoked_at,
    tags: JSON.parse(r.tags) as string[],
  };
}

function encodeCursor(hostname: string, agentId: string): string {
  return Buffer.from(JSON.stringify([hostname, agentId]), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): [string, string] {
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string') return [v[0], v[1]];
  } catch {
    // fall through to the refusal below
  }
  throw new MalformedInputError('cursor is not one this collector issued');
}

/** How long an unchanged report's last_seen may wait to be written (batched with others). */
export const TOUCH_FLUSH_MS = 1000;

export class FleetStore {
  readonly #db: Db;
  readonly #insertToken;
  readonly #takeToken;
  readonly #tokenByHash;
  readonly #insertAgent;
  readonly #agentById;
  readonly #agentByKey;
  readonly #revoke;
  readonly #setConnected;
  readonly #touch;
  readonly #pendingTouches = new Map<string, string>();
  #touchTimer: NodeJS.Timeout | undefined;
  readonly #setVersion;
  readonly #reportById;
  readonly #contentExists;
  readonly #setByHash;
  /** Parsed package sets and their JSON bytes, most recently used last. */
  readonly #sets = new Map<string, { packages: Package[]; bytes: Buffer }>();
  /**
   * What the unchanged fast path reads of each agent, so a heartbeat-like report costs no
   * row read. This connection's writes of those columns drop the agent's entry; any other
   * connection's commit (a CLI `agent revoke --db`) changes PRAGMA data_version, which
   * drops them all before the next read, so a revocation is seen by the next report.
   */
  readonly #agentState = new Map<string, { revokedAt: string | null; lastInventoryHash: string | null }>();
  readonly #dataVersion;
  #seenDataVersion = -1;
  readonly #insertContent;
  readonly #insertReport;
  readonly #upsertHost;
  readonly #setAgentInventory;
  readonly #latest;
  readonly #listHosts;
  readonly #hostById;
  readonly #setFindings;
  readonly #adoptContent;
  readonly #setContentCounts;
  readonly #hostIds;
  readonly #setTags;
  readonly #insertAudit;
  readonly #disconnectAll;
  readonly #oldReports;
  readonly #deleteReport;
  readonly #deleteOrphanContent;
  readonly #deleteOrphanTimeline: (hash: string) => void;
  readonly #enrollTx;
  readonly #ingestTx;
  readonly #batchTx;

  constructor(db: Db) {
    this.#db = db;
    this.#insertToken = db.prepare<[string, number, string, string, string, string | null]>(
      'INSERT INTO enrollment_tokens (hash, uses_left, expires_at, created_at, created_by, note) VALUES (?, ?, ?, ?, ?, ?)',
    );
    // One statement, so two agents enrolling at once can never both take a token's last use.
    this.#takeToken = db.prepare<[string, string], { id: number }>(
      'UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE hash = ? AND uses_left > 0 AND expires_at > ? RETURNING id',
    );
    this.#tokenByHash = db.prepare<[string], { uses_left: number; expires_at: string }>('SELECT uses_left, expires_at FROM enrollment_tokens WHERE hash = ?');
    this.#insertAgent = db.prepare(
      `INSERT INTO agents (id, public_key, hostname, machine_id, token_id, enrolled_at, agent_version)
       VALUES (@id, @publicKey, @hostname, @machineId, @tokenId, @now, @agentVersion)`,
    );
    this.#agentById = db.prepare<[string], AgentRow>('SELECT * FROM agents WHERE id = ?');
    this.#agentByKey = db.prepare<[string], { id: string }>('SELECT id FROM agents WHERE public_key = ?');
    this.#revoke = db.prepare<[string, string]>('UPDATE agents SET revoked_at = ?, connected = 0 WHERE id = ? AND revoked_at IS NULL');
    this.#setConnected = db.prepare<[number, string, string]>('UPDATE agents SET connected = ?, last_seen = ? WHERE id = ?');
    // max(): a deferred touch flushed late never moves last_seen backwards.
    this.#touch = db.prepare<[string, string]>("UPDATE agents SET last_seen = max(coalesce(last_seen, ''), ?) WHERE id = ?");
    this.#setVersion = db.prepare<[string, string]>('UPDATE agents SET agent_version = ? WHERE id = ?');
    // A report id is its agent's own (migration 13): the same id from another agent is another report.
    this.#reportById = db.prepare<[string, string], { one: number }>('SELECT 1 AS one FROM reports WHERE agent_id = ? AND id = ?');
    this.#dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();
    this.#contentExists = db.prepare<[string], { one: number }>('SELECT 1 AS one FROM inventory_contents WHERE hash = ?');
    this.#insertContent = db.prepare<[string, string | null, number, string, string, string]>(
      'INSERT INTO inventory_contents (hash, ecosystem, package_count, packages, created_at, package_set) VALUES (?, ?, ?, ?, ?, ?)',
    );
    // Sets over the package limit (stored before it was lowered) are never read: their parse alone stalled the loop.
    this.#setByHash = db.prepare<[string, number], string>('SELECT packages FROM inventory_contents WHERE package_set = ? AND package_count <= ? LIMIT 1').pluck();
    this.#insertReport = db.prepare<[string, string, string, string, string, string]>(
      'INSERT INTO reports (id, agent_id, received_at, inventory_hash, content_hash, envelope) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.#upsertHost = db.prepare(
      `INSERT INTO hosts (agent_id, hostname, ecosystem, package_count, kernel_release, kernel_managed, reboot_required, last_report_id, last_report_at)
       VALUES (@agentId, @hostname, @ecosystem, @packageCount, @kernelRelease, @kernelManaged, @rebootRequired, @reportId, @now)
       ON CONFLICT (agent_id) DO UPDATE SET hostname = excluded.hostname, ecosystem = excluded.ecosystem,
         package_count = excluded.package_count, kernel_release = excluded.kernel_release, kernel_managed = excluded.kernel_managed,
         reboot_required = excluded.reboot_required, last_report_id = excluded.last_report_id, last_report_at = excluded.last_report_at`,
    );
    this.#setAgentInventory = db.prepare<[string, string, string]>('UPDATE agents SET last_inventory_hash = ?, last_seen = ? WHERE id = ?');
    // The packages' text only when within the limit, so an inventory stored before the
    // limit was lowered costs no parse (and no correlation) wherever it is asked for.
    this.#latest = db.prepare<[number, string], { envelope: string; packages: string | null }>(
      `SELECT r.envelope, CASE WHEN c.package_count <= ? THEN c.packages END AS packages FROM hosts h JOIN reports r ON r.agent_id = h.agent_id AND r.id = h.last_report_id
       JOIN inventory_contents c ON c.hash = r.content_hash WHERE h.agent_id = ?`,
    );
    const hostColumns = `h.agent_id, h.hostname, h.ecosystem, h.package_count, h.kernel_release, h.kernel_managed, h.reboot_required,
       h.last_report_id, h.last_report_at, h.open_findings, h.overdue_findings, a.connected, a.last_seen, a.revoked_at, a.tags,
       a.machine_id, r.content_hash
       FROM hosts h JOIN agents a ON a.id = h.agent_id JOIN reports r ON r.agent_id = h.agent_id AND r.id = h.last_report_id`;
    // One statement for every filter combination: a NULL parameter switches its filter off.
    this.#listHosts = db.prepare<Record<string, string | number | null>, HostListRow>(
      `SELECT ${hostColumns}
       WHERE (@ecosystem IS NULL OR h.ecosystem = @ecosystem)
         AND (@coveredIn IS NULL OR (h.ecosystem IN (SELECT value FROM json_each(@coveredIn)) AND h.package_count BETWEEN 1 AND @maxPackages))
         AND (@coveredOut IS NULL OR h.ecosystem IS NULL OR h.ecosystem NOT IN (SELECT value FROM json_each(@coveredOut))
              OR h.package_count NOT BETWEEN 1 AND @maxPackages)
         AND (@reboot IS NULL OR h.reboot_required = @reboot)
         AND (@seenSince IS NULL OR a.last_seen >= @seenSince)
         AND (@tag IS NULL OR EXISTS (SELECT 1 FROM json_each(a.tags) t WHERE t.value = @tag))
         AND (@prefix IS NULL OR (h.hostname >= @prefix AND h.hostname < @prefixEnd))
         AND (@afterName IS NULL OR (h.hostname, h.agent_id) > (@afterName, @afterId))
       ORDER BY h.hostname, h.agent_id LIMIT @limit`,
    );
    this.#hostById = db.prepare<[string], HostListRow>(`SELECT ${hostColumns} WHERE h.agent_id = ?`);
    this.#setFindings = db.prepare<[number, number, string]>('UPDATE hosts SET open_findings = ?, overdue_findings = ? WHERE agent_id = ?');
    this.#adoptContent = db.prepare<[string, string, string]>(
      `UPDATE hosts SET findings_content = ?, findings_since = ? WHERE agent_id = ?
       AND findings_content IS NULL AND NOT EXISTS (SELECT 1 FROM finding_history WHERE host = hosts.agent_id)`,
    );
    this.#setContentCounts = db.prepare<[number, number, string, string, string]>(
      `UPDATE hosts SET open_findings = ?, overdue_findings = ? WHERE agent_id = ? AND findings_content = ?
       AND NOT EXISTS (SELECT 1 FROM exceptions e WHERE e.host = hosts.agent_id AND e.expires > ?)`,
    );
    this.#hostIds = db.prepare<[], string>('SELECT agent_id FROM hosts ORDER BY agent_id').pluck();
    this.#setTags = db.prepare<[string, string]>('UPDATE agents SET tags = ? WHERE id = ?');
    this.#insertAudit = db.prepare<[string, string, string, string | null, string | null, number | null]>(
      'INSERT INTO audit (at, actor, action, target, detail, uid) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.#disconnectAll = db.prepare('UPDATE agents SET connected = 0 WHERE connected = 1');
    // Newest first by arrival (rowid breaks ties); the host's current report always stays,
    // even when an air-gapped file's older date sorts it behind another.
    this.#oldReports = db.prepare<[string, string, number], { id: string; content_hash: string }>(
      `SELECT id, content_hash FROM reports WHERE agent_id = ? AND id != ?
       ORDER BY received_at DESC, rowid DESC LIMIT -1 OFFSET ?`,
    );
    this.#deleteReport = db.prepare<[string, string]>('DELETE FROM reports WHERE agent_id = ? AND id = ?');
    this.#deleteOrphanContent = db.prepare<[string, string]>(
      'DELETE FROM inventory_contents WHERE hash = ? AND NOT EXISTS (SELECT 1 FROM reports WHERE content_hash = ?)',
    );
    // Its findings timeline goes with it unless a host's history is still laid over it (history.ts drops it when that host moves on).
    this.#deleteOrphanTimeline = orphanTimelineDropper(db);
    this.#enrollTx = db.transaction(
      (token: string, agent: { publicKey: string; hostname: string; machineId: string | null; agentVersion: string | null }, now: Date) => {
        const taken = this.consumeEnrollmentToken(token, now);
        if (!taken.ok) return taken;
        const agentId = this.enrollAgent({ ...agent, tokenId: taken.tokenId }, now);
        return { ok: true as const, agentId };
      },
    );
    this.#ingestTx = db.transaction(this.#ingest.bind(this));
    // Inside #batchTx, each #ingestTx call is a SAVEPOINT: a refused report rolls back alone.
    this.#batchTx = db.transaction((items: readonly IngestItem[], now: Date) =>
      items.map((it): IngestResult | { error: unknown } => {
        try {
          return this.#ingestTx(it.agentId, it.reportId, it.hash, it.inventory, now, it.set);
        } catch (error) {
          return { error };
        }
      }),
    );
  }

  createEnrollmentToken(
    opts: { uses: number; ttlMs: number; createdBy: string; note?: string | null },
    now = new Date(),
  ): { token: string; id: number; expiresAt: string } {
    if (!Number.isInteger(opts.uses) || opts.uses < 1) throw new RangeError('an enrollment token needs at least one use');
    if (!Number.isFinite(opts.ttlMs) || opts.ttlMs <= 0) throw new RangeError('an enrollment token needs a positive lifetime');
    // One base64url token in 64 starts with '-', which `enroll --token T` reads as an option.
    let token: string;
    do token = randomBytes(32).toString('base64url');
    while (token.startsWith('-'));
    const expiresAt = new Date(now.getTime() + opts.ttlMs).toISOString();
    const id = this.#db.transaction(() => {
      const r = this.#insertToken.run(tokenHash(token), opts.uses, expiresAt, now.toISOString(), opts.createdBy, opts.note ?? null);
      const tokenId = Number(r.lastInsertRowid);
      this.audit(opts.createdBy, 'enrollment-token.create', `token:${tokenId}`, JSON.stringify({ uses: opts.uses, expiresAt, note: opts.note ?? null }), now);
      return tokenId;
    })();
    return { token, id, expiresAt };
  }

  /** Takes one use of the token; the reason says why not when it cannot. */
  consumeEnrollmentToken(token: string, now = new Date()): { ok: true; tokenId: number } | { ok: false; reason: TokenRefusal } {
    const hash = tokenHash(token);
    const taken = this.#takeToken.get(hash, now.toISOString());
    if (taken !== undefined) return { ok: true, tokenId: taken.id };
    const row = this.#tokenByHash.get(hash);
    if (row === undefined) return { ok: false, reason: 'unknown' };
    return { ok: false, reason: row.expires_at <= now.toISOString() ? 'expired' : 'used-up' };
  }

  /** Registers an agent's public key; a key that is enrolled already is refused (AgentRefusedError 'already-enrolled'). */
  enrollAgent(
    agent: { publicKey: string; hostname: string; machineId: string | null; tokenId: number | null; agentVersion?: string | null },
    now = new Date(),
  ): string {
    if (this.#agentByKey.get(agent.publicKey) !== undefined) {
      throw new AgentRefusedError('already-enrolled', 'this public key is enrolled already: make a new key to enroll again');
    }
    const id = randomUUID();
    this.#insertAgent.run({ id, publicKey: agent.publicKey, hostname: agent.hostname, machineId: agent.machineId, tokenId: agent.tokenId, now: now.toISOString(), agentVersion: agent.agentVersion ?? null });
    this.audit(`agent:${id}`, 'agent.enroll', `agent:${id}`, JSON.stringify({ hostname: agent.hostname, tokenId: agent.tokenId }), now);
    return id;
  }

  /**
   * Token use and enrollment in one transaction: a refused key does not use up the token,
   * and a token's last use cannot enroll two agents.
   */
  enrollWithToken(
    token: string,
    agent: { publicKey: string; hostname: string; machineId: string | null; agentVersion?: string | null },
    now = new Date(),
  ): { ok: true; agentId: string } | { ok: false; reason: TokenRefusal } {
    return this.#enrollTx.immediate(token, { ...agent, agentVersion: agent.agentVersion ?? null }, now);
  }

  agentById(id: string): AgentRecord | undefined {
    this.flushTouches();
    const r = this.#agentById.get(id);
    return r === undefined ? undefined : agentOf(r);
  }

  /** false when there is no such agent or it was revoked already. */
  revokeAgent(id: string, actor: string, now = new Date()): boolean {
    return this.#db.transaction(() => {
      this.#agentState.delete(id);
      const changed = this.#revoke.run(now.toISOString(), id).changes === 1;
      if (changed) this.audit(actor, 'agent.revoke', `agent:${id}`, null, now);
      return changed;
    })();
  }

  setConnected(id: string, connected: boolean, now = new Date()): void {
    this.#setConnected.run(connected ? 1 : 0, now.toISOString(), id);
  }

  /** A collector that starts has no connections, whatever the last one left in the table. */
  markAllDisconnected(): number {
    return this.#disconnectAll.run().changes;
  }

  /** last_seen for many agents in one transaction (the gateway's heartbeat tick). */
  touch(ids: Iterable<string>, now = new Date()): void {
    const at = now.toISOString();
    this.#db.transaction(() => {
      for (const id of ids) this.#touch.run(at, id);
    })();
  }

  setAgentVersion(id: string, version: string): void {
    this.#setVersion.run(version, id);
  }

  setTags(id: string, tags: readonly string[], actor: string, now = new Date()): boolean {
    return this.#db.transaction(() => {
      const changed = this.#setTags.run(JSON.stringify([...new Set(tags)].sort()), id).changes === 1;
      if (changed) this.audit(actor, 'agent.tags', `agent:${id}`, JSON.stringify(tags), now);
      return changed;
    })();
  }

  /**
   * Stores one report in one transaction; when it returns, the report is committed and
   * may be acknowledged. `hash` is the agent's inventoryHash, checked by the caller
   * against the inventory as it arrived. A null inventory means "unchanged since `hash`",
   * which must then be the last inventory stored for this agent.
   */
  ingestReport(agentId: string, reportId: string, hash: string, inventory: Inventory | null, now = new Date(), set?: PackageSetRef): IngestResult {
    if (inventory === null) {
      const fast = this.#unchanged(agentId, reportId, hash, now);
      if (fast !== undefined) return fast;
    }
    return this.#ingestTx.immediate(agentId, reportId, hash, inventory, now, set);
  }

  /**
   * Stores several reports in one transaction (one commit, one WAL append), each in its own
   * savepoint: a report that is refused (unknown agent, revoked, a stale hash) rolls back
   * alone and comes back as `{error}`; the others are stored. When this returns, every
   * result that is not an error is committed. A failing commit throws for all of them.
   */
  ingestBatch(items: readonly IngestItem[], now = new Date()): (IngestResult | { error: unknown })[] {
    return this.#batchTx.immediate(items, now);
  }

  /**
   * The packages of a set some report stored before, by its packageSetHash, or undefined.
   * The hash was computed by this collector over the packages it then stored, so a report
   * that names it gets exactly those packages.
   */
  packageSet(setHash: string): Package[] | undefined {
    const cached = this.#sets.get(setHash);
    if (cached !== undefined) {
      this.#sets.delete(setHash);
      this.#sets.set(setHash, cached);
      return cached.packages;
    }
    const json = this.#setByHash.get(setHash, LIMITS.packages);
    if (json === undefined) return undefined;
    const packages = JSON.parse(json) as Package[];
    this.#rememberSet(setHash, packages, json);
    return packages;
  }

  /**
   * The held set whose JSON is exactly these bytes (the packages' span of a full report):
   * compared byte for byte with the sets in memory first, which costs a memcmp where a
   * sha256 of 240 KB would cost half a millisecond; else hashed and looked up.
   */
  matchPackageSet(json: Buffer): { hash: string; packages: Package[] } | undefined {
    for (const [hash, set] of this.#sets) {
      if (set.bytes.length === json.length && set.bytes.equals(json)) {
        this.#sets.delete(hash);
        this.#sets.set(hash, set);
        return { hash, packages: set.packages };
      }
    }
    const hash = createHash('sha256').update(json).digest('hex');
    const packages = this.packageSet(hash);
    return packages === undefined ? undefined : { hash, packages };
  }

  #rememberSet(setHash: string, packages: Package[], json: string): void {
    this.#sets.set(setHash, { packages, bytes: Buffer.from(json, 'utf8') });
    if (this.#sets.size > PACKAGE_SET_CACHE) {
      const oldest = this.#sets.keys().next();
      if (oldest.done !== true) this.#sets.delete(oldest.value);
    }
  }

  /**
   * The common case of a healthy fleet: "unchanged since the inventory you have". Nothing
   * is stored but last_seen, so it needs no write transaction of its own: the touch is
   * batched with others and flushed within TOUCH_FLUSH_MS (or before last_seen is read).
   * Anything unusual (unknown or revoked agent, a hash the collector does not have, a
   * re-sent id) takes the transactional path, which refuses it with its code.
   */
  #unchanged(agentId: string, reportId: string, hash: string, now: Date): IngestResult | undefined {
    const agent = this.#agentStateOf(agentId);
    if (agent === undefined || agent.revokedAt !== null || agent.lastInventoryHash !== hash) return undefined;
    if (this.#reportById.get(agentId, reportId) !== undefined) return undefined;
    this.#pendingTouches.set(agentId, now.toISOString());
    this.#touchTimer ??= setTimeout(() => {
      // Closed: whoever closed it flushed first (serve does) or is a test that is done.
      if (this.#db.open) this.flushTouches();
    }, TOUCH_FLUSH_MS).unref();
    return { status: 'unchanged' };
  }

  /** The agent's revocation and last inventory hash, from #agentState (see there) or its row. */
  #agentStateOf(agentId: string): { revokedAt: string | null; lastInventoryHash: string | null } | undefined {
    // Inside a transaction a row may hold what a rollback is about to undo: read, never keep.
    if (this.#db.inTransaction) {
      const r = this.#agentById.get(agentId);
      return r === undefined ? undefined : { revokedAt: r.revoked_at, lastInventoryHash: r.last_inventory_hash };
    }
    const version = this.#dataVersion.get() as number;
    if (version !== this.#seenDataVersion) {
      this.#agentState.clear();
      this.#seenDataVersion = version;
    }
    let state = this.#agentState.get(agentId);
    if (state === undefined) {
      const r = this.#agentById.get(agentId);
      if (r === undefined) return undefined;
      state = { revokedAt: r.revoked_at, lastInventoryHash: r.last_inventory_hash };
      this.#agentState.set(agentId, state);
    }
    return state;
  }

  /** Writes the batched last_seen times of unchanged reports in one transaction. */
  flushTouches(): void {
    if (this.#touchTimer !== undefined) clearTimeout(this.#touchTimer);
    this.#touchTimer = undefined;
    if (this.#pendingTouches.size === 0) return;
    const pending = [...this.#pendingTouches];
    this.#pendingTouches.clear();
    this.#db.transaction(() => {
      for (const [id, at] of pending) this.#touch.run(at, id);
    })();
  }

  #ingest(agentId: string, reportId: string, hash: string, inventory: Inventory | null, now: Date, set: PackageSetRef | undefined): IngestResult {
    const at = now.toISOString();
    const agent = this.#agentById.get(agentId);
    if (agent === undefined) throw new AgentRefusedError('not-enrolled', `agent ${agentId} is not enrolled`);
    if (agent.revoked_at !== null) throw new AgentRefusedError('revoked', `agent ${agentId} was revoked at ${agent.revoked_at}`);
    if (this.#reportById.get(agentId, reportId) !== undefined) {
      this.#touch.run(at, agentId);
      return { status: 'duplicate' };
    }
    if (inventory === null || hash === agent.last_inventory_hash) {
      if (hash !== agent.last_inventory_hash) {
        throw new AgentRefusedError(
          'inventory-unknown',
          `report ${reportId} says the inventory is unchanged since ${hash}, but the last inventory stored for this agent is ${agent.last_inventory_hash ?? 'none'}: send the full inventory`,
        );
      }
      this.#touch.run(at, agentId);
      return { status: 'unchanged' };
    }
    const { hash: setHash, json: setJson } = set ?? packageSetRef(inventory.packages);
    const contentHash = packagesHash(inventory, setHash);
    const newContent = this.#contentExists.get(contentHash) === undefined;
    if (newContent) {
      const json = setJson ?? packageSetJson(inventory.packages);
      this.#insertContent.run(contentHash, inventory.host.ecosystem, inventory.packages.length, json, at, setHash);
      this.#rememberSet(setHash, inventory.packages, json);
    }
    const { packages: _stored, ...envelope } = inventory;
    this.#insertReport.run(reportId, agentId, at, hash, contentHash, JSON.stringify(envelope));
    this.#upsertHost.run({
      agentId,
      hostname: inventory.host.hostname,
      ecosystem: inventory.host.ecosystem,
      packageCount: inventory.packages.length,
      kernelRelease: inventory.kernel.release,
      kernelManaged: inventory.kernel.package === null ? 0 : 1,
      rebootRequired: inventory.reboot.required ? 1 : 0,
      reportId,
      now: at,
    });
    this.#agentState.delete(agentId);
    this.#setAgentInventory.run(hash, at, agentId);
    this.#pruneReports(agentId, reportId);
    return { status: 'stored', contentHash, newContent };
  }

  /**
   * Deletes the agent's reports beyond the newest REPORTS_PER_AGENT (never `current`), then
   * the inventory contents no report names any more (another agent's report keeps one).
   * Inside the report's transaction: both or neither. Not audited: a retention rule, like
   * log rotation, that changes nothing the collector believes about any host now.
   */
  #pruneReports(agentId: string, current: string): void {
    const old = this.#oldReports.all(agentId, current, REPORTS_PER_AGENT - 1);
    if (old.length === 0) return;
    for (const r of old) this.#deleteReport.run(agentId, r.id);
    for (const hash of new Set(old.map((r) => r.content_hash))) {
      this.#deleteOrphanContent.run(hash, hash);
      this.#deleteOrphanTimeline(hash);
    }
  }

  /**
   * The last stored inventory of the agent, as it was reported (collectedAt included);
   * undefined also when it lists more than LIMITS.packages packages (stored before the limit
   * was lowered): the host's row shows its package count, and its next report replaces it.
   */
  latestInventory(agentId: string): Inventory | undefined {
    const r = this.#latest.get(LIMITS.packages, agentId);
    if (r === undefined || r.packages === null) return undefined;
    const env = JSON.parse(r.envelope) as Omit<Inventory, 'packages'>;
    return {
      schema: env.schema,
      collectedAt: env.collectedAt,
      agentVersion: env.agentVersion,
      host: env.host,
      packageFormat: env.packageFormat,
      packages: JSON.parse(r.packages) as Package[],
      kernel: env.kernel,
      reboot: env.reboot,
      warnings: env.warnings,
    };
  }

  host(agentId: string): HostSummary | undefined {
    this.flushTouches();
    const r = this.#hostById.get(agentId);
    return r === undefined ? undefined : hostOf(r);
  }

  /** Keyset pagination by (hostname, agent id): stable while hosts report in between pages. */
  listHosts(q: HostQuery = {}): { hosts: HostSummary[]; nextCursor: string | null } {
    const limit = Math.min(Math.max(Math.trunc(q.limit ?? 100), 1), MAX_PAGE);
    const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
    const { hosts, more } = this.queryHosts({ ecosystem: q.ecosystem, rebootRequired: q.rebootRequired, seenSince: q.seenSince, tag: q.tag, after, limit });
    const last = hosts[hosts.length - 1];
    return { hosts, nextCursor: more && last !== undefined ? encodeCursor(last.hostname, last.agentId) : null };
  }

  /** The one host query (API, dashboard, rollouts): every filter, keyset paging by (hostname, agent id). */
  queryHosts(q: HostListQuery): { hosts: HostListItem[]; more: boolean } {
    this.flushTouches();
    const prefix = q.hostnamePrefix === undefined || q.hostnamePrefix === '' ? null : q.hostnamePrefix;
    const rows = this.#listHosts.all({
      ecosystem: q.ecosystem ?? null,
      coveredIn: q.coverage !== undefined && 'in' in q.coverage ? JSON.stringify(q.coverage.in) : null,
      coveredOut: q.coverage !== undefined && 'out' in q.coverage ? JSON.stringify(q.coverage.out) : null,
      maxPackages: LIMITS.packages,
      reboot: q.rebootRequired === undefined ? null : q.rebootRequired ? 1 : 0,
      seenSince: q.seenSince ?? null,
      tag: q.tag ?? null,
      prefix,
      prefixEnd: prefix === null ? null : prefixEnd(prefix),
      afterName: q.after?.[0] ?? null,
      afterId: q.after?.[1] ?? null,
      limit: q.limit + 1,
    });
    return { hosts: rows.slice(0, q.limit).map(hostItem), more: rows.length > q.limit };
  }

  /** One host as the listing shows it, or undefined before its first report. */
  hostItem(agentId: string): HostListItem | undefined {
    this.flushTouches();
    const r = this.#hostById.get(agentId);
    return r === undefined ? undefined : hostItem(r);
  }

  /** Agents that have a stored inventory. */
  reportedAgentIds(): string[] {
    return this.#hostIds.all();
  }

  setFindingCounts(agentId: string, open: number, overdue: number): void {
    this.#setFindings.run(open, overdue, agentId);
  }

  /**
   * Content groups' correlations (HostFindings): gives each host its content's counts when
   * its findings history is laid over that content (or it has none yet, and takes it from
   * now, as history.ts switchContent would) and it has no exception of its own in force;
   * returns how many, and the others (to be correlated one by one). Callers pass hosts in
   * agent id order: a fleet's hosts of one content lie all over the table, and in id order
   * each page of it is written once per batch instead of once per content.
   */
  setContentFindingCounts(items: readonly { agentId: string; content: string; open: number; overdue: number }[], now: Date): { set: number; others: string[] } {
    const at = now.toISOString();
    let set = 0;
    const others: string[] = [];
    for (const x of items) {
      this.#adoptContent.run(x.content, at, x.agentId);
      if (this.#setContentCounts.run(x.open, x.overdue, x.agentId, x.content, at).changes === 1) set++;
      else others.push(x.agentId);
    }
    return { set, others };
  }

  /**
   * One audit row. `uid` is the unix user of the process that writes it: for the CLI the
   * operator (the actor `cli:<name>` is only what the passwd entry said), for `serve` the
   * service account, whose API rows name the token as the actor.
   */
  audit(actor: string, action: string, target: string | null, detail: string | null, now = new Date()): void {
    this.#insertAudit.run(now.toISOString(), actor, action, target, detail, process.getuid?.() ?? null);
  }
}
