import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { inventoryHash } from '../../shared/inventory-hash.ts';
import { generateKeyPair } from '../../shared/signing.ts';
import { runCaptured } from '../../shared/testing/capture.ts';
import { DATA_DIR } from '../../shared/testing/data.ts';
import { startPostgres, type Postgres } from '../../shared/testing/postgres.ts';
import { needs, TOOLS } from '../../shared/testing/system-tools.ts';
import { inventoryOf, rhel95Packages } from '../../shared/testing/correlate-fixtures.ts';
import { importFeedPath } from '../services/feeds/store-import.ts';
import { parseConfig } from '../config.ts';
import { createLogger } from '../logger.ts';
import { createCollector } from '../server.ts';
import { openDatabase } from '../store/db.ts';
import { storeOn } from '../store/store.ts';
import { migratePostgres } from '../store/postgres/migrate.ts';
import { PostgresDatabase } from '../store/sql/postgres.ts';
import { sql, sqliteText } from '../store/sql/query.ts';
import { apiTokenCommand } from './api-token.ts';
import { exceptionCommand } from './exception.ts';
import { rolloutCommand } from './rollout.ts';
import { displayUrl, storeCommand } from './store.ts';
import { asyncAdvisories } from '../../shared/testing/store-fixtures.ts';

/** Hostnames an agent could send: each must arrive in PostgreSQL byte for byte. */
const HOSTILE = ["db'; DROP TABLE agents; --", '<script>alert(1)</script>', 'ünïcødé-☃-host', '$(reboot)', '../../etc/passwd'];

describe('displayUrl', () => {
  const cases: [string, string | RegExp][] = [
    ['postgres://pw:secret@db.example.net:5433/patchwarden?sslmode=require', 'postgres://pw@db.example.net:5433/patchwarden'],
    ['postgresql://pw@127.0.0.1/pw', 'postgresql://pw@127.0.0.1/pw'],
    ['mysql://pw@db/pw', /expected a postgres:\/\/ URL/],
    ['not a url', /expected a URL/],
  ];
  for (const [input, want] of cases) {
    test(input, () => {
      if (typeof want === 'string') assert.equal(displayUrl(input), want);
      else assert.throws(() => displayUrl(input), { code: 'PW_ERR_USAGE', message: want });
    });
  }
});

