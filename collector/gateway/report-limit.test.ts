import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { collectInventory } from '../../agent/inventory/inventory.ts';
import { inventoryHash } from '../../shared/inventory-hash.ts';
import { type Inventory, InventorySchema, LIMITS, ReportMessageSchema } from '../../shared/protocol.ts';
import { probeLatency } from '../../shared/testing/http-latency.ts';
import { inventoryOf, manyBinaries } from '../../shared/testing/correlate-fixtures.ts';
import { openDatabase } from '../store/db.ts';
import { storeOn } from '../store/store.ts';
import { assertFrameWithinPackageLimit, assertReportWithinPackageLimit, countJsonObjects, MAX_FRAME_OBJECTS } from './report-limit.ts';
import { newKeys, TestAgent } from '../../shared/testing/fake-agent.ts';
import { serveInChild } from '../../shared/testing/collector-process.ts';

const root = join(import.meta.dirname, '..', '..');
/** The issue's figure: /healthz must answer within this while a huge report is refused or processed. */
const HEALTHZ_MS = 100;
const SOURCES = ['chromium', 'firefox-esr', 'thunderbird', 'webkit2gtk', 'openssl', 'curl', 'ghostscript', 'tiff', 'imagemagick', 'xen'];

function bytes(text: string): Buffer {
  return Buffer.from(text, 'utf8');
}

describe('countJsonObjects: the `{` outside strings, stopping early', () => {
  const table: [string, string, number][] = [
    ['no object', '[1,2,"x"]', 0],
    ['nested objects', '{"a":{"b":[{},{"c":{}}]}}', 5],
    ['braces in strings do not count', '{"a":"{{{{","b":"}{"}', 1],
    ['an escaped quote does not end the string', '{"a":"\\"{{\\"","b":{}}', 2],
    ['an escaped backslash before a closing quote ends it', '{"a":"\\\\",  "b":{}}', 2],
    ['a \\u escape is just characters', '{"a":"\\u007b"}', 1],
  ];
  for (const [name, text, want] of table) {
    it(`${name}: ${text} -> ${want}`, () => {
      JSON.parse(text); // each row is JSON the gateway would parse
      assert.equal(countJsonObjects(bytes(text), 1000), want);
    });
  }
  it('stops one past the bound', () => {
    assert.equal(countJsonObjects(bytes('[{},{},{},{},{}]'), 2), 3);
  });
});

/** A report with every list InventorySchema bounds at its maximum: the most objects a valid report can hold. */
function largestValidReport(): string {
  const base = inventoryOf('Debian:12', 'deb', manyBinaries(LIMITS.packages, SOURCES));
  const inv: Inventory = {
    ...base,
    kernel: {
      ...base.kernel,
      package: { name: 'linux-image-6.1.0-18-amd64', source: 'linux', version: '6.1.76-1' },
      installed: Array.from({ length: 1000 }, (_, i) => ({ name: null, version: null, release: `6.1.0-${i}-amd64` })),
    },
    reboot: {
      required: true,
      reasons: Array.from({ length: 100 }, () => ({ kind: 'kernel-update' as const, detail: '{ not an object }' })),
      services: Array.from({ length: LIMITS.list }, () => ({ unit: null, pids: [1], command: null, files: ['/{x}'] })),
    },
    warnings: Array.from({ length: 1000 }, () => ({ source: 'dpkg', code: 'PW_WARN_X', message: '{"a":{}}' })),
  };
  return JSON.stringify({ type: 'report', id: randomUUID(), hash: inventoryHash(inv), inventory: inv });
}

