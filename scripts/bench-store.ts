/**
 * The store's hot paths on SQLite and PostgreSQL for `npm run bench -- --only store-hotpaths`
 * (issue 12 §2): the measurement behind collector/store/POSTGRES.md's choice of how one
 * store interface gets two implementations without two hand-kept copies of every query.
 *
 * Two paths, each as the collector runs it:
 * - report ingest, one transaction per report: the agent's row, "is this report stored",
 *   "is this content stored" (a new content's packages inserted), the report, the host
 *   upsert, the agent's last inventory, and the prune of reports beyond the newest 8 with
 *   the inventories and findings timelines nobody names any more;
 * - findings write, one transaction per inventory content: each finding's timeline row
 *   upserted with its text, then every host of that content given its counts.
 *
 * Each path is run four ways over the same real data (the RHEL 9.5 image of ../shared/data,
 * CONTENTS contents drifting from it, AGENTS agents): SQLite synchronously, as today (the
 * baseline: the Fleet's reports.ingest and the findings statements in one better-sqlite3
 * transaction); SQLite through the shared async executor (collector/store/sql/), one query
 * text for both engines; PostgreSQL through the same executor and the same query texts, one
 * report at a time and 16 at once (agents report concurrently; PostgreSQL commits them side
 * by side); and, for findings, PostgreSQL with one multi-row statement per table
 * (`unnest` of arrays) instead of one statement per row. Both engines are durable: SQLite
 * WAL with synchronous=NORMAL as the collector opens it, PostgreSQL with fsync and
 * synchronous_commit on (shared/testing/postgres.ts `durable`).
 *
 * Ingest is also run through the store's own Reports (store/reports.ts), the code the
 * gateway calls: on SQLite a report at a time (the baseline), on PostgreSQL one at a time and
 * 16 at once, each for full reports and then for as many unchanged ones (the hash alone, a
 * healthy fleet's traffic), and full reports 16 a batch (ingestBatch, as the gateway sends
 * the reports of one event-loop turn), so a change to that path shows here against SQLite
 * in one run.
 *
 * Self-check: every way must leave the same rows (reports, contents, hosts, findings and
 * their texts, counts); a way that does not is marked invalid.
 *
 * PW_BENCH_STORE=AGENTS,CONTENTS,ROUNDS sets the size (default 1000,40,10).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostInventory } from '../shared/testing/rollout-bench.ts';
import { openDatabase, type Db } from '../collector/store/db.ts';
import { type AsyncStore, openPostgresStore, storeOn } from '../collector/store/store.ts';
import type { SqlDatabase, SqlExecutor } from '../collector/store/sql/executor.ts';
import { migratePostgres } from '../collector/store/postgres/migrate.ts';
import { PostgresDatabase } from '../collector/store/sql/postgres.ts';
import { sql, sqliteText } from '../collector/store/sql/query.ts';
import { SqliteDatabase } from '../collector/store/sql/sqlite.ts';
import { inventoryHash, packageSetRef, packagesHash } from '../shared/inventory-hash.ts';
import type { Inventory } from '../shared/protocol.ts';
import { generateKeyPair } from '../shared/signing.ts';
import { startPostgres } from '../shared/testing/postgres.ts';
import { needs, TOOLS } from '../shared/testing/system-tools.ts';

/** bench.ts's figure(), passed in (bench.ts runs its main on import). */
export type MakeStoreFigure<F> = (
  section: 'store-hotpaths',
  name: string,
  value: number,
  unit: '/s' | 'ms',
  baseline: { name: string; value: number } | null,
  options?: { aim?: (value: number, ratio: number | null) => { text: string; met: boolean }; note?: string; invalid?: string | null },
) => F;

const NOW = new Date('2026-11-26T18:00:00.000Z');
const REPORTS_PER_AGENT = 8;
const FINDINGS_PER_CONTENT = 250;
const CONCURRENCY = 16;
const DRIFT_BITS = 11;

function sizeFromEnv(): { agents: number; contents: number; rounds: number } {
  const text = process.env.PW_BENCH_STORE;
  if (text === undefined || text === '') return { agents: 1000, contents: 40, rounds: 10 };
  const [a, c, r] = text.split(',').map((s) => Number(s.trim()));
  if (a === undefined || c === undefined || r === undefined || ![a, c, r].every((n) => Number.isInteger(n) && n >= 1) || c > 2 ** DRIFT_BITS || a < c) {
    throw new Error(`PW_BENCH_STORE=${text}: expected AGENTS,CONTENTS,ROUNDS, whole numbers from 1, CONTENTS at most ${2 ** DRIFT_BITS} and at most AGENTS`);
  }
  return { agents: a, contents: c, rounds: r };
}

