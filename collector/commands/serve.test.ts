/**
 * `serve` as a real child process (node --import tsx collector/main.ts serve), driven by
 * the CLI and a real ws test agent; killed with SIGKILL right after acks and in the middle
 * of a stream of reports, then restarted on the same database: every acknowledged report
 * is there and nothing is half-written.
 */
import assert from 'node:assert/strict';
import { type ChildProcessByStdio, execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { before, describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { collectInventory } from '../../agent/inventory/inventory.ts';
import { inventoryHash } from '../../shared/inventory-hash.ts';
import type { Inventory } from '../../shared/protocol.ts';
import { newKeys, TestAgent } from '../../shared/testing/fake-agent.ts';
import { variant } from '../../shared/testing/collector-harness.ts';
import { openDatabase } from '../store/db.ts';
import { storeOn } from '../store/store.ts';
import { REPORTS_PER_AGENT } from '../store/reports.ts';

const root = join(import.meta.dirname, '..', '..');
const run = promisify(execFile);

let thisHost: Inventory;
before(async () => {
  thisHost = await collectInventory();
});

type Child = ChildProcessByStdio<null, Readable, Readable>;

interface Served {
  child: Child;
  url: string;
  agentUrl: string;
  stdout: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-serve-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function serve(t: TestContext, args: string[]): Promise<Served> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'collector/main.ts', 'serve', ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    // No feed sync from the internet in tests (collector/services/feeds/schedule.test.ts tests it against a local server).
    env: { ...process.env, PATCHWARDEN_LOG_LEVEL: 'warn', PATCHWARDEN_FEED_SYNC: 'off' },
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
    });
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const stdout: string[] = [];
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        stdout.push(line);
        const m = /^patchwarden-collector listening on (\S+) \(agents: (\S+)\)$/.exec(line);
        if (m !== null) resolve({ child, url: m[1]!, agentUrl: m[2]!, stdout, exited });
      }
    });
    void exited.then(({ code }) => {
      reject(new Error(`serve exited ${code} before listening: ${stderr}${stdout.join('\n')}`));
    });
  });
}

async function cli(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, ['--import', 'tsx', 'collector/main.ts', ...args], { cwd: root, timeout: 30_000, maxBuffer: 16 * 1024 * 1024 });
}

async function kill(s: Served): Promise<void> {
  s.child.kill('SIGKILL');
  assert.equal((await s.exited).signal, 'SIGKILL');
}

/** Opens the database the way the restarted collector will (WAL recovery) and checks it whole. */
function checkStore(dbPath: string) {
  const db = openDatabase(dbPath);
  try {
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    assert.deepEqual(db.pragma('foreign_key_check'), []);
    const ids = new Set(db.prepare('SELECT id FROM reports').pluck().all() as string[]);
    return { ids, store: storeOn(db).async, close: () => db.close(), db };
  } catch (err) {
    db.close();
    throw err;
  }
}

