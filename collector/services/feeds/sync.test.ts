/**
 * `feed sync` against a real HTTP server on 127.0.0.1 serving the real data in
 * ../shared/data, with validators, failures, a forward proxy, and the CLI with a config.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it, type TestContext } from 'node:test';
import { EnvHttpProxyAgent, ProxyAgent, type Dispatcher } from 'undici';
import { runCaptured } from '../../../shared/testing/capture.ts';
import { DATA_DIR } from '../../../shared/testing/data.ts';
import { feedCommand } from '../../commands/feed.ts';
import type { AsyncStore } from '../../store/store.ts';
import { openDatabase, type Db } from '../../store/db.ts';
import { tempDatabase, asyncAdvisories } from '../../../shared/testing/store-fixtures.ts';
import { syncFeed, type SyncOptions } from './sync.ts';
import { gzipBomb, listenForTest as listen } from '../../../shared/testing/feed-fixtures.ts';

const T0 = new Date('2026-11-26T18:00:00.000Z');
const T1 = new Date('2026-11-26T19:00:00.000Z');

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
}

type Handler = (req: IncomingMessage, res: ServerResponse, socket: Socket) => Promise<void> | void;


/**
 * Serves `/data/<path>` from ../shared/data with a strong ETag (content hash) and
 * Last-Modified (the file's mtime), answering 304 to a matching If-None-Match or an
 * If-Modified-Since not older than the file. `routes` override paths.
 */
async function dataServer(t: TestContext, options: { etag?: boolean; lastModified?: boolean; routes?: Record<string, Handler> } = {}) {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    void (async () => {
      const url = req.url ?? '/';
      seen.push({ method: req.method ?? '', url, headers: req.headers });
      const route = options.routes?.[url];
      if (route !== undefined) {
        await route(req, res, req.socket);
        return;
      }
      const file = resolve(DATA_DIR, decodeURIComponent(url.replace(/^\/data\//, '')));
      if (!url.startsWith('/data/') || !file.startsWith(DATA_DIR + sep)) {
        res.writeHead(404).end();
        return;
      }
      const body = await readFile(file).catch(() => null);
      if (body === null) {
        res.writeHead(404).end('not found');
        return;
      }
      const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
      const mtime = new Date(Math.floor((await stat(file)).mtimeMs / 1000) * 1000);
      const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
      if (options.etag ?? true) headers.etag = etag;
      if (options.lastModified ?? true) headers['last-modified'] = mtime.toUTCString();
      const inm = req.headers['if-none-match'];
      const ims = req.headers['if-modified-since'];
      // RFC 9110 13.2.2: If-None-Match wins; If-Modified-Since only when it is absent.
      const notModified = inm !== undefined ? (options.etag ?? true) && inm === etag : ims !== undefined && (options.lastModified ?? true) && Date.parse(ims) >= mtime.getTime();
      if (notModified) {
        res.writeHead(304, headers).end();
        return;
      }
      res.writeHead(200, { ...headers, 'content-length': String(body.length) }).end(body);
    })().catch(() => res.destroy());
  });
  const port = await listen(t, server);
  return { base: `http://127.0.0.1:${port}`, port, seen };
}

/** A forward proxy: absolute-URI requests are forwarded, CONNECT is tunnelled. It records what it was asked. */
async function forwardProxy(t: TestContext) {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method ?? ''} ${req.url ?? ''}`);
    const target = new URL(req.url ?? '');
    const up = httpRequest({ host: target.hostname, port: target.port, path: target.pathname + target.search, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    seen.push(`CONNECT ${req.url ?? ''}`);
    const [host, port] = (req.url ?? '').split(':');
    const up = connect(Number(port), host ?? '', () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
    socket.on('close', () => up.destroy());
  });
  const port = await listen(t, server);
  return { url: `http://127.0.0.1:${port}`, seen };
}

async function tempStore(t: TestContext): Promise<{ path: string; db: Db; store: AsyncStore['advisories'] }> {
  const { path, db } = await tempDatabase(t, 'sync');
  return { path, db, store: asyncAdvisories(db) };
}