/** The image with the packages of content `i`'s zero bits left out (as bench-fanout.ts drifts it). */
function contentsOf(count: number): Inventory[] {
  const image = hostInventory({ hostname: 'image' });
  const droppable = image.packages.filter((p) => p.source !== 'kernel').map((p) => p.name);
  const step = Math.floor(droppable.length / DRIFT_BITS);
  const bits = Array.from({ length: DRIFT_BITS }, (_, b) => droppable[b * step] as string);
  return Array.from({ length: count }, (_, i) => {
    const left = new Set(bits.filter((_, b) => ((i >> b) & 1) === 0));
    const inv = structuredClone(image);
    inv.packages = inv.packages.filter((p) => !left.has(p.name));
    return inv;
  });
}

interface Report {
  agentId: string;
  reportId: string;
  hash: string;
  inventory: Inventory;
  set: { hash: string; json: string };
}

interface Finding {
  package: string;
  advisory: string;
  status: 'open' | 'overdue';
  text: string;
}

// The shared query texts: one per statement, a dialect pair only where the engines differ.
const Q = {
  enroll: sql('INSERT INTO agents (id, public_key, hostname, machine_id, token_id, enrolled_at, agent_version) VALUES (?, ?, ?, NULL, NULL, ?, NULL)'),
  agent: sql('SELECT revoked_at, last_inventory_hash FROM agents WHERE id = ?'),
  reportExists: sql('SELECT 1 AS one FROM reports WHERE agent_id = ? AND id = ?'),
  contentExists: sql('SELECT 1 AS one FROM inventory_contents WHERE hash = ?'),
  // DO NOTHING: on PostgreSQL two agents can store the same new inventory at once; the second waits for the first and keeps its row.
  insertContent: sql(
    'INSERT INTO inventory_contents (hash, ecosystem, package_count, packages, created_at, package_set) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING',
  ),
  insertReport: sql('INSERT INTO reports (id, agent_id, received_at, inventory_hash, content_hash, envelope) VALUES (?, ?, ?, ?, ?, ?)'),
  upsertHost: sql(
    `INSERT INTO hosts (agent_id, hostname, ecosystem, package_count, kernel_release, kernel_managed, reboot_required, last_report_id, last_report_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (agent_id) DO UPDATE SET hostname = excluded.hostname, ecosystem = excluded.ecosystem,
       package_count = excluded.package_count, kernel_release = excluded.kernel_release, kernel_managed = excluded.kernel_managed,
       reboot_required = excluded.reboot_required, last_report_id = excluded.last_report_id, last_report_at = excluded.last_report_at`,
  ),
  setAgentInventory: sql('UPDATE agents SET last_inventory_hash = ?, last_seen = ? WHERE id = ?'),
  // The one dialect pair of the ingest path: SQLite's arrival order is its rowid, PostgreSQL's a sequence.
  oldReports: sql({
    sqlite: 'SELECT id, content_hash FROM reports WHERE agent_id = ? AND id != ? ORDER BY received_at DESC, rowid DESC LIMIT -1 OFFSET ?',
    postgres: 'SELECT id, content_hash FROM reports WHERE agent_id = ? AND id != ? ORDER BY received_at DESC, seq DESC OFFSET ?',
  }),
  deleteReport: sql('DELETE FROM reports WHERE agent_id = ? AND id = ?'),
  deleteOrphanContent: sql('DELETE FROM inventory_contents WHERE hash = ? AND NOT EXISTS (SELECT 1 FROM reports WHERE content_hash = ?)'),
  deleteOrphanTimeline: sql(
    `DELETE FROM content_findings WHERE content = ?
     AND NOT EXISTS (SELECT 1 FROM hosts WHERE findings_content = ?) AND NOT EXISTS (SELECT 1 FROM inventory_contents WHERE hash = ?)`,
  ),
  deleteOrphanTexts: sql('DELETE FROM content_finding_texts WHERE content = ? AND NOT EXISTS (SELECT 1 FROM content_findings WHERE content = ?)'),
  upsertFinding: sql(
    `INSERT INTO content_findings (content, package, advisory, first_seen, last_seen, resolved, status) VALUES (?, ?, ?, ?, ?, NULL, ?)
     ON CONFLICT (content, package, advisory) DO UPDATE SET
       first_seen = CASE WHEN content_findings.resolved IS NULL THEN content_findings.first_seen ELSE excluded.first_seen END,
       last_seen = excluded.last_seen, resolved = NULL, status = excluded.status`,
  ),
  upsertText: sql(
    `INSERT INTO content_finding_texts (content, package, advisory, finding) VALUES (?, ?, ?, ?)
     ON CONFLICT (content, package, advisory) DO UPDATE SET finding = excluded.finding`,
  ),
  // PostgreSQL only: every finding of a content in one statement per table.
  upsertFindingsMany: sql({
    postgres: `INSERT INTO content_findings (content, package, advisory, first_seen, last_seen, resolved, status)
      SELECT ?, p, a, ?, ?, NULL, s FROM unnest(?::text[], ?::text[], ?::text[]) AS f (p, a, s)
      ON CONFLICT (content, package, advisory) DO UPDATE SET
        first_seen = CASE WHEN content_findings.resolved IS NULL THEN content_findings.first_seen ELSE excluded.first_seen END,
        last_seen = excluded.last_seen, resolved = NULL, status = excluded.status`,
  }),
  upsertTextsMany: sql({
    postgres: `INSERT INTO content_finding_texts (content, package, advisory, finding)
      SELECT ?, p, a, t FROM unnest(?::text[], ?::text[], ?::text[]) AS f (p, a, t)
      ON CONFLICT (content, package, advisory) DO UPDATE SET finding = excluded.finding`,
  }),
  adoptContent: sql('UPDATE hosts SET findings_content = ?, findings_since = ? WHERE agent_id = ?'),
  setCounts: sql('UPDATE hosts SET open_findings = ?, overdue_findings = ? WHERE findings_content = ?'),
  tally: sql(
    `SELECT (SELECT count(*) FROM reports) AS reports, (SELECT count(*) FROM inventory_contents) AS contents,
       (SELECT count(*) FROM hosts) AS hosts, (SELECT count(*) FROM content_findings) AS findings,
       (SELECT count(*) FROM content_finding_texts) AS texts, (SELECT sum(open_findings) FROM hosts) AS open,
       (SELECT sum(overdue_findings) FROM hosts) AS overdue`,
  ),
};

