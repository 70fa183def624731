/**
 * Every CLI command that changes what the collector believes leaves an audit row with its
 * actor: `cli:<unix user>` and the uid of the process. One real SQLite file, the commands
 * run one after the other as an operator would, each row checked right after its command.
 */
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCaptured } from '../../shared/testing/capture.ts';
import { dataPath } from '../../shared/testing/data.ts';
import { generateKeyPair } from '../../shared/signing.ts';
import { inventoryOf } from '../../shared/testing/correlate-fixtures.ts';
import { openDatabase } from '../store/db.ts';
import { storeOn } from '../store/store.ts';
import { agentCommand } from './agent.ts';
import { apiTokenCommand } from './api-token.ts';
import { exceptionCommand } from './exception.ts';
import { feedCommand } from './feed.ts';
import { scanCommand } from './scan.ts';
import { tokenCommand } from './token.ts';

const ME = `cli:${userInfo().username}`;
const ALPINE = dataPath('alpine-secdb', 'v3.21-main.json.gz');
const ADV = 'Alpine:v3.21/openssl/3.3.2-r3';

interface Row {
  id: number;
  actor: string;
  action: string;
  target: string | null;
  detail: string | null;
  uid: number | null;
}

type Command = (argv: string[], io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream }) => Promise<number>;