describe('store migrate', { skip: needs(TOOLS.postgres) }, () => {
  let cluster: Postgres;
  let dir: string;
  let dbPath: string;
  const agentIds: string[] = [];
  let apiToken = '';
  before(async () => {
    cluster = await startPostgres();
    dir = mkdtempSync(join(tmpdir(), 'pw-store-migrate-'));
    dbPath = join(dir, 'collector.db');
    // A real SQLite collector: real advisories, hosts with real inventories, tokens, an
    // exception, an API token, a rollout, and the audit log all of that wrote.
    const db = openDatabase(dbPath);
    const fleet = storeOn(db).async;
    await fleet.tokens.create({ uses: 10, ttlMs: 86_400_000, createdBy: 'cli:test' });
    const lines = gunzipSync(readFileSync(join(DATA_DIR, 'osv', 'almalinux9.osv.jsonl.gz'))).toString('utf8').split('\n').filter(Boolean).slice(-300).join('\n');
    writeFileSync(join(dir, 'alma9.osv.jsonl'), lines + '\n');
    await importFeedPath(asyncAdvisories(db), join(dir, 'alma9.osv.jsonl'), { name: 'alma9' });
    const packages = rhel95Packages();
    for (const [i, hostname] of HOSTILE.entries()) {
      const id = await fleet.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname, machineId: null, tokenId: null });
      agentIds.push(id);
      const inv = inventoryOf('AlmaLinux:9', 'rpm', packages.slice(i));
      inv.host.hostname = hostname;
      await fleet.reports.ingest(id, randomUUID(), inventoryHash(inv), inv);
    }
    await fleet.agents.setTags(agentIds[0] as string, ['web', 'env=prod'], 'cli:test');
    await fleet.agents.revoke(agentIds[4] as string, 'cli:test');
    db.close();
    const run = async (command: typeof storeCommand, argv: string[]) => {
      const r = await runCaptured(command, argv);
      assert.equal(r.code, 0, r.stderr);
    };
    const created = await runCaptured(apiTokenCommand, ['create', '--db', dbPath, '--name', 'ci', '--role', 'admin', '--json']);
    assert.equal(created.code, 0, created.stderr);
    apiToken = (JSON.parse(created.stdout) as { token: string }).token;
    const advisory = (openDatabase(dbPath, { readonly: true }).prepare('SELECT id FROM advisories ORDER BY id LIMIT 1').pluck().get() as string);
    await run(exceptionCommand, ['add', '--db', dbPath, '--advisory', advisory, '--fleet-wide', '--owner', 'ops', '--reason', "vendor says <not> affected; 'quoted'", '--expires', '2027-06-01']);
    const plan = join(dir, 'plan.json');
    writeFileSync(plan, JSON.stringify({ name: 'reboot web', target: { tags: ['web'] }, action: { kind: 'reboot' }, waves: { canary: { hosts: 1 } } }));
    await run(rolloutCommand, ['create', '--db', dbPath, '--plan', plan]);
    // It has served: its hosts were judged and their findings' history recorded (first seen, due).
    const served = await createCollector({ dbPath, listen: '127.0.0.1:0', config: parseConfig({ feedSync: false }), logger: createLogger({ level: 'silent' }) });
    await served.findings.drained();
    await served.close();
    // Then it crashed holding an agent's connection: its mark and its liveness row are left.
    const crashed = openDatabase(dbPath);
    crashed.prepare("INSERT INTO replicas (id, host, pid, started_at, heartbeat_at, expires_at) VALUES ('old:1:x', 'old', 1, 'then', 'then', 'then')").run();
    crashed.prepare("UPDATE agents SET connected = 1, connected_by = 'old:1:x' WHERE id = ?").run(agentIds[0]);
    crashed.close();
  });
  after(async () => {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('moves every table into PostgreSQL, verified, agents keeping their keys, and audits the move', async () => {
    const out = await runCaptured(storeCommand, ['migrate', '--from', dbPath, '--to', cluster.url, '--json']);
    assert.equal(out.code, 0, out.stderr);
    const result = JSON.parse(out.stdout) as { to: string; tables: { table: string; rows: number; sha256: string }[] };
    const rows = Object.fromEntries(result.tables.map((t) => [t.table, t.rows]));
    // Every kind of thing the collector believes made it across, not only empty tables.
    for (const table of ['agents', 'enrollment_tokens', 'reports', 'inventory_contents', 'hosts', 'advisories', 'feeds', 'api_tokens', 'exceptions', 'rollouts', 'audit', 'content_findings']) {
      assert.ok((rows[table] ?? 0) > 0, `${table} copied with rows`);
    }

    const src = openDatabase(dbPath, { readonly: true });
    const pg = new PostgresDatabase({ url: cluster.url, max: 2 });
    try {
      const agents = sql('SELECT id, public_key, hostname, revoked_at, tags FROM agents ORDER BY id');
      assert.deepEqual(await pg.all(agents), src.prepare(sqliteText(agents)).all());
      // No collector of the new store holds a connection yet; the old one's liveness stays behind.
      assert.equal(rows.replicas, undefined);
      assert.deepEqual(await pg.all(sql('SELECT id FROM replicas')), []);
      assert.deepEqual(await pg.all(sql('SELECT id FROM agents WHERE connected = 1 OR connected_by IS NOT NULL')), []);
      assert.deepEqual(
        (await pg.all<{ hostname: string }>(sql('SELECT hostname FROM hosts ORDER BY hostname COLLATE "C"'))).map((r) => r.hostname),
        [...HOSTILE].sort(),
      );
      // The audit log as it was, then the move itself, by the verified unix user.
      const audit = await pg.all<{ id: number; actor: string; action: string }>(sql('SELECT id, actor, action FROM audit ORDER BY id'));
      const before = src.prepare('SELECT id, actor, action FROM audit ORDER BY id').all();
      assert.deepEqual(audit.slice(0, -1), before);
      const last = audit.at(-1)!;
      assert.equal(last.action, 'store.migrate');
      assert.match(last.actor, /^cli:/);
      // New rows continue after the copied ids, as SQLite's rowids would have.
      const next = await pg.get<{ id: number }>(sql("INSERT INTO audit (at, actor, action) VALUES ('now', 'test', 'after') RETURNING id"));
      assert.equal(next?.id, last.id + 1);
      const seq = await pg.get<{ seq: number }>(sql('SELECT max(seq) AS seq FROM reports'));
      assert.equal(seq?.seq, src.prepare('SELECT max(rowid) FROM reports').pluck().get());
      // The change-log triggers were off during the copy and are on again.
      const changes = (await pg.get<{ n: number }>(sql('SELECT count(*) AS n FROM advisory_changes')))!.n;
      assert.equal(changes, rows.advisory_changes);
      await pg.run(sql("UPDATE feeds SET checked_at = 'now' WHERE source = 'alma9'"));
      assert.equal((await pg.get<{ n: number }>(sql('SELECT count(*) AS n FROM advisory_changes')))!.n, changes + 1);
    } finally {
      src.close();
      await pg.close();
    }
    assert.doesNotMatch(out.stdout + out.stderr, /secret/);
  });

  test('a collector served from the migrated PostgreSQL shows what the SQLite one shows: hosts, findings, rollouts, audit', async (t) => {
    // The test before touched the copied feed row (to fire the change log): as it was in SQLite again.
    const src = openDatabase(dbPath, { readonly: true });
    const checkedAt = src.prepare("SELECT checked_at FROM feeds WHERE source = 'alma9'").pluck().get() as string;
    src.close();
    const pg = new PostgresDatabase({ url: cluster.url, max: 1 });
    await pg.run(sql("UPDATE feeds SET checked_at = ? WHERE source = 'alma9'"), [checkedAt]);
    await pg.close();
    const quiet = createLogger({ level: 'silent' });
    const config = (store: unknown) => parseConfig({ feedSync: false, keyFile: join(dir, 'collector.key'), ...(store === undefined ? {} : { store }) });
    const before = await createCollector({ dbPath, listen: '127.0.0.1:0', config: config(undefined), logger: quiet });
    t.after(() => before.close());
    const after = await createCollector({ dbPath: join(dir, 'not-used.db'), listen: '127.0.0.1:0', config: config({ kind: 'postgres', url: cluster.url }), logger: quiet });
    t.after(() => after.close());
    assert.equal(after.store.kind, 'postgres');
    assert.equal(after.sqlite, null);
    // Both have judged every host against the same advisories before they are asked.
    await Promise.all([before.findings.drained(), after.findings.drained()]);
    const get = async (base: string, path: string): Promise<unknown> => {
      const res = await fetch(`${base}/api/v1${path}`, { headers: { authorization: `Bearer ${apiToken}` } });
      assert.equal(res.status, 200, `${path}: ${await res.clone().text()}`);
      return res.json();
    };
    const both = async (path: string): Promise<[unknown, unknown]> => [await get(before.url, path), await get(after.url, path)];
    const [hostsBefore, hostsAfter] = await both('/hosts?limit=100');
    assert.deepEqual(hostsAfter, hostsBefore);
    assert.equal((hostsBefore as { items: unknown[] }).items.length, HOSTILE.length);
    let findings = 0;
    for (const id of agentIds) {
      // The same document but for when each collector made it.
      const [a, b] = (await both(`/hosts/${id}`)) as [{ findings: { generatedAt?: string; findings: unknown[] } }, { findings: { generatedAt?: string } }];
      delete a.findings.generatedAt;
      delete b.findings.generatedAt;
      assert.deepEqual(b, a, `host ${id}`);
      findings += a.findings.findings.length;
    }
    assert.ok(findings > 0, 'the hosts have findings to compare');
    const [rolloutsBefore, rolloutsAfter] = await both('/rollouts');
    assert.deepEqual(rolloutsAfter, rolloutsBefore);
    assert.equal((rolloutsBefore as { items: unknown[] }).items.length, 1);
    const [summaryBefore, summaryAfter] = (await both('/summary')) as [{ generatedAt?: string }, { generatedAt?: string }];
    delete summaryBefore.generatedAt;
    delete summaryAfter.generatedAt;
    assert.deepEqual(summaryAfter, summaryBefore);
    // The same audit log, and on PostgreSQL the move itself on top.
    const [auditBefore, auditAfter] = (await both('/audit?limit=500')) as [{ items: { action: string }[] }, { items: { action: string }[] }];
    // Less the row the test before wrote straight into PostgreSQL to see its ids go on.
    const moved = auditAfter.items.filter((e) => e.action !== 'after');
    assert.equal(moved[0]?.action, 'store.migrate');
    assert.deepEqual(moved.slice(1), auditBefore.items);
    assert.ok(auditBefore.items.length >= 8, 'an audit log with enrollments, tags, a revocation, tokens, an exception, a rollout');
  });

  test('refuses a database that already holds a store, and changes nothing in it', async () => {
    const pg = new PostgresDatabase({ url: cluster.url, max: 1 });
    const count = sql('SELECT (SELECT count(*) FROM agents) + (SELECT count(*) FROM audit) AS n');
    const before = await pg.get(count);
    await assert.rejects(runCaptured(storeCommand, ['migrate', '--from', dbPath, '--to', cluster.url]), { code: 'PW_ERR_STORE_NOT_EMPTY' });
    assert.deepEqual(await pg.get(count), before);
    await pg.close();
  });

  test('a copy that fails part way leaves the target empty', async () => {
    const pg = new PostgresDatabase({ url: cluster.url, max: 1 });
    await pg.runScript('DROP SCHEMA public CASCADE; CREATE SCHEMA public;');
    // The target refuses one hostile hostname: the agents before it were copied, then rolled back.
    await migratePostgres(pg);
    await pg.runScript(`ALTER TABLE hosts ADD CONSTRAINT no_script CHECK (hostname NOT LIKE '<script>%')`);
    await assert.rejects(runCaptured(storeCommand, ['migrate', '--from', dbPath, '--to', cluster.url]), /no_script/);
    const left = await pg.get<{ n: number }>(
      sql('SELECT (SELECT count(*) FROM agents) + (SELECT count(*) FROM hosts) + (SELECT count(*) FROM advisories) + (SELECT count(*) FROM audit) AS n'),
    );
    assert.equal(left?.n, 0);
    await pg.close();
  });

  test('usage errors name what is missing', async () => {
    const cases: [string[], RegExp][] = [
      [['migrate', '--to', 'postgres://x@127.0.0.1/x'], /--from FILE.db is required/],
      [['migrate', '--from', 'x.db'], /--to postgres:/],
      [['migrate', '--from', 'x.db', '--to', 'http://x'], /expected a postgres:\/\/ URL/],
      [['copy'], /expected migrate/],
    ];
    for (const [argv, message] of cases) await assert.rejects(runCaptured(storeCommand, argv), { code: 'PW_ERR_USAGE', message });
  });
});