/** Report ingest written once over the shared executor: what Reports' #ingest (store/reports.ts) does, statement for statement. */
async function ingestShared(tx: SqlExecutor, r: Report, at: string): Promise<void> {
  const agent = await tx.get<{ revoked_at: string | null; last_inventory_hash: string | null }>(Q.agent, [r.agentId]);
  if (agent === undefined || agent.revoked_at !== null) throw new Error(`agent ${r.agentId} is not enrolled`);
  if ((await tx.get(Q.reportExists, [r.agentId, r.reportId])) !== undefined) return;
  const inv = r.inventory;
  const contentHash = packagesHash(inv, r.set.hash);
  if ((await tx.get(Q.contentExists, [contentHash])) === undefined) {
    await tx.run(Q.insertContent, [contentHash, inv.host.ecosystem, inv.packages.length, r.set.json, at, r.set.hash]);
  }
  const { packages: _packages, ...envelope } = inv;
  await tx.run(Q.insertReport, [r.reportId, r.agentId, at, r.hash, contentHash, JSON.stringify(envelope)]);
  await tx.run(Q.upsertHost, [
    r.agentId,
    inv.host.hostname,
    inv.host.ecosystem,
    inv.packages.length,
    inv.kernel.release,
    inv.kernel.package === null ? 0 : 1,
    inv.reboot.required ? 1 : 0,
    r.reportId,
    at,
  ]);
  await tx.run(Q.setAgentInventory, [r.hash, at, r.agentId]);
  const old = await tx.all<{ id: string; content_hash: string }>(Q.oldReports, [r.agentId, r.reportId, REPORTS_PER_AGENT - 1]);
  for (const o of old) await tx.run(Q.deleteReport, [r.agentId, o.id]);
  for (const hash of new Set(old.map((o) => o.content_hash))) {
    await tx.run(Q.deleteOrphanContent, [hash, hash]);
    await tx.run(Q.deleteOrphanTimeline, [hash, hash, hash]);
    await tx.run(Q.deleteOrphanTexts, [hash, hash]);
  }
}

