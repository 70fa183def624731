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
import type { SqlExecutor } from './sql/executor.ts';
import { CONCURRENT_RETRIES, lostToConcurrent } from './sql/postgres.ts';
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

/*
 * PostgreSQL: a report in one statement, one round trip (POSTGRES.md "Ingest in one statement").
 * What ingestIn does statement by statement on SQLite, decided and written here at once: the
 * agent's state, "is this report stored", "is this content stored" (`act` says what the report
 * does), then, for a report to store, the content (only when it was sent: `need-packages` asks
 * for it, so the packages of a content most agents share are not sent to be ignored), the
 * report, the host, the agent's last inventory and the prune with the contents and findings
 * timelines nobody names any more; for a duplicate or an unchanged report, last_seen.
 *
 * Every part sees the database as it was when the statement began, not each other's rows, so
 * the prune is written against that: `old` is the agent's reports beyond the newest
 * REPORTS_PER_AGENT - 1 others (the new report is not among them, as ingestIn's `id != current`
 * leaves it out), a content goes when no report outside `old` names it and it is not the new
 * report's, and a timeline goes with its content (a pruned report's content exists until then:
 * its foreign key) unless a host's history is laid over it, as history.ts's dropOrphanTimeline
 * decides. Foreign keys are checked at the statement's end, so the new report, host and
 * content name each other in one statement. A refused report writes nothing.
 */
const ingestOne = sql({
  postgres: `WITH p AS (
    SELECT ?::text AS agent, ?::text AS report, ?::text AS hash, ?::text AS at, ?::int AS has_inventory, ?::text AS content,
      ?::text AS packages, ?::text AS package_set, ?::text AS ecosystem, ?::bigint AS package_count, ?::text AS envelope,
      ?::text AS hostname, ?::text AS kernel_release, ?::bigint AS kernel_managed, ?::bigint AS reboot_required
  ), state AS (
    SELECT a.id IS NOT NULL AS enrolled, a.revoked_at, a.last_inventory_hash,
      EXISTS (SELECT 1 FROM reports r WHERE r.agent_id = p.agent AND r.id = p.report) AS duplicate,
      EXISTS (SELECT 1 FROM inventory_contents c WHERE c.hash = p.content) AS have_content
    FROM p LEFT JOIN agents a ON a.id = p.agent
  ), act AS (
    SELECT CASE
      WHEN NOT s.enrolled OR s.revoked_at IS NOT NULL THEN 'refused'
      WHEN s.duplicate OR s.last_inventory_hash = p.hash THEN 'touch'
      WHEN p.has_inventory = 0 THEN 'refused'
      WHEN s.have_content OR p.packages IS NOT NULL THEN 'store'
      ELSE 'need-packages' END AS act
    FROM p, state s
  ), new_content AS (
    INSERT INTO inventory_contents (hash, ecosystem, package_count, packages, created_at, package_set)
    SELECT p.content, p.ecosystem, p.package_count, p.packages, p.at, p.package_set FROM p, act, state
    WHERE act.act = 'store' AND NOT state.have_content
    ON CONFLICT (hash) DO NOTHING RETURNING 1
  ), new_report AS (
    INSERT INTO reports (id, agent_id, received_at, inventory_hash, content_hash, envelope)
    SELECT p.report, p.agent, p.at, p.hash, p.content, p.envelope FROM p, act WHERE act.act = 'store'
  ), host AS (
    INSERT INTO hosts (agent_id, hostname, ecosystem, package_count, kernel_release, kernel_managed, reboot_required, last_report_id, last_report_at)
    SELECT p.agent, p.hostname, p.ecosystem, p.package_count, p.kernel_release, p.kernel_managed, p.reboot_required, p.report, p.at FROM p, act
    WHERE act.act = 'store'
    ON CONFLICT (agent_id) DO UPDATE SET hostname = excluded.hostname, ecosystem = excluded.ecosystem,
      package_count = excluded.package_count, kernel_release = excluded.kernel_release, kernel_managed = excluded.kernel_managed,
      reboot_required = excluded.reboot_required, last_report_id = excluded.last_report_id, last_report_at = excluded.last_report_at
  ), agent AS (
    UPDATE agents a SET
      last_inventory_hash = CASE WHEN act.act = 'store' THEN p.hash ELSE a.last_inventory_hash END,
      last_seen = CASE WHEN act.act = 'store' THEN p.at ELSE greatest(coalesce(a.last_seen, ''), p.at) END
    FROM p, act WHERE a.id = p.agent AND act.act IN ('store', 'touch')
  ), old AS (
    SELECT r.seq, r.content_hash FROM reports r, p, act WHERE act.act = 'store' AND r.agent_id = p.agent
    ORDER BY r.received_at DESC, r.seq DESC OFFSET ${REPORTS_PER_AGENT - 1}
  ), pruned AS (
    DELETE FROM reports r WHERE r.seq IN (SELECT seq FROM old)
  ), orphan AS (
    DELETE FROM inventory_contents c
    WHERE c.hash IN (SELECT content_hash FROM old) AND c.hash <> (SELECT content FROM p)
      AND NOT EXISTS (SELECT 1 FROM reports r WHERE r.content_hash = c.hash AND r.seq NOT IN (SELECT seq FROM old))
    RETURNING c.hash
  ), timeline AS (
    DELETE FROM content_findings f
    WHERE f.content IN (SELECT hash FROM orphan) AND NOT EXISTS (SELECT 1 FROM hosts h WHERE h.findings_content = f.content)
    RETURNING f.content
  ), texts AS (
    DELETE FROM content_finding_texts t
    WHERE t.content IN (SELECT content_hash FROM old)
      AND (t.content IN (SELECT content FROM timeline) OR NOT EXISTS (SELECT 1 FROM content_findings f WHERE f.content = t.content))
  )
  SELECT s.enrolled, s.revoked_at, s.last_inventory_hash, s.duplicate, act.act, EXISTS (SELECT 1 FROM new_content) AS new_content
  FROM state s, act`,
});