function agent(t: TestContext, d: Dispatcher = new EnvHttpProxyAgent({ httpProxy: '', httpsProxy: '', noProxy: '' })): Dispatcher {
  t.after(() => d.close());
  return d;
}

function dump(db: Db): string {
  const h = createHash('sha256');
  for (const sql of ['SELECT * FROM advisories ORDER BY source, id', 'SELECT * FROM affected ORDER BY source, id, ecosystem, package', 'SELECT * FROM kev ORDER BY feed, cve']) {
    for (const row of db.prepare(sql).iterate()) h.update(JSON.stringify(row) + '\n');
  }
  return `${String(db.prepare('SELECT count(*) AS n FROM advisories').pluck().get())} advisories ${h.digest('hex')}`;
}

const ALMA9 = '/data/osv/almalinux9.osv.jsonl.gz';
const ALPINE = '/data/alpine-secdb/v3.21-main.json.gz';
const fast: SyncOptions = { backoffMs: 1, now: () => T0 };

describe('syncFeed conditional fetches', () => {
  it('first sync imports the real almalinux9 export; the second gets 304 and changes nothing', async (t) => {
    const srv = await dataServer(t);
    const { db, store } = await tempStore(t);
    const src = { name: 'almalinux9', url: srv.base + ALMA9, mirror: true };
    const first = await syncFeed(store, src, { ...fast, dispatcher: agent(t) });
    assert.equal(first.status, 'imported');
    assert.deepEqual(first.result.advisories, { added: 1783, updated: 0, unchanged: 0 });
    const row = (await store.feeds())[0]!;
    assert.equal(row.location, src.url);
    assert.match(row.etag ?? '', /^"[\w-]{27}"$/);
    assert.match(row.lastModified ?? '', /GMT$/);
    const before = dump(db);

    const second = await syncFeed(store, src, { ...fast, now: () => T1, dispatcher: agent(t) });
    assert.deepEqual(second, { source: 'almalinux9', status: 'not-modified' });
    assert.equal(srv.seen.length, 2);
    assert.equal(srv.seen[0]!.headers['if-none-match'], undefined);
    assert.equal(srv.seen[1]!.headers['if-none-match'], row.etag);
    assert.equal(srv.seen[1]!.headers['if-modified-since'], row.lastModified);
    assert.equal(dump(db), before);
    const after = (await store.feeds())[0]!;
    assert.deepEqual({ ...after, checkedAt: null }, { ...row, checkedAt: null });
    assert.equal(after.checkedAt, T1.toISOString(), 'a 304 is a successful check');
  });

  const validators: [string, { etag: boolean; lastModified: boolean }][] = [
    ['ETag only', { etag: true, lastModified: false }],
    ['Last-Modified only', { etag: false, lastModified: true }],
  ];
  for (const [name, v] of validators) {
    it(`a server with ${name}: the second sync is not-modified`, async (t) => {
      const srv = await dataServer(t, v);
      const { store } = await tempStore(t);
      const src = { name: 'alpine-main', url: srv.base + ALPINE, mirror: true };
      assert.equal((await syncFeed(store, src, { ...fast, dispatcher: agent(t) })).status, 'imported');
      assert.equal((await syncFeed(store, src, { ...fast, dispatcher: agent(t) })).status, 'not-modified');
      assert.equal(srv.seen[1]?.headers[v.etag ? 'if-none-match' : 'if-modified-since'] !== undefined, true);
    });
  }

  it('a server with no validators: every sync downloads, and the import reports it unchanged', async (t) => {
    const srv = await dataServer(t, { etag: false, lastModified: false });
    const { db, store } = await tempStore(t);
    const src = { name: 'alpine-main', url: srv.base + ALPINE, mirror: true };
    await syncFeed(store, src, { ...fast, dispatcher: agent(t) });
    const before = dump(db);
    const again = await syncFeed(store, src, { ...fast, dispatcher: agent(t) });
    assert.deepEqual(again.status === 'imported' && again.result.advisories, { added: 0, updated: 0, unchanged: 1142 });
    assert.equal(dump(db), before);
  });

  it('a redirect is followed (undici 7 needs the redirect interceptor for it)', async (t) => {
    const srv = await dataServer(t, {
      routes: {
        '/mirror/v3.21-main.json.gz': (_req, res) => {
          res.writeHead(301, { location: ALPINE }).end();
        },
      },
    });
    const { store } = await tempStore(t);
    const out = await syncFeed(store, { name: 'alpine-main', url: `${srv.base}/mirror/v3.21-main.json.gz`, mirror: true }, { ...fast, dispatcher: agent(t) });
    assert.equal(out.status, 'imported', JSON.stringify(out));
    assert.deepEqual(
      srv.seen.map((s) => s.url),
      ['/mirror/v3.21-main.json.gz', ALPINE],
    );
  });
});