async function writeFindingsShared(tx: SqlExecutor, content: string, findings: readonly Finding[], at: string, manyRows: boolean): Promise<void> {
  if (manyRows) {
    const p = findings.map((f) => f.package);
    const a = findings.map((f) => f.advisory);
    await tx.run(Q.upsertFindingsMany, [content, at, at, p, a, findings.map((f) => f.status)]);
    await tx.run(Q.upsertTextsMany, [content, p, a, findings.map((f) => f.text)]);
  } else {
    for (const f of findings) {
      await tx.run(Q.upsertFinding, [content, f.package, f.advisory, at, at, f.status]);
      await tx.run(Q.upsertText, [content, f.package, f.advisory, f.text]);
    }
  }
  const overdue = findings.filter((f) => f.status === 'overdue').length;
  await tx.run(Q.setCounts, [findings.length - overdue, overdue, content]);
}

/** Runs `jobs` with at most `width` in flight; resolves with the wall time. */
async function timed(jobs: readonly (() => Promise<void>)[], width: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  // Every worker ends before a failure is passed on: none is left writing to a store being closed.
  const settled = await Promise.allSettled(
    Array.from({ length: Math.min(width, jobs.length) }, async () => {
      while (next < jobs.length) await (jobs[next++] as () => Promise<void>)();
    }),
  );
  for (const s of settled) if (s.status === 'rejected') throw s.reason;
  return performance.now() - t0;
}

interface Workload {
  agents: { id: string; publicKey: string; hostname: string }[];
  /** Round r's report of every agent: round 0 is each agent's first, the later rounds move it to another content. */
  rounds: Report[][];
  contentFindings: { content: string; findings: Finding[] }[];
}

function buildWorkload(size: { agents: number; contents: number; rounds: number }): Workload {
  const contents = contentsOf(size.contents).map((inv) => ({ inv, set: packageSetRef(inv.packages) }));
  const agents = Array.from({ length: size.agents }, (_, i) => ({ id: randomUUID(), publicKey: generateKeyPair().publicKey, hostname: `host-${i}` }));
  const rounds = Array.from({ length: size.rounds }, (_, round) =>
    agents.map((a, i): Report => {
      const c = contents[(i + round) % size.contents] as (typeof contents)[number];
      const inventory: Inventory = { ...c.inv, collectedAt: new Date(NOW.getTime() + round * 60_000).toISOString(), host: { ...c.inv.host, hostname: a.hostname } };
      return { agentId: a.id, reportId: randomUUID(), hash: inventoryHash(inventory, c.set.hash), inventory, set: c.set };
    }),
  );
  // Findings of the contents the last round left in place, as a correlation would write them.
  const last = rounds[size.rounds - 1] as Report[];
  const live = [...new Set(last.map((r) => packagesHash(r.inventory, r.set.hash)))];
  const contentFindings = live.map((content, ci) => ({
    content,
    findings: Array.from({ length: FINDINGS_PER_CONTENT }, (_, k): Finding => {
      const f = { package: `pkg-${k % 97}`, advisory: `ALSA-2026:${String(1000 + k).padStart(4, '0')}`, status: (k + ci) % 5 === 0 ? ('overdue' as const) : ('open' as const) };
      return { ...f, text: JSON.stringify({ ...f, firstSeen: NOW.toISOString(), fixed: '1.2.3-4.el9_5', why: 'installed 1.2.3-3.el9 < fixed 1.2.3-4.el9_5' }) };
    }),
  }));
  return { agents, rounds, contentFindings };
}

interface Timings {
  /** Reports per second over every round. */
  ingestRate: number;
  /** Finding rows (timeline row and text) per second. */
  findingsRate: number;
  tally: Record<string, number>;
}

/** What each finding of a content the findings write puts down, then its hosts adopt the content (outside the timing). */
async function adoptAll(db: SqlExecutor, w: Workload, at: string): Promise<void> {
  const last = w.rounds[w.rounds.length - 1] as Report[];
  for (const r of last) await db.run(Q.adoptContent, [packagesHash(r.inventory, r.set.hash), at, r.agentId]);
}