interface IngestRow {
  enrolled: boolean;
  revoked_at: string | null;
  last_inventory_hash: string | null;
  duplicate: boolean;
  act: 'refused' | 'touch' | 'store' | 'need-packages';
  new_content: boolean;
}

/** PostgreSQL's unchanged fast path in one read: what reportState and reportById read, together. */
const unchangedState = sql({
  postgres: `SELECT a.revoked_at, a.last_inventory_hash, EXISTS (SELECT 1 FROM reports r WHERE r.agent_id = a.id AND r.id = ?) AS duplicate
             FROM agents a WHERE a.id = ?`,
});

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
   * Stores one report in one transaction (on PostgreSQL, one statement: ingestOne); when it
   * resolves, the report is committed and may be acknowledged. `hash` is the agent's inventoryHash, checked by the caller
   * against the inventory as it arrived. A null inventory means "unchanged since `hash`",
   * which must then be the last inventory stored for this agent. Refusals are
   * AgentRefusedErrors ('not-enrolled', 'revoked', 'inventory-unknown').
   */
  async ingest(agentId: string, reportId: string, hash: string, inventory: Inventory | null, now = new Date(), set?: PackageSetRef): Promise<IngestResult> {
    const ex = this.#scope.ex;
    if (inventory === null && !inTransaction(ex)) {
      const fast = await this.#unchanged(agentId, reportId, hash, now);
      if (fast !== undefined) return fast;
    }
    let done: { result: IngestResult; seen: SetSeen | undefined };
    if (ex.dialect === 'postgres' && !inTransaction(ex)) {
      // One statement is a transaction of its own: no BEGIN and COMMIT round trips around it.
      done = await aloneOnPostgres(() => ingestOnPostgres(ex, agentId, reportId, hash, inventory, now, set));
    } else {
      done = await this.#scope.atomic((s) => ingestIn(s, agentId, reportId, hash, inventory, now, set));
    }
    const { result, seen } = done;
    if (seen !== undefined) this.#rememberSet(seen.hash, seen.packages, seen.json);
    return result;
  }

  /**
   * Stores several reports in one transaction (one commit, one WAL append), each in its own
   * savepoint: a report that is refused (unknown agent, revoked, a stale hash) rolls back
   * alone and comes back as `{error}`; the others are stored. When this resolves, every
   * result that is not an error is committed. A failing commit rejects for all of them. On
   * PostgreSQL a batch of one is ingest's one statement, which is its own commit, and a
   * larger one runs without savepoints unless one of its reports fails.
   */
  async ingestBatch(items: readonly IngestItem[], now = new Date()): Promise<(IngestResult | { error: unknown })[]> {
    const ex = this.#scope.ex;
    const [only] = items;
    if (items.length === 1 && only !== undefined && ex.dialect === 'postgres' && !inTransaction(ex)) {
      // A batch of one (a quiet fleet's every report) is its one statement, which is its
      // commit: a refusal comes back as its error, a failure of the statement rejects, as a
      // failing commit does.
      try {
        return [await this.ingest(only.agentId, only.reportId, only.hash, only.inventory, now, only.set)];
      } catch (error) {
        if (error instanceof AgentRefusedError) return [{ error }];
        throw error;
      }
    }
    const { order, from } = ex.dialect === 'postgres' ? contentOrder(items) : { order: items, from: null };
    let done: ({ result: IngestResult; seen: SetSeen | undefined } | { error: unknown })[] | undefined;
    if (ex.dialect === 'postgres' && !inTransaction(ex)) done = await this.#batchWithoutSavepoints(order, now);
    done ??= await this.#scope.atomic(async (s) => {
      const out: ({ result: IngestResult; seen: SetSeen | undefined } | { error: unknown })[] = [];
      for (const it of order) {
        try {
          out.push(await s.atomic((one) => ingestIn(one, it.agentId, it.reportId, it.hash, it.inventory, now, it.set)));
        } catch (error) {
          // Lost to a concurrent transaction (a deadlock, a content pruned meanwhile): the
          // whole batch runs again, as any transaction does. As its item's error, the agent
          // was refused a report that only had to be sent again.
          if (lostToConcurrent(error)) throw error;
          out.push({ error });
        }
      }
      return out;
    });
    const ran = done;
    const inOrder = from === null ? ran : items.map((_, i) => ran[from.indexOf(i)] ?? { error: new Error('a report of the batch has no result') });
    return inOrder.map((d) => {
      if ('error' in d) return d;
      if (d.seen !== undefined) this.#rememberSet(d.seen.hash, d.seen.packages, d.seen.json);
      return d.result;
    });
  }

  /**
   * PostgreSQL: the batch in one transaction without a savepoint around each report (which
   * costs a SAVEPOINT and a RELEASE round trip beside the report's one statement). A refusal
   * is decided by the statement, which then wrote nothing, so the transaction goes on; a
   * statement that fails leaves the transaction aborted, so it is rolled back and undefined
   * returned: the caller runs the batch again with savepoints, where that report fails alone.
   * A failing commit rejects, as with savepoints.
   */
  async #batchWithoutSavepoints(items: readonly IngestItem[], now: Date): Promise<({ result: IngestResult; seen: SetSeen | undefined } | { error: unknown })[] | undefined> {
    try {
      return await this.#scope.atomic(async (s) => {
        const out: ({ result: IngestResult; seen: SetSeen | undefined } | { error: unknown })[] = [];
        for (const it of items) {
          try {
            out.push(await ingestOnPostgres(s.ex, it.agentId, it.reportId, it.hash, it.inventory, now, it.set));
          } catch (error) {
            if (!(error instanceof AgentRefusedError)) throw new StatementFailed(error);
            out.push({ error });
          }
        }
        return out;
      });
    } catch (err) {
      if (err instanceof StatementFailed) return undefined;
      throw err;
    }
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
    if (this.#scope.ex.dialect === 'postgres') {
      // No cache of the agent's row there (agents.ts reportState): one read instead of two.
      const r = await this.#scope.ex.get<{ revoked_at: string | null; last_inventory_hash: string | null; duplicate: boolean }>(unchangedState, [reportId, agentId]);
      if (r === undefined || r.revoked_at !== null || r.last_inventory_hash !== hash || r.duplicate) return undefined;
      await agents.seenLater(agentId, now);
      return { status: 'unchanged' };
    }
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
 * A batch's reports in the order PostgreSQL writes them: by content. Two batches running at
 * once (on two replicas, or two connections of one) that store the same new contents in
 * different orders each wait for the other's uncommitted row, and PostgreSQL kills one as a
 * deadlock; in one order they queue instead. Kept as they came when an agent has two
 * reports in the batch (their order is the agent's).
 */
function contentOrder(items: readonly IngestItem[]): { order: readonly IngestItem[]; from: number[] | null } {
  if (items.length < 2 || new Set(items.map((it) => it.agentId)).size !== items.length) return { order: items, from: null };
  const keyed = items.map((it, i) => {
    // The set's hash is computed here once and passed on: the report's statement needs it too.
    const set = it.set ?? packageSetRef(it.inventory.packages);
    return { it: { ...it, set }, key: packagesHash(it.inventory, set.hash), i };
  });
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.i - b.i));
  return { order: keyed.map((k) => k.it), from: keyed.map((k) => k.i) };
}