describe('syncFeed failures keep the last good data', () => {
  /** A store holding a good import of Alpine v3.21 main from a good server. */
  async function goodStore(t: TestContext) {
    const good = await dataServer(t);
    const s = await tempStore(t);
    const first = await syncFeed(s.store, { name: 'alpine-main', url: good.base + ALPINE, mirror: true }, { ...fast, dispatcher: agent(t) });
    assert.equal(first.status, 'imported');
    return { ...s, before: dump(s.db), feed: (await s.store.feeds())[0]! };
  }

  it('503 twice then 200: retried with backoff and imported', async (t) => {
    let calls = 0;
    const body = await readFile(join(DATA_DIR, 'osv', 'almalinux9.osv.jsonl.gz'));
    const srv = await dataServer(t, {
      routes: {
        '/flaky/almalinux9.osv.jsonl.gz': (_req, res) => {
          calls++;
          if (calls <= 2) res.writeHead(503, { 'retry-after': '0' }).end('busy');
          else res.writeHead(200, { 'content-length': String(body.length) }).end(body);
        },
      },
    });
    const { store } = await tempStore(t);
    const out = await syncFeed(store, { name: 'almalinux9', url: `${srv.base}/flaky/almalinux9.osv.jsonl.gz`, mirror: true }, { ...fast, retries: 3, dispatcher: agent(t) });
    assert.equal(out.status, 'imported', JSON.stringify(out));
    assert.equal(calls, 3);
    assert.equal((await store.feeds())[0]?.records, 1783);
  });

  it('503 past the retries: failed with PW_ERR_FEED_FETCH after retries + 1 attempts', async (t) => {
    const srv = await dataServer(t, { routes: { '/down.jsonl.gz': (_req, res) => void res.writeHead(503).end() } });
    const { db, store, before } = await goodStore(t);
    const out = await syncFeed(store, { name: 'alpine-main', url: `${srv.base}/down.jsonl.gz`, mirror: true }, { ...fast, retries: 2, dispatcher: agent(t) });
    assert.deepEqual(out, { source: 'alpine-main', status: 'failed', error: `${srv.base}/down.jsonl.gz: HTTP 503`, code: 'PW_ERR_FEED_FETCH' });
    assert.equal(srv.seen.length, 3);
    assert.equal(dump(db), before);
  });

  it('404: failed at once, not retried; records, data and validators stay', async (t) => {
    const srv = await dataServer(t);
    const { db, store, before, feed } = await goodStore(t);
    const url = `${srv.base}/data/osv/almalinux99.osv.jsonl.gz`;
    const out = await syncFeed(store, { name: 'alpine-main', url, mirror: true }, { ...fast, retries: 3, now: () => T1, dispatcher: agent(t) });
    assert.deepEqual(out, { source: 'alpine-main', status: 'failed', error: `${url}: HTTP 404`, code: 'PW_ERR_FEED_FETCH' });
    assert.equal(srv.seen.length, 1);
    assert.equal(dump(db), before);
    const row = (await store.feeds())[0]!;
    assert.deepEqual({ ...row, lastError: null }, feed);
    assert.equal(row.lastError, `${T1.toISOString()} ${url}: HTTP 404`);
  });

  it('a response cut short (Content-Length larger than what is sent, then the socket closes): failed, store unchanged', async (t) => {
    const body = await readFile(join(DATA_DIR, 'osv', 'almalinux9.osv.jsonl.gz'));
    const srv = await dataServer(t, {
      routes: {
        '/cut/almalinux9.osv.jsonl.gz': (_req, res, socket) => {
          res.writeHead(200, { 'content-length': String(body.length) });
          res.write(body.subarray(0, 100_000), () => socket.destroy());
        },
      },
    });
    const { db, store, before } = await goodStore(t);
    const out = await syncFeed(store, { name: 'alpine-main', url: `${srv.base}/cut/almalinux9.osv.jsonl.gz`, mirror: true }, { ...fast, retries: 1, dispatcher: agent(t) });
    assert.equal(out.status, 'failed');
    assert.equal(out.code, 'PW_ERR_FEED_FETCH');
    assert.match(out.error, /\/cut\/almalinux9\.osv\.jsonl\.gz: other side closed \(UND_ERR_SOCKET\)$/);
    assert.equal(srv.seen.filter((s) => s.url.startsWith('/cut/')).length, 2, 'a cut connection is retried');
    assert.equal(dump(db), before);
    assert.match((await store.feeds())[0]?.lastError ?? '', /\/cut\/almalinux9\.osv\.jsonl\.gz: /);
  });

  const big: [string, Handler][] = [
    [
      'declared by Content-Length',
      async (_req, res) => {
        const body = await readFile(join(DATA_DIR, 'osv', 'almalinux9.osv.jsonl.gz'));
        res.writeHead(200, { 'content-length': String(body.length) }).end(body);
      },
    ],
    [
      'sent chunked, with no length',
      async (_req, res) => {
        const body = await readFile(join(DATA_DIR, 'osv', 'almalinux9.osv.jsonl.gz'));
        res.writeHead(200);
        for (let i = 0; i < body.length; i += 65_536) res.write(body.subarray(i, i + 65_536));
        res.end();
      },
    ],
  ];
  for (const [name, handler] of big) {
    it(`a body over maxBytes, ${name}: refused with PW_ERR_INPUT_TOO_LARGE, not retried`, async (t) => {
      const srv = await dataServer(t, { routes: { '/big.jsonl.gz': handler } });
      const { db, store, before } = await goodStore(t);
      const out = await syncFeed(store, { name: 'alpine-main', url: `${srv.base}/big.jsonl.gz`, mirror: true }, { ...fast, maxBytes: 100_000, dispatcher: agent(t) });
      assert.equal(out.status, 'failed');
      assert.equal(out.code, 'PW_ERR_INPUT_TOO_LARGE');
      assert.match(out.error, /100000-byte limit|more than 100000 bytes/);
      assert.equal(srv.seen.length, 1);
      assert.equal(dump(db), before);
    });
  }

  it('a 200 whose body is no feed (an HTML error page): PW_ERR_FEED_FORMAT, validators not stored', async (t) => {
    const srv = await dataServer(t, {
      routes: {
        '/portal/almalinux9.osv.jsonl.gz': (_req, res) => {
          res.writeHead(200, { etag: '"portal"', 'content-type': 'text/html' }).end('<html><body>Please log in to the proxy</body></html>\n');
        },
      },
    });
    const { db, store, before, feed } = await goodStore(t);
    const out = await syncFeed(store, { name: 'alpine-main', url: `${srv.base}/portal/almalinux9.osv.jsonl.gz`, mirror: true }, { ...fast, dispatcher: agent(t) });
    assert.equal(out.status, 'failed');
    assert.equal(out.code, 'PW_ERR_FEED_FORMAT');
    const url = `${srv.base}/portal/almalinux9.osv.jsonl.gz`;
    assert.ok(out.error.startsWith(`${url}: nothing usable, refused: 1 problem(s), the first: ${url}:1: `), out.error);
    assert.ok((await store.feeds())[0]?.lastError?.includes(out.error));
    assert.equal(dump(db), before);
    assert.equal((await store.feeds())[0]?.etag, feed.etag, "a failed import must not keep the bad download's ETag");
  });
});

