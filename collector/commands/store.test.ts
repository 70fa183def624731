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
  before(async () => {
    cluster = await startPostgres();
    dir = mkdtempSync(join(tmpdir(), 'pw-store-migrate-'));
    dbPath = join(dir, 'collector.db');
    // A real SQLite collector: real advisories, hosts with real inventories, tokens, an
    // exception, an API token, a rollout, and the audit log all of that wrote.
    const db = openDatabase(dbPath);
    const fleet = storeOn(db).async;
    await fleet.tokens.create({ uses: 10, ttlMs: 86_400_000, createdBy: 'cli:test' });
    const lines = gunzipSync(readFileSync(join(DATA_DIR, 'osv', 'almalinux9.osv.jsonl.gz'))).toString('utf8').split('\n').slice(0, 300).join('\n');
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
    await run(apiTokenCommand, ['create', '--db', dbPath, '--name', 'ci', '--role', 'operator']);
    const advisory = (openDatabase(dbPath, { readonly: true }).prepare('SELECT id FROM advisories ORDER BY id LIMIT 1').pluck().get() as string);
    await run(exceptionCommand, ['add', '--db', dbPath, '--advisory', advisory, '--fleet-wide', '--owner', 'ops', '--reason', "vendor says <not> affected; 'quoted'", '--expires', '2027-06-01']);
    const plan = join(dir, 'plan.json');
    writeFileSync(plan, JSON.stringify({ name: 'reboot web', target: { tags: ['web'] }, action: { kind: 'reboot' }, waves: { canary: { hosts: 1 } } }));
    await run(rolloutCommand, ['create', '--db', dbPath, '--plan', plan]);
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
    for (const table of ['agents', 'enrollment_tokens', 'reports', 'inventory_contents', 'hosts', 'advisories', 'advisory_changes', 'feeds', 'api_tokens', 'exceptions', 'rollouts', 'audit']) {
      assert.ok((rows[table] ?? 0) > 0, `${table} copied with rows`);
    }

    const src = openDatabase(dbPath, { readonly: true });
    const pg = new PostgresDatabase({ url: cluster.url, max: 2 });
    try {
      const agents = sql('SELECT id, public_key, hostname, revoked_at, tags FROM agents ORDER BY id');
      assert.deepEqual(await pg.all(agents), src.prepare(sqliteText(agents)).all());
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