describe('the per-report package limit', () => {
  it(`a report with every list at its schema maximum (${LIMITS.packages} packages) passes both checks and the schema`, () => {
    const text = largestValidReport();
    assert.doesNotThrow(() => {
      assertFrameWithinPackageLimit(bytes(text));
    });
    const json: unknown = JSON.parse(text);
    assert.doesNotThrow(() => {
      assertReportWithinPackageLimit(json);
    });
    assert.equal(ReportMessageSchema.safeParse(json).success, true);
    assert.ok(countJsonObjects(bytes(text), Infinity) <= MAX_FRAME_OBJECTS);
  });

  const over = inventoryOf('Debian:12', 'deb', manyBinaries(LIMITS.packages + 1, SOURCES));
  it(`${LIMITS.packages + 1} packages: the parsed report is refused with PW_ERR_TOO_MANY_PACKAGES (close 1009), and the schema says so too`, () => {
    const report = { type: 'report', id: randomUUID(), hash: inventoryHash(over), inventory: over };
    assert.throws(
      () => {
        assertReportWithinPackageLimit(report);
      },
      { code: 'PW_ERR_TOO_MANY_PACKAGES', closeCode: 1009, message: /the report lists 50001 packages: a report holds at most 50000 packages/ },
    );
    const schema = InventorySchema.safeParse(over);
    assert.ok(!schema.success);
    assert.match(schema.error.issues[0]?.message ?? '', /at most 50000 packages in one inventory/);
  });

  it('200,000 packages: the frame is refused before it is parsed', () => {
    const frame = bytes(JSON.stringify({ type: 'report', id: randomUUID(), hash: '0'.repeat(64), inventory: inventoryOf('Debian:12', 'deb', manyBinaries(200_000, SOURCES)) }));
    assert.throws(
      () => {
        assertFrameWithinPackageLimit(frame);
      },
      { code: 'PW_ERR_TOO_MANY_PACKAGES', closeCode: 1009 },
    );
  });

  it('the agent makes no report over the limit: collectInventory says why, with the code', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pw-many-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const { mkdir, writeFile } = await import('node:fs/promises');
    await mkdir(join(dir, 'var/lib/dpkg'), { recursive: true });
    await mkdir(join(dir, 'etc'), { recursive: true });
    await writeFile(join(dir, 'etc/os-release'), 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n');
    const stanzas = manyBinaries(LIMITS.packages + 1, SOURCES).map(
      (p) => `Package: ${p.name}\nStatus: install ok installed\nArchitecture: ${p.arch}\nSource: ${p.source}\nVersion: ${p.version}\n`,
    );
    await writeFile(join(dir, 'var/lib/dpkg/status'), stanzas.join('\n'));
    await assert.rejects(collectInventory({ root: dir, running: { release: '6.1.0-18-amd64', version: '#1' } }), {
      code: 'PW_ERR_TOO_MANY_PACKAGES',
      message: new RegExp(`${dir} has ${LIMITS.packages + 1} installed packages, and a report holds at most ${LIMITS.packages}`),
    });
  });
});