interface Way {
  name: string;
  /** Transactions in flight at once. */
  width: number;
  /** Reports per transaction (the gateway batches reports that arrive together: Reports.ingestBatch). */
  batch: number;
  /** Findings in one statement per table (PostgreSQL's unnest) rather than one per row. */
  manyRows: boolean;
}

async function runShared(db: SqlDatabase, w: Workload, way: Way): Promise<Timings> {
  const at = NOW.toISOString();
  const width = way.width;
  const manyRows = way.manyRows;
  for (const a of w.agents) await db.run(Q.enroll, [a.id, a.publicKey, a.hostname, at]);
  let ingestMs = 0;
  for (const round of w.rounds) {
    const batches: Report[][] = [];
    for (let i = 0; i < round.length; i += way.batch) batches.push(round.slice(i, i + way.batch));
    ingestMs += await timed(
      batches.map((b) => () =>
        db.transaction(async (tx) => {
          for (const r of b) await ingestShared(tx, r, at);
        }),
      ),
      width,
    );
  }
  await adoptAll(db, w, at);
  const findingsMs = await timed(
    w.contentFindings.map((c) => () => db.transaction((tx) => writeFindingsShared(tx, c.content, c.findings, at, manyRows))),
    width,
  );
  const reports = w.rounds.length * w.agents.length;
  const rows = w.contentFindings.reduce((n, c) => n + c.findings.length, 0);
  return { ingestRate: reports / (ingestMs / 1000), findingsRate: rows / (findingsMs / 1000), tally: (await db.get<Record<string, number>>(Q.tally)) ?? {} };
}

/** What a way through the store's own Reports measured, beside the rows it left. */
interface StoreTimings {
  /** Full reports per second over every round. */
  fullRate: number;
  /** Unchanged reports (the hash alone) per second, their batched last-seen write included. */
  unchangedRate: number;
  tally: Record<string, number>;
}

/**
 * The store's own Reports (store/reports.ts) as the gateway calls it, `width` reports in
 * flight: every round's full reports, then as many rounds of unchanged reports (a healthy
 * fleet's traffic), timed up to the write of their batched last-seen times. Resolves with the
 * workload's agent ids mapped to the ones the store made.
 */
async function runStoreIngest(store: AsyncStore, w: Workload, width: number, batch = 1): Promise<{ ids: Map<string, string>; fullRate: number; unchangedRate: number }> {
  const ids = new Map<string, string>();
  for (const a of w.agents) ids.set(a.id, await store.agents.enroll({ publicKey: a.publicKey, hostname: a.hostname, machineId: null, tokenId: null }, NOW));
  const id = (r: Report): string => ids.get(r.agentId) as string;
  let fullMs = 0;
  for (const round of w.rounds) {
    const jobs: (() => Promise<void>)[] = [];
    for (let i = 0; i < round.length; i += batch) {
      const reports = round.slice(i, i + batch);
      jobs.push(
        batch === 1
          ? async () => {
              const r = reports[0] as Report;
              await store.reports.ingest(id(r), r.reportId, r.hash, r.inventory, NOW, r.set);
            }
          : async () => {
              const items = reports.map((r) => ({ agentId: id(r), reportId: r.reportId, hash: r.hash, inventory: r.inventory, set: r.set }));
              for (const result of await store.reports.ingestBatch(items, NOW)) if ('error' in result) throw result.error;
            },
      );
    }
    fullMs += await timed(jobs, width);
  }
  const last = w.rounds[w.rounds.length - 1] as Report[];
  let unchangedMs = 0;
  for (let round = 0; round < w.rounds.length; round++) {
    unchangedMs += await timed(
      last.map((r) => async () => {
        const result = await store.reports.ingest(id(r), randomUUID(), r.hash, null, NOW);
        if (result.status !== 'unchanged') throw new Error(`an unchanged report came back ${result.status}`);
      }),
      width,
    );
    const t0 = performance.now();
    await store.agents.flushTouches();
    unchangedMs += performance.now() - t0;
  }
  const reports = w.rounds.length * w.agents.length;
  return { ids, fullRate: reports / (fullMs / 1000), unchangedRate: reports / (unchangedMs / 1000) };
}

/** Reports, contents and hosts: what ingest leaves, to be the same on every way. */
async function ingestTally(db: SqlExecutor): Promise<Record<string, number>> {
  const t = (await db.get<Record<string, number>>(Q.tally)) ?? {};
  return { reports: Number(t.reports), contents: Number(t.contents), hosts: Number(t.hosts) };
}

