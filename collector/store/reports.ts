/**
 * Reports and the inventories they carry. Every change that must be all-or-nothing
 * (ingesting a report) is one transaction, and a caller acknowledges a report only after
 * ingest has returned (the commit).
 *
 * The packages of an inventory are stored once per content (packagesHash), so a fleet
 * built from one image keeps one copy; each stored report keeps the rest of its inventory
 * (host, kernel, reboot, warnings) as its envelope. An unchanged report (the agent sends
 * only the hash) updates last-seen and stores no row: history records changes, and 10,000
 * agents re-checking every few minutes would otherwise fill the table with copies.
 */
import { createHash } from 'node:crypto';
import { AgentRefusedError } from '../../shared/errors.ts';
import { packagesHash, packageSetJson, packageSetRef } from '../../shared/inventory-hash.ts';
import { type Inventory, LIMITS, type Package } from '../../shared/protocol.ts';
import { inTransaction } from './agents.ts';
import type { PartScope } from './part-scope.ts';
import { sql } from './sql/query.ts';

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

// A report id is its agent's own (migration 13): the same id from another agent is another report.
const reportById = sql('SELECT 1 AS one FROM reports WHERE agent_id = ? AND id = ?');
const contentExists = sql('SELECT 1 AS one FROM inventory_contents WHERE hash = ?');
// DO NOTHING: on PostgreSQL two agents may store the same new inventory at once; the row is the same.
const insertContent = sql(
  `INSERT INTO inventory_contents (hash, ecosystem, package_count, packages, created_at, package_set) VALUES (?, ?, ?, ?, ?, ?)
   ON CONFLICT (hash) DO NOTHING`,
);
// Sets over the package limit (stored before it was lowered) are never read: their parse alone stalled the loop.
const setByHash = sql('SELECT packages FROM inventory_contents WHERE package_set = ? AND package_count <= ? LIMIT 1');
const insertReport = sql('INSERT INTO reports (id, agent_id, received_at, inventory_hash, content_hash, envelope) VALUES (?, ?, ?, ?, ?, ?)');
const upsertHost = sql(
  `INSERT INTO hosts (agent_id, hostname, ecosystem, package_count, kernel_release, kernel_managed, reboot_required, last_report_id, last_report_at)
   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
   ON CONFLICT (agent_id) DO UPDATE SET hostname = excluded.hostname, ecosystem = excluded.ecosystem,
     package_count = excluded.package_count, kernel_release = excluded.kernel_release, kernel_managed = excluded.kernel_managed,
     reboot_required = excluded.reboot_required, last_report_id = excluded.last_report_id, last_report_at = excluded.last_report_at`,
);
// The packages' text only when within the limit, so an inventory stored before the
// limit was lowered costs no parse (and no correlation) wherever it is asked for.
const latest = sql(
  `SELECT r.envelope, CASE WHEN c.package_count <= ? THEN c.packages END AS packages FROM hosts h JOIN reports r ON r.agent_id = h.agent_id AND r.id = h.last_report_id
   JOIN inventory_contents c ON c.hash = r.content_hash WHERE h.agent_id = ?`,
);
// Newest first by arrival (rowid, seq on PostgreSQL, breaks ties); the host's current report
// always stays, even when an air-gapped file's older date sorts it behind another.
const oldReports = sql({
  sqlite: `SELECT id, content_hash FROM reports WHERE agent_id = ? AND id != ?
           ORDER BY received_at DESC, rowid DESC LIMIT -1 OFFSET ?`,
  postgres: `SELECT id, content_hash FROM reports WHERE agent_id = ? AND id != ?
             ORDER BY received_at DESC, seq DESC OFFSET ?`,
});
const deleteReport = sql('DELETE FROM reports WHERE agent_id = ? AND id = ?');
const deleteOrphanContent = sql('DELETE FROM inventory_contents WHERE hash = ? AND NOT EXISTS (SELECT 1 FROM reports WHERE content_hash = ?)');

/** A package set a stored report carried, to be kept in memory once its transaction has committed. */
interface SetSeen {
  hash: string;
  packages: Package[];
  json: string;
}

/** Parsed package sets and their JSON bytes, most recently used last; shared by every scope of a store. */
type SetCache = Map<string, { packages: Package[]; bytes: Buffer }>;

export class Reports {
  readonly #scope: PartScope;
  /**
   * Safe on every engine: a set is named by the sha256 of its packages, so what it holds never
   * changes; one pruned meanwhile is stored again from the report that names it.
   */
  readonly #sets: SetCache;

