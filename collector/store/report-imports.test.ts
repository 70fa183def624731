import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, test } from 'node:test';
import { inventoryHash } from '../../shared/inventory-hash.ts';
import type { Inventory } from '../../shared/protocol.ts';
import { inventoryOf, rhel95Packages } from '../../shared/testing/correlate-fixtures.ts';
import { type Engine, onEachEngine } from '../../shared/testing/store-engines.ts';
import { rowCount as count, enrollAgent as enroll, FLEET_NOW } from '../../shared/testing/store-fixtures.ts';
import type { FileReport } from './report-imports.ts';
import { sql } from './sql/query.ts';

const NOW = FLEET_NOW;
const HOUR = 3600_000;

let rhel: Inventory;
before(() => {
  rhel = inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages());
});

const importRows = sql('SELECT report_id, agent_id, status, created_at, file_sha256, imported_at, imported_by FROM report_imports ORDER BY seq');
const auditRows = sql("SELECT actor, action, target FROM audit WHERE action = 'report.import' ORDER BY id");

function file(agentId: string, createdAt: Date, inventory: Inventory = rhel, reportId = randomUUID()): FileReport {
  return { agentId, reportId, hash: inventoryHash(inventory), inventory, createdAt, fileSha256: 'f'.repeat(64) };
}

onEachEngine('ReportImports', (engine: Engine) => {
  test('stores a file report with its import row and audit row; the same file again is a duplicate; since() lists it', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const id = await enroll(store);
    assert.equal(await store.reportImports.lastSeq(), 0);
    const f = file(id, new Date(NOW.getTime() - 2 * HOUR));
    assert.equal(await store.reportImports.import(f, 'cli:root', NOW), 'stored');
    assert.equal(await store.reportImports.import(f, 'cli:root', NOW), 'duplicate');
    assert.deepEqual(await db.all(importRows), [
      { report_id: f.reportId, agent_id: id, status: 'stored', created_at: f.createdAt.toISOString(), file_sha256: f.fileSha256, imported_at: NOW.toISOString(), imported_by: 'cli:root' },
    ]);
    assert.deepEqual(await db.all(auditRows), [{ actor: 'cli:root', action: 'report.import', target: `agent:${id}` }]);
    // The report's time is the file's, not the import's.
    assert.equal((await store.hosts.get(id))?.lastReportAt, f.createdAt.toISOString());
    const seq = await store.reportImports.lastSeq();
    assert.ok(seq > 0);
    assert.deepEqual(await store.reportImports.since(0), [{ seq, agentId: id }]);
    assert.deepEqual(await store.reportImports.since(seq), []);
  });

  test('a later file with the same inventory is unchanged; an older one is refused as stale and writes nothing', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const id = await enroll(store);
    assert.equal(await store.reportImports.import(file(id, new Date(NOW.getTime() - 2 * HOUR)), 'cli:root', NOW), 'stored');
    assert.equal(await store.reportImports.import(file(id, new Date(NOW.getTime() - HOUR)), 'cli:root', NOW), 'unchanged');
    const before = [await count(db, 'reports'), await count(db, 'report_imports'), await count(db, 'audit')];
    await assert.rejects(store.reportImports.import(file(id, new Date(NOW.getTime() - 3 * HOUR)), 'cli:root', NOW), { code: 'PW_ERR_FILE_STALE' });
    assert.deepEqual([await count(db, 'reports'), await count(db, 'report_imports'), await count(db, 'audit')], before);
  });

  test("a refused ingest (a revoked agent) leaves no import row and no audit row; another agent's same report id is its own", async (t) => {
    const { store, sql: db } = await engine.open(t);
    const [a, b] = [await enroll(store, 'a'), await enroll(store, 'b')];
    const f = file(a, new Date(NOW.getTime() - HOUR));
    assert.equal(await store.reportImports.import(f, 'cli:root', NOW), 'stored');
    assert.equal(await store.reportImports.import({ ...f, agentId: b }, 'cli:root', NOW), 'stored');
    await store.agents.revoke(a, 'cli:root', NOW);
    await assert.rejects(store.reportImports.import(file(a, NOW), 'cli:root', NOW), { code: 'PW_ERR_AGENT_REVOKED' });
    assert.deepEqual([await count(db, 'reports'), await count(db, 'report_imports')], [2, 2]);
    assert.equal((await db.all(auditRows)).length, 2);
  });
});
