import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { reportFileName } from '../../../agent/commands/report.ts';
import { inventoryHash } from '../../../shared/inventory-hash.ts';
import type { Inventory } from '../../../shared/protocol.ts';
import { type Instruction, type InstructionResult, signInstruction } from '../../../shared/instructions.ts';
import { encodeSignedFile } from '../../../shared/signed-file.ts';
import { generateKeyPair, type KeyPair } from '../../../shared/signing.ts';
import { inventoryOf, rhel95Packages } from '../../../shared/testing/correlate-fixtures.ts';
import type { Db } from '../../store/db.ts';
import { openCollector, type OpenedCollector } from '../../open-collector.ts';
import type { ReportImports } from '../../store/report-imports.ts';
import type { AsyncStore } from '../../store/store.ts';
import { tempDatabase } from '../../../shared/testing/store-fixtures.ts';
import { mkfifo } from '../../../shared/testing/fifo.ts';
import { type ImportSinks, importReportFiles, reportFilesIn, type ReportFileOutcome } from './report-import.ts';

const NOW = new Date('2026-11-27T04:00:00.000Z');
const HOUR = 3600_000;
const RHEL = inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages());
const COLLECTOR_KEY = generateKeyPair();

interface Setup {
  db: Db;
  fleet: AsyncStore;
  imports: ReportImports;
  sinks: ImportSinks;
  opened: OpenedCollector;
  dir: string;
  key: KeyPair;
  agentId: string;
}