/** A report's statement failed inside a batch run without savepoints (Reports.#batchWithoutSavepoints). */
class StatementFailed extends Error {
  constructor(cause: unknown) {
    super('a report of the batch failed', { cause });
  }
}

/**
 * Runs `fn`, one statement outside a transaction, again when PostgreSQL refused it for a
 * concurrent transaction's sake (as PostgresDatabase.transaction does a transaction): two
 * agents' reports naming a new content, or a prune elsewhere deleting the content a report
 * names, which the next run stores again.
 */
async function aloneOnPostgres<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt > CONCURRENT_RETRIES || !lostToConcurrent(err)) throw err;
    }
  }
}

/**
 * ingestIn on PostgreSQL: one statement (ingestOne), or two when the report's content is not
 * stored yet (the second sends its packages). Refusals are decided by the statement, which
 * then writes nothing, and thrown here with ingestIn's reasons.
 */
async function ingestOnPostgres(
  ex: SqlExecutor,
  agentId: string,
  reportId: string,
  hash: string,
  inventory: Inventory | null,
  now: Date,
  set: PackageSetRef | undefined,
): Promise<{ result: IngestResult; seen: SetSeen | undefined }> {
  const ref = inventory === null ? undefined : (set ?? packageSetRef(inventory.packages));
  const contentHash = inventory === null || ref === undefined ? null : packagesHash(inventory, ref.hash);
  const envelope = inventory === null ? null : envelopeJson(inventory);
  let json: string | null = null;
  for (;;) {
    const row = await ex.get<IngestRow>(ingestOne, [
      agentId,
      reportId,
      hash,
      now.toISOString(),
      inventory === null ? 0 : 1,
      contentHash,
      json,
      ref?.hash ?? null,
      inventory?.host.ecosystem ?? null,
      inventory?.packages.length ?? null,
      envelope,
      inventory?.host.hostname ?? null,
      inventory?.kernel.release ?? null,
      inventory === null ? null : inventory.kernel.package === null ? 0 : 1,
      inventory === null ? null : inventory.reboot.required ? 1 : 0,
    ]);
    if (row === undefined || !row.enrolled) throw new AgentRefusedError('not-enrolled', `agent ${agentId} is not enrolled`);
    if (row.revoked_at !== null) throw new AgentRefusedError('revoked', `agent ${agentId} was revoked at ${row.revoked_at}`);
    if (row.act === 'touch') return { result: { status: row.duplicate ? 'duplicate' : 'unchanged' }, seen: undefined };
    if (row.act === 'refused') {
      throw new AgentRefusedError(
        'inventory-unknown',
        `report ${reportId} says the inventory is unchanged since ${hash}, but the last inventory stored for this agent is ${row.last_inventory_hash ?? 'none'}: send the full inventory`,
      );
    }
    // Only a report with an inventory is stored or asks for its packages.
    if (inventory === null || ref === undefined || contentHash === null) throw new Error(`ingest on PostgreSQL: '${row.act}' for a report without an inventory`);
    if (row.act === 'store') {
      const seen = json === null ? undefined : { hash: ref.hash, packages: inventory.packages, json };
      return { result: { status: 'stored', contentHash, newContent: row.new_content }, seen };
    }
    json = ref.json ?? packageSetJson(inventory.packages);
  }
}

/**
 * One report's statements, inside its transaction (or its savepoint in a batch); on
 * PostgreSQL, ingestOnPostgres's. Statements only: PostgreSQL may run it again; the set it stored is kept in memory by the caller once
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
  if (s.ex.dialect === 'postgres') return ingestOnPostgres(s.ex, agentId, reportId, hash, inventory, now, set);
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
  await s.ex.run(insertReport, [reportId, agentId, at, hash, contentHash, envelopeJson(inventory)]);
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

/** What a stored report keeps of its inventory beside the content: all but the packages. */
function envelopeJson(inventory: Inventory): string {
  const { packages: _stored, ...envelope } = inventory;
  return JSON.stringify(envelope);
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