/**
 * The store's own path on SQLite: its Reports (store/reports.ts, on the shared executor since
 * issue 12 step 2; before it, better-sqlite3's synchronous calls), a report at a time as the
 * gateway sends them, and the findings statements in one synchronous transaction.
 */
async function runSqliteSync(db: Db, w: Workload): Promise<{ t: Timings; store: StoreTimings }> {
  const fleet = storeOn(db).async;
  const { ids: byWorkloadId, fullRate, unchangedRate } = await runStoreIngest(fleet, w, 1);
  const shared = new SqliteDatabase(db);
  const storeTally = await ingestTally(shared);
  const at = NOW.toISOString();
  const last = w.rounds[w.rounds.length - 1] as Report[];
  for (const r of last) await shared.run(Q.adoptContent, [packagesHash(r.inventory, r.set.hash), at, byWorkloadId.get(r.agentId) as string]);
  const upsertFinding = db.prepare(sqliteText(Q.upsertFinding));
  const upsertText = db.prepare(sqliteText(Q.upsertText));
  const setCounts = db.prepare(sqliteText(Q.setCounts));
  const write = db.transaction((content: string, findings: readonly Finding[]) => {
    for (const f of findings) {
      upsertFinding.run(content, f.package, f.advisory, at, at, f.status);
      upsertText.run(content, f.package, f.advisory, f.text);
    }
    const overdue = findings.filter((f) => f.status === 'overdue').length;
    setCounts.run(findings.length - overdue, overdue, content);
  });
  const t0 = performance.now();
  for (const c of w.contentFindings) write(c.content, c.findings);
  const findingsMs = performance.now() - t0;
  const rows = w.contentFindings.reduce((n, c) => n + c.findings.length, 0);
  return {
    t: { ingestRate: fullRate, findingsRate: rows / (findingsMs / 1000), tally: (await shared.get<Record<string, number>>(Q.tally)) ?? {} },
    store: { fullRate, unchangedRate, tally: storeTally },
  };
}

/** The store's own Reports on PostgreSQL (a fresh schema), `width` reports in flight. */
async function runPostgresStore(url: string, w: Workload, width: number, batch = 1): Promise<StoreTimings> {
  const reset = new PostgresDatabase({ url, max: 1 });
  try {
    await reset.runScript('DROP SCHEMA public CASCADE; CREATE SCHEMA public;');
  } finally {
    await reset.close();
  }
  const store = await openPostgresStore({ kind: 'postgres', url, maxConnections: CONCURRENCY });
  const check = new PostgresDatabase({ url, max: 1 });
  try {
    const { fullRate, unchangedRate } = await runStoreIngest(store, w, width, batch);
    return { fullRate, unchangedRate, tally: await ingestTally(check) };
  } finally {
    await check.close();
    await store.close();
  }
}

function sameTally(a: Record<string, number>, b: Record<string, number>): string | null {
  const keys = Object.keys(a);
  const off = keys.filter((k) => Number(a[k]) !== Number(b[k]));
  return off.length === 0 ? null : `left other rows than SQLite today: ${off.map((k) => `${k} ${b[k]} vs ${a[k]}`).join(', ')}`;
}