async function setup(t: TestContext): Promise<Setup> {
  const { path } = await tempDatabase(t, 'airgap');
  // The rollout engine as `reports import` opens it: results and inventories go to it.
  const opened = await openCollector({ store: { kind: 'sqlite', path } });
  t.after(() => {
    opened.close();
  });
  const { db } = opened.sqlite!;
  const fleet = opened.store;
  const key = generateKeyPair();
  const agentId = await fleet.agents.enroll({ publicKey: key.publicKey, hostname: 'vault-1', machineId: null, tokenId: null }, new Date(NOW.getTime() - 48 * HOUR));
  const dir = await mkdtemp(join(tmpdir(), 'pw-reports-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return { db, fleet, imports: fleet.reportImports, sinks: opened.airGap.importSinks(), opened, dir, key, agentId };
}

interface FileSpec {
  inventory?: Inventory | null;
  createdAt?: Date;
  /** The report object as the agent would write it; override to build a bad one. */
  report?: (r: Record<string, unknown>) => unknown;
  body?: Buffer;
  key?: string;
  signer?: string;
  name?: string;
  /** The report's id; a new one unless said. */
  id?: string;
}

/** Writes a report file as `patchwarden-agent report` does (the same encoder and name). */
async function reportFile(s: Setup, spec: FileSpec = {}): Promise<string> {
  const inventory = spec.inventory === undefined ? RHEL : spec.inventory;
  const createdAt = spec.createdAt ?? new Date(NOW.getTime() - HOUR);
  const id = spec.id ?? randomUUID();
  const report: Record<string, unknown> = { type: 'report', id, hash: inventory === null ? 'a'.repeat(64) : inventoryHash(inventory), inventory };
  const body = spec.body ?? Buffer.from(JSON.stringify(spec.report === undefined ? report : spec.report(report)));
  const signer = spec.signer ?? s.agentId;
  const file = join(s.dir, spec.name ?? reportFileName(createdAt, signer, id));
  await writeFile(file, encodeSignedFile({ kind: 'report', signer, createdAt, body, key: spec.key ?? s.key.privateKeyPem }));
  return file;
}

async function run(s: Setup, files: string[]): Promise<ReportFileOutcome[]> {
  return importReportFiles(files, { fleet: s.opened.store, imports: s.opened.store.reportImports, sinks: s.sinks, actor: 'cli:test', now: () => NOW });
}

function count(db: Db, table: string): number {
  return db.prepare(`SELECT count(*) AS n FROM ${table}`).pluck().get() as number;
}

function statuses(outcomes: ReportFileOutcome[]): string[] {
  return outcomes.map((o) => (o.status === 'refused' ? `refused ${o.code}` : o.status));
}

describe('reports import', () => {
  it('stores a report file as the host’s inventory, at the time the agent wrote it, with an import row and an audit entry', async (t) => {
    const s = await setup(t);
    const file = await reportFile(s);
    const [o] = await run(s, [file]);
    assert.deepEqual(o, { file, kind: 'report', status: 'stored', agentId: s.agentId, hostname: 'test-1', createdAt: new Date(NOW.getTime() - HOUR).toISOString(), packages: 243 });
    const host = await s.fleet.hosts.get(s.agentId);
    assert.equal(host?.packageCount, 243);
    assert.equal(host.lastReportAt, new Date(NOW.getTime() - HOUR).toISOString());
    assert.deepEqual((await s.fleet.reports.latestInventory(s.agentId))?.packages, RHEL.packages);
    assert.deepEqual(await s.imports.since(0), [{ seq: 1, agentId: s.agentId }]);
    const audit = s.db.prepare("SELECT actor, target FROM audit WHERE action = 'report.import'").all();
    assert.deepEqual(audit, [{ actor: 'cli:test', target: `agent:${s.agentId}` }]);
  });

  it('the same file twice: the second is "duplicate" and writes nothing', async (t) => {
    const s = await setup(t);
    const file = await reportFile(s);
    await run(s, [file]);
    const before = [count(s.db, 'reports'), count(s.db, 'report_imports'), count(s.db, 'audit')];
    assert.deepEqual(statuses(await run(s, [file, file])), ['duplicate', 'duplicate']);
    assert.deepEqual([count(s.db, 'reports'), count(s.db, 'report_imports'), count(s.db, 'audit')], before);
  });

  it('several reports of one host are imported oldest first by their signed time, whatever their names', async (t) => {
    const s = await setup(t);
    const older = await reportFile(s, { createdAt: new Date(NOW.getTime() - 3 * HOUR), name: 'b.pwreport' });
    const newer = await reportFile(s, { inventory: { ...RHEL, packages: RHEL.packages.slice(1) }, createdAt: new Date(NOW.getTime() - HOUR), name: 'a.pwreport' });
    const outcomes = await run(s, await reportFilesIn([s.dir]));
    assert.deepEqual(outcomes.map((o) => o.file), [older, newer]);
    assert.deepEqual(statuses(outcomes), ['stored', 'stored']);
    assert.equal((await s.fleet.hosts.get(s.agentId))?.packageCount, 242);
  });

  it('the same inventory again, newer: "unchanged", recorded so a second import is a duplicate', async (t) => {
    const s = await setup(t);
    await run(s, [await reportFile(s, { createdAt: new Date(NOW.getTime() - 2 * HOUR) })]);
    const again = await reportFile(s);
    assert.deepEqual(statuses(await run(s, [again])), ['unchanged']);
    assert.deepEqual(statuses(await run(s, [again])), ['duplicate']);
    assert.equal(count(s.db, 'reports'), 1);
  });

  it('one refused file among good ones: the good ones are stored', async (t) => {
    const s = await setup(t);
    const other = generateKeyPair();
    const second = await s.fleet.agents.enroll({ publicKey: other.publicKey, hostname: 'vault-2', machineId: null, tokenId: null });
    const files = [
      await reportFile(s),
      await reportFile(s, { key: generateKeyPair().privateKeyPem, createdAt: new Date(NOW.getTime() - 2 * HOUR) }),
      await reportFile(s, { signer: second, key: other.privateKeyPem }),
    ];
    assert.deepEqual(statuses(await run(s, files)).sort(), ['refused PW_ERR_FILE_TAMPERED', 'stored', 'stored']);
    assert.equal(count(s.db, 'hosts'), 2);
  });

  const refusals: [string, (s: Setup) => Promise<string> | string, string, RegExp][] = [
    ['an older report than the stored one', async (s) => {
      await run(s, [await reportFile(s)]);
      return reportFile(s, { createdAt: new Date(NOW.getTime() - 2 * HOUR) });
    }, 'PW_ERR_FILE_STALE', /written at .* but the collector holds a newer inventory of this host .*roll the host back/],
    ['a revoked agent', async (s) => {
      await s.fleet.agents.revoke(s.agentId, 'test');
      return reportFile(s);
    }, 'PW_ERR_AGENT_REVOKED', /was revoked/],
    ['a key that never enrolled', (s) => reportFile(s, { signer: randomUUID() }), 'PW_ERR_FILE_FOREIGN', /whom this collector does not know/],
    ['written in the future', (s) => reportFile(s, { createdAt: new Date(NOW.getTime() + HOUR) }), 'PW_ERR_FILE_FROM_FUTURE', /in the future by this collector's clock/],
    ['a hash that is not the inventory’s', (s) => reportFile(s, { report: (r) => ({ ...r, hash: 'b'.repeat(64) }) }), 'PW_ERR_MALFORMED_INPUT', /is not the hash of its inventory/],
    ['no inventory (a hash-only report)', (s) => reportFile(s, { inventory: null }), 'PW_ERR_MALFORMED_INPUT', /must carry the full inventory/],
    ['packages by reference', (s) => reportFile(s, { report: (r) => ({ ...r, packageSet: 'c'.repeat(64), inventory: { ...RHEL, packages: [] } }) }), 'PW_ERR_MALFORMED_INPUT', /must carry the full inventory/],
    ['a signed body that is not JSON', (s) => reportFile(s, { body: Buffer.from('not json') }), 'PW_ERR_MALFORMED_INPUT', /signed body is not JSON/],
    ['a signed body of another message type', (s) => reportFile(s, { report: (r) => ({ ...r, type: 'result' }) }), 'PW_ERR_MALFORMED_INPUT', /signed body is not a report: type/],
    ['a package name with a shell metacharacter', (s) => reportFile(s, { inventory: { ...RHEL, packages: [{ ...RHEL.packages[0]!, name: 'bash;reboot' }] } }), 'PW_ERR_MALFORMED_INPUT', /not a report: inventory\.packages/],
    ...["x'); DROP TABLE hosts; --", '<script>alert(1)</script>', '$(reboot)'].map((hostname): (typeof refusals)[number] => [
      `the hostname ${hostname}`,
      (s) => reportFile(s, { inventory: { ...RHEL, host: { ...RHEL.host, hostname } } }),
      'PW_ERR_MALFORMED_INPUT',
      /not a report: inventory\.host\.hostname: not a valid host name/,
    ]),
    ['a file that does not exist', (s) => join(s.dir, 'gone.pwreport'), 'PW_ERR_SOURCE_UNAVAILABLE', /ENOENT/],
  ];
  for (const [name, make, code, message] of refusals) {
    it(`refused: ${name} (${code}), nothing more stored`, async (t) => {
      const s = await setup(t);
      const file = await make(s);
      const before = [count(s.db, 'reports'), count(s.db, 'report_imports'), count(s.db, 'hosts'), JSON.stringify(await s.fleet.hosts.get(s.agentId) ?? null)];
      const [o] = await run(s, [file]);
      assert.ok(o?.status === 'refused', JSON.stringify(o));
      assert.equal(o.code, code, o.message);
      assert.match(o.message, message);
      assert.deepEqual([count(s.db, 'reports'), count(s.db, 'report_imports'), count(s.db, 'hosts'), JSON.stringify(await s.fleet.hosts.get(s.agentId) ?? null)], before);
    });
  }

  it('a FIFO and a directory named like report files: each refused with PW_ERR_NOT_REGULAR_FILE without blocking, the real report stored', { timeout: 20_000 }, async (t) => {
    const s = await setup(t);
    const real = await reportFile(s);
    const fifo = await mkfifo(join(s.dir, '20261127T030000Z-fifo.pwreport'));
    const dir = join(s.dir, '20261127T030000Z-dir.pwreport');
    await mkdir(dir);
    const outcomes = await run(s, await reportFilesIn([s.dir]));
    assert.deepEqual(
      outcomes.map((o) => [o.file, o.status === 'refused' ? o.code : o.status]).sort(),
      [[dir, 'PW_ERR_NOT_REGULAR_FILE'], [fifo, 'PW_ERR_NOT_REGULAR_FILE'], [real, 'stored']].sort(),
    );
  });

  it("a report id is the signer's own: another agent's file under this host's id does not hide this host's report (issue 10)", async (t) => {
    const s = await setup(t);
    const other = generateKeyPair();
    const intruder = await s.fleet.agents.enroll({ publicKey: other.publicKey, hostname: 'vault-2', machineId: null, tokenId: null });
    const id = randomUUID();
    // The intruder read the id off this host's file on the shared carry medium and got in first.
    const stolen = await reportFile(s, { id, signer: intruder, key: other.privateKeyPem, createdAt: new Date(NOW.getTime() - 2 * HOUR), name: 'a.pwreport' });
    const genuine = await reportFile(s, { id, name: 'b.pwreport' });
    assert.deepEqual(statuses(await run(s, [stolen])), ['stored']);
    assert.deepEqual(statuses(await run(s, [genuine])), ['stored']);
    assert.equal((await s.fleet.hosts.get(s.agentId))?.packageCount, 243);
    assert.equal((await s.fleet.hosts.get(intruder))?.packageCount, 243);
    // Each file again is its own signer's duplicate, never the other's.
    assert.deepEqual(statuses(await run(s, [stolen, genuine])), ['duplicate', 'duplicate']);
    assert.equal(count(s.db, 'reports'), 2);
  });

  it("the same over the gateway: an id another agent reported live does not refuse this host's file", async (t) => {
    const s = await setup(t);
    const intruder = await s.fleet.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: 'vault-2', machineId: null, tokenId: null });
    const id = randomUUID();
    await s.fleet.reports.ingest(intruder, id, inventoryHash(RHEL), RHEL, new Date(NOW.getTime() - 2 * HOUR));
    assert.deepEqual(statuses(await run(s, [await reportFile(s, { id })])), ['stored']);
    assert.equal((await s.fleet.reports.ingest(intruder, id, inventoryHash(RHEL), RHEL, NOW)).status, 'duplicate');
  });

  it('a directory: only *.pwreport files, hidden and temporary ones skipped, in name order', async (t) => {
    const s = await setup(t);
    for (const n of ['b.pwreport', 'a.pwreport', '.tmp-a.pwreport-123', 'notes.txt', '.hidden.pwreport']) await writeFile(join(s.dir, n), '');
    await mkdir(join(s.dir, 'sub.pwreport.d'));
    assert.deepEqual(await reportFilesIn([s.dir]), [join(s.dir, 'a.pwreport'), join(s.dir, 'b.pwreport')]);
    await assert.rejects(reportFilesIn([join(s.dir, 'missing')]), { code: 'PW_ERR_SOURCE_UNAVAILABLE' });
  });
});

describe('reports import: results files (agent apply)', () => {
  /** An instruction in the outbox for the agent, as a rollout or `instructions export` leaves it. */
  async function enqueue(s: Setup, agentId = s.agentId): Promise<string> {
    const id = randomUUID();
    const instruction: Instruction = { schema: 'patchwarden.instruction/1', kind: 'refresh', id, agentId, issuedAt: NOW.toISOString(), notBefore: NOW.toISOString(), expiresAt: new Date(NOW.getTime() + 24 * HOUR).toISOString(), rolloutId: null, dryRun: false };
    const signed = signInstruction(instruction, COLLECTOR_KEY.privateKeyPem);
    await s.opened.store.outbox.enqueue({ id, agentId, payload: signed.payload, signature: signed.signature, expiresAt: instruction.expiresAt, rolloutId: null }, NOW);
    return id;
  }

  async function resultsFile(s: Setup, bundle: unknown, name = `${randomUUID()}.pwresults`): Promise<string> {
    const file = join(s.dir, name);
    await writeFile(file, encodeSignedFile({ kind: 'results', signer: s.agentId, createdAt: new Date(NOW.getTime() - HOUR), body: Buffer.from(JSON.stringify(bundle)), key: s.key.privateKeyPem }));
    return file;
  }

  const succeeded = (id: string): InstructionResult => ({ instructionId: id, status: 'succeeded', code: null, message: 'inventory refresh requested', dryRun: false, startedAt: NOW.toISOString(), finishedAt: NOW.toISOString(), commands: [], changes: [], rebootRequired: null });

  it('records each result in the outbox once; the same file again is "imported already"', async (t) => {
    const s = await setup(t);
    const ids = [await enqueue(s), await enqueue(s)];
    const file = await resultsFile(s, { agentId: s.agentId, results: ids.map(succeeded) });
    const [first] = await run(s, [file]);
    assert.deepEqual(first, { file, kind: 'results', status: 'stored', agentId: s.agentId, createdAt: new Date(NOW.getTime() - HOUR).toISOString(), recorded: 2, known: 0, unknown: 0 });
    for (const id of ids) assert.equal((await s.opened.store.outbox.get(id))?.result?.status, 'succeeded');
    const [second] = await run(s, [file]);
    assert.ok(second?.status === 'duplicate' && second.kind === 'results' && second.known === 2, JSON.stringify(second));
  });

  it('a result for an instruction this collector never sent is counted, the others recorded', async (t) => {
    const s = await setup(t);
    const id = await enqueue(s);
    const [o] = await run(s, [await resultsFile(s, { agentId: s.agentId, results: [succeeded(id), succeeded(randomUUID())] })]);
    assert.ok(o?.status === 'stored' && o.kind === 'results' && o.recorded === 1 && o.unknown === 1, JSON.stringify(o));
  });

  it("another agent's results file naming this agent's instruction is refused, and this agent's own file is then recorded", async (t) => {
    const s = await setup(t);
    const id = await enqueue(s);
    const other = generateKeyPair();
    const intruder = await s.fleet.agents.enroll({ publicKey: other.publicKey, hostname: 'vault-2', machineId: null, tokenId: null });
    const forged = join(s.dir, 'forged.pwresults');
    await writeFile(forged, encodeSignedFile({ kind: 'results', signer: intruder, createdAt: new Date(NOW.getTime() - 2 * HOUR), body: Buffer.from(JSON.stringify({ agentId: intruder, results: [{ ...succeeded(id), status: 'failed', code: 'PW_ERR_COMMAND_FAILED' }] })), key: other.privateKeyPem }));
    const genuine = await resultsFile(s, { agentId: s.agentId, results: [succeeded(id)] });
    assert.deepEqual(statuses(await run(s, [forged, genuine])), ['refused PW_ERR_FILE_FOREIGN', 'stored']);
    assert.equal((await s.opened.store.outbox.get(id))?.result?.status, 'succeeded');
  });

  const refusals: [string, (s: Setup) => Promise<string>, string, RegExp][] = [
    ['only results for instructions never sent', (s) => resultsFile(s, { agentId: s.agentId, results: [succeeded(randomUUID())] }), 'PW_ERR_FILE_FOREIGN', /none of the file's 1 results answers an instruction/],
    ['a result for another agent’s instruction', async (s) => {
      const other = await s.fleet.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: 'vault-2', machineId: null, tokenId: null });
      return resultsFile(s, { agentId: s.agentId, results: [succeeded(await enqueue(s, other))] });
    }, 'PW_ERR_FILE_FOREIGN', /answers an instruction this collector sent to agent/],
    ['results of another agent under this agent’s signature', async (s) => resultsFile(s, { agentId: randomUUID(), results: [succeeded(await enqueue(s))] }), 'PW_ERR_FILE_TAMPERED', /carries results of agent/],
    ['a body that is not a results bundle', (s) => resultsFile(s, { agentId: s.agentId, results: [] }), 'PW_ERR_MALFORMED_INPUT', /not a results bundle: results/],
    ['a revoked agent', async (s) => {
      const file = await resultsFile(s, { agentId: s.agentId, results: [succeeded(await enqueue(s))] });
      await s.fleet.agents.revoke(s.agentId, 'test');
      return file;
    }, 'PW_ERR_AGENT_REVOKED', /was revoked/],
  ];
  for (const [name, make, code, message] of refusals) {
    it(`refused: ${name} (${code}), no result recorded`, async (t) => {
      const s = await setup(t);
      const file = await make(s);
      const [o] = await run(s, [file]);
      assert.ok(o?.status === 'refused', JSON.stringify(o));
      assert.equal(o.code, code, o.message);
      assert.match(o.message, message);
      assert.equal(s.db.prepare('SELECT count(*) FROM instruction_outbox WHERE result_at IS NOT NULL').pluck().get(), 0);
    });
  }
});