describe('syncFeed through a forward proxy', () => {
  const agents: [string, (proxy: string) => Dispatcher, RegExp][] = [
    ['EnvHttpProxyAgent (CONNECT tunnel)', (proxy) => new EnvHttpProxyAgent({ httpProxy: proxy, noProxy: '' }), /^CONNECT 127\.0\.0\.1:\d+$/],
    ['ProxyAgent without tunnel (absolute-URI request)', (proxy) => new ProxyAgent({ uri: proxy, proxyTunnel: false }), /^GET http:\/\/127\.0\.0\.1:\d+\/data\/alpine-secdb\/v3\.21-main\.json\.gz$/],
  ];
  for (const [name, make, expected] of agents) {
    it(`${name}: the proxy sees the request and the feed is imported`, async (t) => {
      const srv = await dataServer(t);
      const proxy = await forwardProxy(t);
      const { store } = await tempStore(t);
      const out = await syncFeed(store, { name: 'alpine-main', url: srv.base + ALPINE, mirror: true }, { ...fast, dispatcher: agent(t, make(proxy.url)) });
      assert.equal(out.status, 'imported', JSON.stringify(out));
      assert.equal(proxy.seen.length, 1, proxy.seen.join('\n'));
      assert.match(proxy.seen[0] ?? '', expected);
      assert.equal(srv.seen.length, 1);
    });
  }

  it('with no dispatcher, HTTP_PROXY from the environment is used', async (t) => {
    const srv = await dataServer(t);
    const proxy = await forwardProxy(t);
    const { store } = await tempStore(t);
    const saved = { HTTP_PROXY: process.env.HTTP_PROXY, NO_PROXY: process.env.NO_PROXY, no_proxy: process.env.no_proxy };
    t.after(() => {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) Reflect.deleteProperty(process.env, k);
        else process.env[k] = v;
      }
    });
    process.env.HTTP_PROXY = proxy.url;
    process.env.NO_PROXY = '';
    Reflect.deleteProperty(process.env, 'no_proxy');
    const out = await syncFeed(store, { name: 'alpine-main', url: srv.base + ALPINE, mirror: true }, fast);
    assert.equal(out.status, 'imported', JSON.stringify(out));
    assert.match(proxy.seen.join('\n'), /^CONNECT 127\.0\.0\.1:\d+$/);
  });
});