  constructor(scope: PartScope) {
    this.#scope = scope;
    this.#sets = scope.shared('reports.sets', (): SetCache => new Map());
  }

  /**
   * Stores one report in one transaction; when it resolves, the report is committed and
   * may be acknowledged. `hash` is the agent's inventoryHash, checked by the caller
   * against the inventory as it arrived. A null inventory means "unchanged since `hash`",
   * which must then be the last inventory stored for this agent. Refusals are
   * AgentRefusedErrors ('not-enrolled', 'revoked', 'inventory-unknown').
   */
  async ingest(agentId: string, reportId: string, hash: string, inventory: Inventory | null, now = new Date(), set?: PackageSetRef): Promise<IngestResult> {
    if (inventory === null && !inTransaction(this.#scope.ex)) {
      const fast = await this.#unchanged(agentId, reportId, hash, now);
      if (fast !== undefined) return fast;
    }
    const { result, seen } = await this.#scope.atomic((s) => ingestIn(s, agentId, reportId, hash, inventory, now, set));
    if (seen !== undefined) this.#rememberSet(seen.hash, seen.packages, seen.json);
    return result;
  }

  /**
   * Stores several reports in one transaction (one commit, one WAL append), each in its own
   * savepoint: a report that is refused (unknown agent, revoked, a stale hash) rolls back
   * alone and comes back as `{error}`; the others are stored. When this resolves, every
   * result that is not an error is committed. A failing commit rejects for all of them.
   */
  async ingestBatch(items: readonly IngestItem[], now = new Date()): Promise<(IngestResult | { error: unknown })[]> {
    const done = await this.#scope.atomic(async (s) => {
      const out: ({ result: IngestResult; seen: SetSeen | undefined } | { error: unknown })[] = [];
      for (const it of items) {
        try {
          out.push(await s.atomic((one) => ingestIn(one, it.agentId, it.reportId, it.hash, it.inventory, now, it.set)));
        } catch (error) {
          out.push({ error });
        }
      }
      return out;
    });
    return done.map((d) => {
      if ('error' in d) return d;
      if (d.seen !== undefined) this.#rememberSet(d.seen.hash, d.seen.packages, d.seen.json);
      return d.result;
    });
  }

  /**
   * The packages of a set some report stored before, by its packageSetHash, or undefined.
   * The hash was computed by this collector over the packages it then stored, so a report
   * that names it gets exactly those packages.
   */
  async packageSet(setHash: string): Promise<Package[] | undefined> {
    const cached = this.#sets.get(setHash);
    if (cached !== undefined) {
      this.#sets.delete(setHash);
      this.#sets.set(setHash, cached);
      return cached.packages;
    }
    const row = await this.#scope.ex.get<{ packages: string }>(setByHash, [setHash, LIMITS.packages]);
    if (row === undefined) return undefined;
    const packages = JSON.parse(row.packages) as Package[];
    this.#rememberSet(setHash, packages, row.packages);
    return packages;
  }

  /**
   * The held set whose JSON is exactly these bytes (the packages' span of a full report):
   * compared byte for byte with the sets in memory first, which costs a memcmp where a
   * sha256 of 240 KB would cost half a millisecond; else hashed and looked up.
   */
  async matchPackageSet(json: Buffer): Promise<{ hash: string; packages: Package[] } | undefined> {
    for (const [hash, set] of this.#sets) {
      if (set.bytes.length === json.length && set.bytes.equals(json)) {
        this.#sets.delete(hash);
        this.#sets.set(hash, set);
        return { hash, packages: set.packages };
      }
    }
    const hash = createHash('sha256').update(json).digest('hex');
    const packages = await this.packageSet(hash);
    return packages === undefined ? undefined : { hash, packages };
  }

  #rememberSet(setHash: string, packages: Package[], json: string): void {
    this.#sets.delete(setHash);
    this.#sets.set(setHash, { packages, bytes: Buffer.from(json, 'utf8') });
    if (this.#sets.size > PACKAGE_SET_CACHE) {
      const oldest = this.#sets.keys().next();
      if (oldest.done !== true) this.#sets.delete(oldest.value);
    }
  }

  /**
   * The common case of a healthy fleet: "unchanged since the inventory you have". Nothing
   * is stored but last_seen, so it needs no write transaction of its own: the touch is
   * batched with others (Agents.seenLater). Anything unusual (unknown or revoked agent, a
   * hash the collector does not have, a re-sent id) takes the transactional path, which
   * refuses it with its reason.
   */
  async #unchanged(agentId: string, reportId: string, hash: string, now: Date): Promise<IngestResult | undefined> {
    const agents = this.#scope.store.agents;
    const agent = await agents.reportState(agentId);
    if (agent === undefined || agent.revokedAt !== null || agent.lastInventoryHash !== hash) return undefined;
    if ((await this.#scope.ex.get(reportById, [agentId, reportId])) !== undefined) return undefined;
    await agents.seenLater(agentId, now);
    return { status: 'unchanged' };
  }

  /**
   * The last stored inventory of the agent, as it was reported (collectedAt included);
   * undefined also when it lists more than LIMITS.packages packages (stored before the limit
   * was lowered): the host's row shows its package count, and its next report replaces it.
   */
  async latestInventory(agentId: string): Promise<Inventory | undefined> {
    const r = await this.#scope.ex.get<{ envelope: string; packages: string | null }>(latest, [LIMITS.packages, agentId]);
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
}

/**
 * One report's statements, inside its transaction (or its savepoint in a batch). Statements
 * only: PostgreSQL may run it again; the set it stored is kept in memory by the caller once
 * the transaction has resolved (`seen`).
 */
async function ingestIn(
  s: PartScope,
  agentId: string,
  reportId: string,
  hash: string,
  inventory: Inventory | null,
  now: Date,
  set: PackageSetRef | undefined,
): Promise<{ result: IngestResult; seen: SetSeen | undefined }> {
  const at = now.toISOString();
  const agents = s.store.agents;
  const agent = await agents.reportState(agentId);
  if (agent === undefined) throw new AgentRefusedError('not-enrolled', `agent ${agentId} is not enrolled`);
  if (agent.revokedAt !== null) throw new AgentRefusedError('revoked', `agent ${agentId} was revoked at ${agent.revokedAt}`);
  if ((await s.ex.get(reportById, [agentId, reportId])) !== undefined) {
    await agents.seen(agentId, now);
    return { result: { status: 'duplicate' }, seen: undefined };
  }
  if (inventory === null || hash === agent.lastInventoryHash) {
    if (hash !== agent.lastInventoryHash) {
      throw new AgentRefusedError(
        'inventory-unknown',
        `report ${reportId} says the inventory is unchanged since ${hash}, but the last inventory stored for this agent is ${agent.lastInventoryHash ?? 'none'}: send the full inventory`,
      );
    }
    await agents.seen(agentId, now);
    return { result: { status: 'unchanged' }, seen: undefined };
  }
  const { hash: setHash, json: setJson } = set ?? packageSetRef(inventory.packages);
  const contentHash = packagesHash(inventory, setHash);
  let newContent = false;
  let seen: SetSeen | undefined;
  // Looked up first: an inventory most agents share is not serialised and sent again to be ignored.
  if ((await s.ex.get(contentExists, [contentHash])) === undefined) {
    const json = setJson ?? packageSetJson(inventory.packages);
    newContent = (await s.ex.run(insertContent, [contentHash, inventory.host.ecosystem, inventory.packages.length, json, at, setHash])) === 1;
    seen = { hash: setHash, packages: inventory.packages, json };
  }
  const { packages: _stored, ...envelope } = inventory;
  await s.ex.run(insertReport, [reportId, agentId, at, hash, contentHash, JSON.stringify(envelope)]);
  await s.ex.run(upsertHost, [
    agentId,
    inventory.host.hostname,
    inventory.host.ecosystem,
    inventory.packages.length,
    inventory.kernel.release,
    inventory.kernel.package === null ? 0 : 1,
    inventory.reboot.required ? 1 : 0,
    reportId,
    at,
  ]);
  await agents.recordInventory(agentId, hash, now);
  await pruneReports(s, agentId, reportId);
  return { result: { status: 'stored', contentHash, newContent }, seen };
}

/**
 * Deletes the agent's reports beyond the newest REPORTS_PER_AGENT (never `current`), then
 * the inventory contents no report names any more (another agent's report keeps one).
 * Inside the report's transaction: both or neither. Not audited: a retention rule, like
 * log rotation, that changes nothing the collector believes about any host now.
 */
async function pruneReports(s: PartScope, agentId: string, current: string): Promise<void> {
  const old = await s.ex.all<{ id: string; content_hash: string }>(oldReports, [agentId, current, REPORTS_PER_AGENT - 1]);
  if (old.length === 0) return;
  for (const r of old) await s.ex.run(deleteReport, [agentId, r.id]);
  for (const hash of new Set(old.map((r) => r.content_hash))) {
    await s.ex.run(deleteOrphanContent, [hash, hash]);
    // Its findings timeline goes with it unless a host's history is still laid over it (history.ts drops it when that host moves on).
    await s.store.history.dropOrphanTimeline(hash);
  }
}