describe('audit rows for every mutating CLI command', () => {
  let dir = '';
  let db = '';
  let agentId = '';
  let feedUrl = '';
  let closeServer = (): void => undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pw-audit-'));
    db = join(dir, 'c.db');
    const conn = openDatabase(db);
    try {
      agentId = await storeOn(conn).async.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: 'web-1', machineId: null, tokenId: null });
    } finally {
      conn.close();
    }
    // A feed mirror on loopback: the real Alpine secdb at /alpine.json.gz, 404 elsewhere.
    const server = createServer((req, res) => {
      if (new URL(req.url ?? '/', 'http://x').pathname !== '/alpine.json.gz') {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/gzip' });
      createReadStream(ALPINE).pipe(res);
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    feedUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    closeServer = () => {
      server.closeAllConnections();
      server.close();
    };
  });
  after(async () => {
    closeServer();
    await rm(dir, { recursive: true, force: true });
  });

  function lastRows(sinceId: number): Row[] {
    const conn = openDatabase(db, { readonly: true });
    try {
      return conn.prepare<[number], Row>('SELECT id, actor, action, target, detail, uid FROM audit WHERE id > ? ORDER BY id').all(sinceId);
    } finally {
      conn.close();
    }
  }

  function maxId(): number {
    const conn = openDatabase(db, { readonly: true });
    try {
      return conn.prepare<[], { n: number | null }>('SELECT max(id) AS n FROM audit').get()?.n ?? 0;
    } finally {
      conn.close();
    }
  }

  async function bundleFile(): Promise<{ file: string; key: string }> {
    const srcDb = join(dir, 'online.db');
    const file = join(dir, 'feeds.pwfeeds');
    assert.equal((await runCaptured(feedCommand, ['import', '--db', srcDb, ALPINE])).code, 0);
    const out = await runCaptured(feedCommand, ['export', '--db', srcDb, '--out', file]);
    assert.equal(out.code, 0, out.stderr);
    const key = /--trust=([A-Za-z0-9_-]{43})/.exec(out.stdout)?.[1];
    assert.ok(key !== undefined, out.stdout);
    return { file, key };
  }

  const cases: { name: string; run: () => Promise<[Command, string[]]>; code?: number; action: string; target: RegExp; detail?: RegExp }[] = [
    { name: 'token create', run: () => Promise.resolve([tokenCommand, ['create', '--db', db, '--uses', '2', '--ttl', '1h']]), action: 'enrollment-token.create', target: /^token:\d+$/ },
    { name: 'api-token create', run: () => Promise.resolve([apiTokenCommand, ['create', '--db', db, '--name', 'ops', '--role', 'operator']]), action: 'api-token.create', target: /^api-token:ops$/ },
    { name: 'api-token revoke', run: () => Promise.resolve([apiTokenCommand, ['revoke', '--db', db, '--name', 'ops']]), action: 'api-token.revoke', target: /^api-token:ops$/ },
    { name: 'agent revoke', run: () => Promise.resolve([agentCommand, ['revoke', '--db', db, agentId]]), action: 'agent.revoke', target: /^agent:[0-9a-f-]{36}$/ },
    {
      name: 'exception add --fleet-wide',
      run: () => Promise.resolve([exceptionCommand, ['add', '--db', db, '--advisory', ADV, '--fleet-wide', '--owner', 'sec-team', '--reason', 'WAF rule', '--expires', '2099-01-01']]),
      action: 'exception.add',
      target: /^exception:1$/,
      detail: /"host":null,"owner":"sec-team","reason":"WAF rule"/,
    },
    {
      name: 'exception add --host',
      run: () => Promise.resolve([exceptionCommand, ['add', '--db', db, '--advisory', ADV, '--host', 'web-1', '--owner', 'alice@example.org', '--reason', 'isolated', '--expires', '2099-01-01']]),
      action: 'exception.add',
      target: /^exception:2$/,
      detail: /"host":"web-1"/,
    },
    { name: 'exception remove', run: () => Promise.resolve([exceptionCommand, ['remove', '--db', db, '--id', '1']]), action: 'exception.remove', target: /^exception:1$/, detail: /"expired":"2099-01-01T23:59:59.999Z"/ },
    { name: 'feed import', run: () => Promise.resolve([feedCommand, ['import', '--db', db, ALPINE]]), action: 'feed.import', target: /^feed:v3\.21-main\.json\.gz$/, detail: /"path":".*v3\.21-main\.json\.gz".*"added":\d+/ },
    {
      name: 'feed import of a file that is no feed',
      run: async () => {
        const junk = join(dir, 'junk.json');
        await writeFile(junk, '{"not":"a feed"}');
        return [feedCommand, ['import', '--db', db, junk]];
      },
      code: 1,
      action: 'feed.import-refused',
      target: /^$/,
      detail: /"path":".*junk\.json","code":"PW_ERR_/,
    },
    {
      name: 'feed import of a signed bundle',
      run: async () => {
        const { file, key } = await bundleFile();
        return [feedCommand, ['import', '--db', db, `--trust=${key}`, file]];
      },
      action: 'feed.bundle-import',
      target: /^feed-bundle:collector-[A-Za-z0-9_-]+$/,
      detail: /"feeds":\[\{"source":"v3\.21-main\.json\.gz"/,
    },
    {
      name: 'feed sync',
      run: async () => {
        const config = join(dir, 'sync.json');
        await writeFile(config, JSON.stringify({ feeds: [{ name: 'alpine-main', url: `${feedUrl}/alpine.json.gz?key=s3cret`, mirror: true }], catalogue: { enabled: false } }));
        return [feedCommand, ['sync', '--db', db, '--config', config]];
      },
      action: 'feed.sync',
      target: /^feed:alpine-main$/,
      detail: /^\{"url":"http:\/\/127\.0\.0\.1:\d+\/alpine\.json\.gz","formats"/,
    },
    {
      name: 'feed sync that fails',
      run: async () => {
        const config = join(dir, 'sync-404.json');
        await writeFile(config, JSON.stringify({ feeds: [{ name: 'gone', url: `${feedUrl}/gone.json.gz?key=s3cret`, mirror: true }], catalogue: { enabled: false } }));
        return [feedCommand, ['sync', '--db', db, '--config', config]];
      },
      code: 1,
      action: 'feed.sync-failed',
      target: /^feed:gone$/,
      detail: /"code":"PW_ERR_FEED_FETCH"/,
    },
    {
      name: 'scan --record',
      run: async () => {
        const inv = join(dir, 'inv.json');
        const pkgs = [{ name: 'libssl3', version: '3.3.2-r1', arch: 'x86_64', source: 'openssl', sourceVersion: '3.3.2-r1' }];
        await writeFile(inv, JSON.stringify(inventoryOf('Alpine:v3.21', 'apk', pkgs)));
        return [scanCommand, ['--inventory', inv, '--db', db, '--record', '--json', '--now', '2026-11-01T10:00:00Z']];
      },
      action: 'scan.record',
      target: /^host:/,
      detail: /"inventory":".*inv\.json","findings":\d+,"open":\d+/,
    },
  ];

  for (const c of cases) {
    it(`${c.name}: ${c.action} by ${ME}, uid ${process.getuid?.() ?? '-'}`, async () => {
      const since = maxId();
      const [command, argv] = await c.run();
      const r = await runCaptured(command, argv);
      assert.equal(r.code, c.code ?? 0, r.stderr);
      const rows = lastRows(since).filter((row) => row.action === c.action);
      assert.equal(rows.length, 1, `one ${c.action} row: ${JSON.stringify(lastRows(since))}`);
      const row = rows[0] as Row;
      assert.equal(row.actor, ME);
      assert.equal(row.uid, process.getuid?.() ?? null);
      assert.match(row.target ?? '', c.target);
      if (c.detail !== undefined) assert.match(row.detail ?? '', c.detail);
      assert.doesNotMatch(row.detail ?? '', /s3cret|pwa_/, 'no secret in the row');
    });
  }

});