describe('one agent cannot stall the collector (collector in its own process, real WebSocket)', () => {
  it(`the issue's 200,000-package report and a dense 100,000-package one are refused while /healthz answers within ${HEALTHZ_MS} ms; nothing is stored, other agents are served`, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pw-report-limit-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const dbPath = join(dir, 'collector.db');
    const db = openDatabase(dbPath);
    const { token } = await storeOn(db).async.tokens.create({ uses: 3, ttlMs: 3600_000, createdBy: 'test' });
    db.close();
    const child = await serveInChild(['--import', 'tsx', 'collector/main.ts'], ['--db', dbPath, '--listen', '127.0.0.1:0'], { cwd: root });
    t.after(() => child.stop());
    // Warm: the first requests load code; the windows below measure the refusals only.
    for (let i = 0; i < 5; i++) await (await fetch(`${child.url}/healthz`)).arrayBuffer();

    // 100,000 packages with names as short as the grammar allows fit in half the frame limit.
    const compact = Array.from({ length: 100_000 }, (_, i) => ({ name: `p${i}`, version: '1', arch: 'all', source: `s${i % 10}`, sourceVersion: '1' }));
    const rows: { name: string; inventory: Inventory; code: string }[] = [
      // The issue's report: over the frame limit that follows from the package limit, so never buffered.
      { name: "the issue's 21 MB report", inventory: inventoryOf('Debian:12', 'deb', manyBinaries(200_000, SOURCES)), code: 'PW_ERR_INPUT_TOO_LARGE' },
      // Under the frame limit, refused by its object count before it is parsed.
      { name: '100,000 packages packed in 7.4 MB', inventory: inventoryOf('Debian:12', 'deb', compact), code: 'PW_ERR_TOO_MANY_PACKAGES' },
    ];
    for (const row of rows) {
      const frame = bytes(JSON.stringify({ type: 'report', id: randomUUID(), hash: inventoryHash(row.inventory), inventory: row.inventory }));
      const attacker = await TestAgent.connect(child.agentUrl, { zeroMask: true });
      await attacker.enroll(token, newKeys(), { hostname: 'attacker' });
      const probe = probeLatency(`${child.url}/healthz`);
      attacker.sendRaw(frame);
      const refusal = await attacker.refusal(60_000);
      await new Promise((r) => setTimeout(r, 300));
      const latency = await probe.stop();
      t.diagnostic(`${row.name}: ${(frame.length / 1e6).toFixed(1)} MB frame, ${refusal.error?.code ?? '?'}; slowest /healthz ${latency.maxMs.toFixed(1)} ms over ${latency.probes} probes; slowest at (ms after start, ms): ${JSON.stringify(latency.slowest)}`);
      assert.deepEqual({ code: refusal.error?.code, close: refusal.close.code }, { code: row.code, close: 1009 }, row.name);
      assert.deepEqual(latency.failures, []);
      assert.ok(latency.maxMs < HEALTHZ_MS, `${row.name}: /healthz took ${latency.maxMs.toFixed(0)} ms`);
    }

    const good = await TestAgent.connect(child.agentUrl);
    await good.enroll(token, newKeys(), { hostname: 'good' });
    assert.equal((await good.report(await collectInventory())).status, 'stored');
    await good.close();
    await child.stop();
    const after = openDatabase(dbPath);
    t.after(() => after.close());
    assert.equal(after.prepare('SELECT count(*) FROM inventory_contents').pluck().get(), 1, 'only the good agent inventory is stored');
  });

  it(`an inventory over the limit already in the store (from before the limit) does not stall the start: /healthz within ${HEALTHZ_MS} ms`, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pw-report-limit-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const dbPath = join(dir, 'collector.db');
    const db = openDatabase(dbPath);
    const fleet = storeOn(db).async;
    const agentId = await fleet.agents.enroll({ publicKey: newKeys().publicKey, hostname: 'old-huge', machineId: null, tokenId: null });
    // As a collector that accepted 200,000 packages stored it (the store does not validate).
    const huge = inventoryOf('Debian:12', 'deb', manyBinaries(200_000, SOURCES));
    assert.equal((await fleet.reports.ingest(agentId, randomUUID(), inventoryHash(huge), huge)).status, 'stored');
    db.close();

    const child = await serveInChild(['--import', 'tsx', 'collector/main.ts'], ['--db', dbPath, '--listen', '127.0.0.1:0'], { cwd: root });
    t.after(() => child.stop());
    const probe = probeLatency(`${child.url}/healthz`);
    await new Promise((r) => setTimeout(r, 3000));
    const latency = await probe.stop();
    t.diagnostic(`slowest /healthz ${latency.maxMs.toFixed(1)} ms over ${latency.probes} probes in the first 3 s; slowest at (ms after start, ms): ${JSON.stringify(latency.slowest)}`);
    assert.deepEqual(latency.failures, []);
    assert.ok(latency.maxMs < HEALTHZ_MS, `/healthz took ${latency.maxMs.toFixed(0)} ms`);
  });
});