describe('serve (a real child process)', () => {
  it('token create, enroll, report, hosts --json with the package count, agent revoke refuses the next report, SIGTERM exits 0', async (t) => {
    const dir = await tempDir(t);
    const db = join(dir, 'c.db');
    const served = await serve(t, ['--db', db, '--listen', '127.0.0.1:0']);
    assert.match(served.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const keyStat = await stat(join(dir, 'collector.key'));
    assert.equal(keyStat.mode & 0o777, 0o600);

    const created = await cli(['token', 'create', '--db', db, '--uses', '2', '--ttl', '1h', '--note', 'rack 4']);
    const token = created.stdout.trim();
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.match(created.stderr, /2 uses, expires .*shown once/);

    const client = await TestAgent.connect(served.agentUrl);
    const { agentId } = await client.enroll(token, newKeys(), { hostname: thisHost.host.hostname });
    assert.equal((await client.report(thisHost)).status, 'stored');

    const hosts = JSON.parse((await cli(['hosts', '--db', db, '--json'])).stdout) as { agentId: string; packageCount: number; connected: boolean }[];
    assert.equal(hosts.length, 1);
    assert.equal(hosts[0]?.agentId, agentId);
    assert.equal(hosts[0].packageCount, thisHost.packages.length);
    assert.equal(hosts[0].connected, true);
    const table = (await cli(['hosts', '--db', db])).stdout;
    assert.match(table, new RegExp(`^HOSTNAME +ECOSYSTEM +ASSESSMENT +PACKAGES +KERNEL +REBOOT +LAST SEEN +AGENT\\n${thisHost.host.hostname} +${thisHost.host.ecosystem ?? '-'} +not-assessed +${thisHost.packages.length} `));

    assert.match((await cli(['agent', 'revoke', '--db', db, agentId])).stdout, /revoked\n$/);
    client.sendReport(variant(thisHost, 1));
    const refused = await client.refusal();
    assert.deepEqual([refused.error?.code, refused.close.code], ['PW_ERR_AGENT_REVOKED', 4003]);

    served.child.kill('SIGTERM');
    assert.deepEqual(await served.exited, { code: 0, signal: null });
    const check = checkStore(db);
    assert.equal((await check.store.agents.get(agentId))?.connected, false);
    assert.equal(check.ids.size, 1);
    check.close();
  });

  it('warns when told to listen beyond loopback without TLS', async (t) => {
    const dir = await tempDir(t);
    const served = await serve(t, ['--db', join(dir, 'c.db'), '--listen', '0.0.0.0:0']);
    const warning = served.stdout.map((l) => (l.startsWith('{') ? (JSON.parse(l) as { level: number; msg: string }) : null)).find((l) => l?.level === 40);
    assert.match(warning?.msg ?? '', /without TLS/);
    served.child.kill('SIGTERM');
    assert.equal((await served.exited).code, 0);
  });

  it('an existing empty --db is refused (PW_ERR_STORE_EMPTY_FILE, exit 1, no key made beside it); --init makes a database in it', async (t) => {
    const dir = await tempDir(t);
    const dbPath = join(dir, 'c.db');
    await writeFile(dbPath, '');
    await assert.rejects(cli(['serve', '--db', dbPath, '--listen', '127.0.0.1:0']), (err: Error & { code?: number; stderr?: string }) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr ?? '', /is an empty file, not a patchwarden database.*\(PW_ERR_STORE_EMPTY_FILE\)/);
      return true;
    });
    assert.deepEqual(await readdir(dir), ['c.db']);
    assert.equal((await stat(dbPath)).size, 0);
    const served = await serve(t, ['--db', dbPath, '--init', '--listen', '127.0.0.1:0']);
    assert.equal((await fetch(`${served.url}/healthz`)).status, 200);
    served.child.kill('SIGTERM');
    assert.equal((await served.exited).code, 0);
  });

  it('Ctrl-C under a supervisor (SIGINT to the group and the supervisor\'s SIGTERM at once) is one stop: exit 0, not the second-signal exit 1', async (t) => {
    const dir = await tempDir(t);
    const served = await serve(t, ['--db', join(dir, 'c.db'), '--listen', '127.0.0.1:0']);
    served.child.kill('SIGINT');
    served.child.kill('SIGTERM');
    assert.deepEqual(await served.exited, { code: 0, signal: null });
  });

  it('SIGKILL right after acks and in the middle of a stream: every acked report survives, nothing is half-written', async (t) => {
    const dir = await tempDir(t);
    const db = join(dir, 'c.db');
    let served = await serve(t, ['--db', db, '--listen', '127.0.0.1:0']);
    const keyBefore = await readFile(join(dir, 'collector.key'), 'utf8');

    // Enrolled through the running collector; the token straight from the store (WAL: two processes, one file).
    const setup = openDatabase(db);
    const { token } = await storeOn(setup).async.tokens.create({ uses: 1, ttlMs: 3600_000, createdBy: 'test' });
    setup.close();
    const keys = newKeys();
    let client = await TestAgent.connect(served.agentUrl);
    const { agentId } = await client.enroll(token, keys);

    // 1: five reports, each acked; SIGKILL the moment the last ack arrives.
    const first = Array.from({ length: 5 }, (_, i) => variant(thisHost, i));
    const firstIds: string[] = [];
    for (const inv of first.slice(0, 4)) firstIds.push((await client.report(inv)).id);
    const lastId = client.sendReport(first[4]!);
    const ack = await client.expect('ack');
    served.child.kill('SIGKILL');
    assert.equal(ack.id, lastId);
    firstIds.push(lastId);
    await kill(served);
    let check = checkStore(db);
    for (const id of firstIds) assert.ok(check.ids.has(id), `acked report ${id} is stored`);
    assert.equal((await check.store.agents.get(agentId))?.lastInventoryHash, inventoryHash(first[4]!));
    assert.deepEqual(await check.store.reports.latestInventory(agentId), first[4]);
    check.close();

    // 2: a stream of 150 reports without waiting; SIGKILL from inside the 40th ack's handler.
    served = await serve(t, ['--db', db, '--listen', '127.0.0.1:0']);
    assert.equal(await readFile(join(dir, 'collector.key'), 'utf8'), keyBefore, 'the key made at first start is kept');
    client = await TestAgent.connect(served.agentUrl);
    const { welcome } = await client.hello(agentId, keys);
    assert.equal(welcome.inventoryHash, inventoryHash(first[4]!));
    const stream = Array.from({ length: 150 }, (_, i) => variant(thisHost, 100 + i));
    const acked: string[] = [];
    const killedAt = new Promise<void>((resolve) => {
      client.ws.on('message', (data: Buffer) => {
        const m = JSON.parse(data.toString('utf8')) as { type: string; id?: string };
        if (m.type !== 'ack' || m.id === undefined) return;
        acked.push(m.id);
        if (acked.length === 40) {
          served.child.kill('SIGKILL');
          resolve();
        }
      });
    });
    const sentIds = stream.map((inv) => client.sendReport(inv));
    await killedAt;
    await kill(served);
    await client.closed;
    check = checkStore(db);
    // One connection's reports are ingested in order, and an agent keeps its newest
    // REPORTS_PER_AGENT: what is stored is the tail of a prefix of what was sent, and that
    // prefix holds every acked report.
    const storedAt = sentIds.flatMap((id, i) => (check.ids.has(id) ? [i] : []));
    const committed = (storedAt.at(-1) ?? -1) + 1;
    assert.ok(committed >= acked.length && committed < sentIds.length, `${acked.length} acked, ${committed} committed of ${sentIds.length}`);
    assert.deepEqual(acked, sentIds.slice(0, acked.length), 'every acked report is in the committed prefix');
    assert.deepEqual(storedAt, Array.from({ length: Math.min(committed, REPORTS_PER_AGENT) }, (_, i) => committed - Math.min(committed, REPORTS_PER_AGENT) + i));
    const last = stream[committed - 1]!;
    assert.deepEqual(await check.store.reports.latestInventory(agentId), last, 'the newest stored report reassembles whole');
    assert.equal((await check.store.hosts.get(agentId))?.lastReportId, sentIds[committed - 1]);
    const orphans = check.db.prepare('SELECT count(*) FROM inventory_contents c WHERE NOT EXISTS (SELECT 1 FROM reports r WHERE r.content_hash = c.hash)').pluck().get();
    assert.equal(orphans, 0, 'no content without its report');
    t.diagnostic(`killed after ${acked.length} acks: ${committed} of ${sentIds.length} reports committed`);
    check.close();

    // 3: restarted, the agent is told the newest stored hash and goes on with unchanged reports.
    served = await serve(t, ['--db', db, '--listen', '127.0.0.1:0']);
    client = await TestAgent.connect(served.agentUrl);
    const again = await client.hello(agentId, keys);
    assert.equal(again.welcome.inventoryHash, inventoryHash(last));
    assert.equal((await client.report(null, inventoryHash(last))).status, 'unchanged');
    assert.equal((await client.report(last, inventoryHash(last), sentIds[committed - 1])).status, 'duplicate');
    served.child.kill('SIGTERM');
    assert.equal((await served.exited).code, 0);
  });
});