export async function storeHotPathsSection<F>(figure: MakeStoreFigure<F>, progress: (line: string) => void): Promise<{ figures: F[]; raw: unknown }> {
  const skip = needs(TOOLS.postgres);
  if (skip !== false) return { figures: [], raw: { intro: `not run: it ${skip}` } };
  const size = sizeFromEnv();
  const dir = mkdtempSync(join(tmpdir(), 'pw-bench-store-'));
  const cluster = await startPostgres({ durable: true });
  try {
    progress(`store-hotpaths: ${size.agents} agents, ${size.contents} contents of the real RHEL 9.5 image, ${size.rounds} reports each`);
    const w = buildWorkload(size);
    const runs: { name: string; t: Timings }[] = [];

    progress('store-hotpaths: SQLite, the store (store/reports.ts)');
    const syncDb = openDatabase(join(dir, 'sync.db'));
    const sqliteStore = await runSqliteSync(syncDb, w);
    runs.push({ name: 'SQLite, the store (store/reports.ts)', t: sqliteStore.t });
    syncDb.close();
    const storeRuns: { name: string; s: StoreTimings }[] = [{ name: 'SQLite, the store, 1 at a time', s: sqliteStore.store }];
    for (const width of [1, CONCURRENCY]) {
      const name = `PostgreSQL, the store, ${width === 1 ? '1 at a time' : `${width} at once`}`;
      progress(`store-hotpaths: ${name} (store/reports.ts)`);
      storeRuns.push({ name, s: await runPostgresStore(cluster.url, w, width) });
    }
    // The gateway's path for full reports: those of one event-loop turn in one ingestBatch (unchanged ones go one by one).
    const batchedName = `PostgreSQL, the store, ${CONCURRENCY} a batch (ingestBatch)`;
    progress(`store-hotpaths: ${batchedName}`);
    const batched = { name: batchedName, s: await runPostgresStore(cluster.url, w, 1, CONCURRENCY) };

    progress('store-hotpaths: SQLite, shared async queries');
    const asyncDb = new SqliteDatabase(openDatabase(join(dir, 'async.db')));
    runs.push({ name: 'SQLite, shared async queries', t: await runShared(asyncDb, w, { name: '', width: CONCURRENCY, batch: 1, manyRows: false }) });
    await asyncDb.close();

    const ways: Way[] = [
      { name: 'PostgreSQL, shared queries, 1 at a time', width: 1, batch: 1, manyRows: false },
      { name: `PostgreSQL, shared queries, ${CONCURRENCY} at once`, width: CONCURRENCY, batch: 1, manyRows: false },
      { name: `PostgreSQL, ${CONCURRENCY} reports a transaction, multi-row findings, 4 at once`, width: 4, batch: CONCURRENCY, manyRows: true },
    ];
    for (const way of ways) {
      progress(`store-hotpaths: ${way.name}`);
      const pg = new PostgresDatabase({ url: cluster.url, max: CONCURRENCY });
      await pg.runScript('DROP SCHEMA public CASCADE; CREATE SCHEMA public;');
      await migratePostgres(pg);
      runs.push({ name: way.name, t: await runShared(pg, w, way) });
      await pg.close();
    }

    const base = runs[0] as { name: string; t: Timings };
    const figures: F[] = [];
    for (const r of runs) {
      const invalid = r === base ? null : sameTally(base.t.tally, r.t.tally);
      figures.push(
        figure('store-hotpaths', `ingest: ${r.name}`, r.t.ingestRate, '/s', r === base ? null : { name: `ingest: ${base.name}`, value: base.t.ingestRate }, { invalid, note: 'reports' }),
      );
    }
    const storeBase = storeRuns[0] as { name: string; s: StoreTimings };
    for (const kind of ['full', 'unchanged'] as const) {
      const rate = (s: StoreTimings): number => (kind === 'full' ? s.fullRate : s.unchangedRate);
      for (const r of storeRuns) {
        const invalid = r === storeBase ? null : sameTally(storeBase.s.tally, r.s.tally);
        const baseline = r === storeBase ? null : { name: `${kind} reports: ${storeBase.name}`, value: rate(storeBase.s) };
        figures.push(figure('store-hotpaths', `${kind} reports: ${r.name}`, rate(r.s), '/s', baseline, { invalid, note: 'Reports.ingest' }));
      }
      if (kind === 'full') {
        const invalid = sameTally(storeBase.s.tally, batched.s.tally);
        const baseline = { name: `full reports: ${storeBase.name}`, value: storeBase.s.fullRate };
        figures.push(figure('store-hotpaths', `full reports: ${batched.name}`, batched.s.fullRate, '/s', baseline, { invalid, note: 'Reports.ingestBatch' }));
      }
    }
    for (const r of runs) {
      const invalid = r === base ? null : sameTally(base.t.tally, r.t.tally);
      figures.push(
        figure('store-hotpaths', `findings write: ${r.name}`, r.t.findingsRate, '/s', r === base ? null : { name: `findings write: ${base.name}`, value: base.t.findingsRate }, { invalid, note: 'finding rows' }),
      );
    }
    return {
      figures,
      raw: {
        intro: `${size.agents} agents x ${size.rounds} reports over ${size.contents} contents, ${FINDINGS_PER_CONTENT} findings a content; both engines durable`,
        size,
        runs: runs.map((r) => ({ name: r.name, ...r.t })),
        store: [...storeRuns, batched].map((r) => ({ name: r.name, ...r.s })),
      },
    };
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