describe('feed sync --config through feedCommand', () => {
  it('two feeds, one 404: exit 1, the other imported, feed list says which failed', async (t) => {
    const srv = await dataServer(t);
    const { path: db, db: conn } = await tempStore(t);
    conn.close();
    const config = join(tmpdir(), `pw-sync-config-${process.pid}.json`);
    t.after(() => rm(config, { force: true }));
    await writeFile(
      config,
      JSON.stringify({
        feeds: [
          { name: 'alpine-main', url: srv.base + ALPINE, mirror: true },
          { name: 'gone', url: `${srv.base}/data/osv/almalinux99.osv.jsonl.gz`, mirror: true },
        ],
        catalogue: { enabled: false },
      }),
    );
    const { code, stdout, stderr } = await runCaptured(feedCommand, ['sync', '--db', db, '--config', config]);
    assert.equal(code, 1);
    assert.equal(stdout, 'alpine-main: alpine-secdb: 1142 added, 0 updated, 0 unchanged; 1 warning\n');
    assert.match(stderr, new RegExp(`^gone: failed, keeping the last good data: ${srv.base}/data/osv/almalinux99\\.osv\\.jsonl\\.gz: HTTP 404 \\(PW_ERR_FEED_FETCH\\)$`, 'm'));
    assert.deepEqual(
      srv.seen.map((s) => s.url),
      [ALPINE, '/data/osv/almalinux99.osv.jsonl.gz'],
    );
    const check = openDatabase(db, { readonly: true });
    t.after(() => check.close());
    const rows = await asyncAdvisories(check).feeds();
    assert.deepEqual(
      rows.map((r) => [r.source, r.records, r.lastError === null ? 'ok' : 'failed']),
      [
        ['alpine-main', 1142, 'ok'],
        ['gone', 0, 'failed'],
      ],
    );
  });

  it('a config that is not valid: PW_ERR_USAGE naming the field', async (t) => {
    const config = join(tmpdir(), `pw-sync-bad-config-${process.pid}.json`);
    t.after(() => rm(config, { force: true }));
    await writeFile(config, JSON.stringify({ feeds: [{ name: 'x', url: 'ftp://example.org/feed.json' }] }));
    const nowhere = new Writable({
      write: (_c, _e, cb) => {
        cb();
      },
    });
    await assert.rejects(feedCommand(['sync', '--db', join(tmpdir(), 'never.db'), '--config', config], { stdout: nowhere, stderr: nowhere }), { code: 'PW_ERR_USAGE', message: /feeds\.0\.url/ });
  });
});

describe('feed sync: the server cannot make it inflate or wait without bound (issue 10)', () => {
  it('a 1 MiB .jsonl.gz of newlines: refused with PW_ERR_INFLATE_LIMIT, not retried, the store unchanged', async (t) => {
    const bomb = gzipBomb(1 << 20);
    const srv = await dataServer(t, { routes: { '/bomb.jsonl.gz': (_req, res) => void res.writeHead(200, { 'content-length': String(bomb.length) }).end(bomb) } });
    const { db, store } = await tempStore(t);
    const before = dump(db);
    const out = await syncFeed(store, { name: 'bomb', url: `${srv.base}/bomb.jsonl.gz`, mirror: true }, { ...fast, dispatcher: agent(t) });
    assert.equal(out.status, 'failed');
    assert.equal(out.code, 'PW_ERR_INFLATE_LIMIT');
    assert.equal(srv.seen.length, 1);
    assert.equal(dump(db), before);
  });

  /** One byte of a real feed every `everyMs`: never idle long enough for the idle timeout. */
  const trickle =
    (everyMs: number): Handler =>
    async (_req, res, socket) => {
      const body = await readFile(join(DATA_DIR, 'osv', 'almalinux9.osv.jsonl.gz'));
      res.writeHead(200, { 'content-length': String(body.length) });
      let at = 0;
      const timer = setInterval(() => {
        if (socket.destroyed) clearInterval(timer);
        else res.write(body.subarray(at, ++at));
      }, everyMs);
      socket.on('close', () => {
        clearInterval(timer);
      });
    };

  it('a server sending one byte every 50 ms under a 500 ms idle timeout: stopped at its 1 s deadline with PW_ERR_FEED_DEADLINE, not retried', async (t) => {
    const srv = await dataServer(t, { routes: { '/slow.jsonl.gz': trickle(50) } });
    const { db, store } = await tempStore(t);
    const before = dump(db);
    const started = Date.now();
    const out = await syncFeed(store, { name: 'slow', url: `${srv.base}/slow.jsonl.gz`, mirror: true }, { ...fast, timeoutMs: 500, deadlineMs: 1000, dispatcher: agent(t) });
    assert.equal(out.status, 'failed');
    assert.equal(out.code, 'PW_ERR_FEED_DEADLINE');
    assert.ok(Date.now() - started < 10_000, 'the deadline ended it');
    assert.equal(srv.seen.length, 1);
    assert.equal(dump(db), before);
  });

  it("the config's deadlineSeconds is the feed's deadline in feed sync", async (t) => {
    const srv = await dataServer(t, { routes: { '/slow.jsonl.gz': trickle(200) } });
    const { path: db, db: conn } = await tempStore(t);
    conn.close();
    const config = join(tmpdir(), `pw-sync-deadline-${process.pid}.json`);
    t.after(() => rm(config, { force: true }));
    await writeFile(config, JSON.stringify({ feeds: [{ name: 'slow', url: `${srv.base}/slow.jsonl.gz`, deadlineSeconds: 1, mirror: true }], catalogue: { enabled: false } }));
    const { code, stderr } = await runCaptured(feedCommand, ['sync', '--db', db, '--config', config]);
    assert.equal(code, 1);
    assert.match(stderr, /^slow: failed, keeping the last good data: .*not downloaded within its 1 s deadline \(PW_ERR_FEED_DEADLINE\)$/m);
  });
});
