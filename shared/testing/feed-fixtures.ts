/**
 * Test helpers for the feed parsers: a minimal ZIP writer that can also lie (wrong CRC,
 * wrong sizes, hostile names), which no real zip tool will do on request; and a local
 * server standing in for the feed catalogue's upstreams. Only tests import this file.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { deflateRawSync, gunzipSync, gzipSync } from 'node:zlib';
import { dataPath } from './data.ts';
import { crc32 } from '../../collector/services/feeds/zip.ts';

/** A cut of FIRST's real EPSS file of 2026-09-29 (fixtures/README.md says where from and how). */
export const EPSS_EXCERPT = join(import.meta.dirname, '..', '..', 'collector', 'domain', 'feeds', 'fixtures', 'epss_scores-2026-09-29.excerpt.csv');

export interface TestZipEntry {
  name: string;
  data: Buffer;
  /** 0 stored, 8 deflate (default). */
  method?: 0 | 8;
  /** Overrides written into both headers, to build corrupt or hostile archives. */
  crc32?: number;
  uncompressedSize?: number;
  flags?: number;
}

export function buildZip(entries: readonly TestZipEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const method = e.method ?? 8;
    const body = method === 8 ? deflateRawSync(e.data) : e.data;
    const name = Buffer.from(e.name, 'utf8');
    const crc = e.crc32 ?? crc32(e.data);
    const size = e.uncompressedSize ?? e.data.length;
    const flags = (e.flags ?? 0) | 0x800;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc >>> 0, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    locals.push(local, name, body);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(flags, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(crc >>> 0, 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

/**
 * `bytes` (about) of gzip that inflate to about 1000 times as much of one byte (newlines
 * by default): the bomb of issue 10. Made of one gzip member repeated (a gzip file may hold
 * several, RFC 1952 2.2), so building it costs milliseconds, not a gigabyte of deflate.
 */
export function gzipBomb(bytes: number, fill = 0x0a): Buffer {
  const member = gzipSync(Buffer.alloc(16 * 1024 * 1024, fill), { level: 9 });
  return Buffer.concat(Array.from({ length: Math.max(1, Math.round(bytes / member.length)) }, () => member));
}

export interface ServedRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
}

/** Answers the request, or returns (or resolves to) false to let the server answer it with its file. */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => unknown;

/** Real ../shared/data files laid out as the catalogue's upstreams (collector/services/feeds/catalogue.ts) expect them under PW_FEED_CATALOGUE_BASE. */
function catalogueFiles(): Record<string, () => Buffer> {
  const gunzipped = (...p: string[]) => () => gunzipSync(readFileSync(dataPath(...p)));
  const osvZip = (...p: string[]) => () =>
    buildZip(
      gunzipSync(readFileSync(dataPath(...p)))
        .toString('utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => {
          const rec = JSON.parse(l) as { id: string };
          return { name: `${rec.id.replaceAll(':', '_')}.json`, data: Buffer.from(l) };
        }),
    );
  const files: Record<string, () => Buffer> = {
    '/kev/sites/default/files/feeds/known_exploited_vulnerabilities.json': gunzipped('kev', 'known_exploited_vulnerabilities.json.gz'),
    '/osv/AlmaLinux/all.zip': osvZip('osv', 'almalinux9.osv.jsonl.gz'),
    '/osv/Debian/all.zip': () => buildZip([{ name: 'DSA-3029-1.json', data: readFileSync(dataPath('osv', 'samples-osv.dev', 'DSA-3029-1.json')) }]),
    '/debianTracker/tracker/data/json': () => readFileSync(dataPath('debian', 'tracker-json-subset.vunnel-fixture.json')),
    '/epss/epss_scores-current.csv.gz': () => gzipSync(readFileSync(EPSS_EXCERPT)),
  };
  for (const rel of ['v3.20', 'v3.21']) for (const repo of ['main', 'community']) files[`/alpineSecdb/${rel}/${repo}.json`] = gunzipped('alpine-secdb', `${rel}-${repo}.json.gz`);
  return files;
}

/**
 * A local HTTP server on 127.0.0.1 standing in for the catalogue's upstreams, serving real
 * data with a strong ETag and answering 304 to a matching If-None-Match; `routes` replace
 * paths (5xx, slow, truncated, wrong content). Closed in t.after.
 */
export async function catalogueServer(t: TestContext, routes: Record<string, RouteHandler> = {}): Promise<{ base: string; seen: ServedRequest[] }> {
  const files = catalogueFiles();
  const cache = new Map<string, Buffer>();
  const seen: ServedRequest[] = [];
  const server = createServer((req, res) => {
    void (async () => {
      const url = req.url ?? '/';
      seen.push({ method: req.method ?? '', url, headers: req.headers });
      const route = routes[url];
      if (route !== undefined && (await route(req, res)) !== false) return;
      const make = files[url];
      if (make === undefined) {
        res.writeHead(404).end('not found');
        return;
      }
      let body = cache.get(url);
      if (body === undefined) {
        body = make();
        cache.set(url, body);
      }
      const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
      if (req.headers['if-none-match'] === etag) {
        res.writeHead(304, { etag }).end();
        return;
      }
      res.writeHead(200, { etag, 'content-type': 'application/octet-stream', 'content-length': String(body.length) }).end(body);
    })().catch(() => res.destroy());
  });
  return { base: `http://127.0.0.1:${await listenForTest(t, server)}`, seen };
}

/** Listens on 127.0.0.1:0 until the test ends (its sockets destroyed then); the port. */
export async function listenForTest(t: TestContext, server: Server): Promise<number> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  t.after(async () => {
    // Keep-alive and tunnelled sockets would hold close() open.
    for (const s of sockets) s.destroy();
    await new Promise<void>((ok) => {
      server.close(() => {
        ok();
      });
    });
  });
  return (server.address() as AddressInfo).port;
}

/** Points the feed catalogue at `base` (PW_FEED_CATALOGUE_BASE) for this test only. */
export function withCatalogueBase(t: TestContext, base: string): void {
  const before = process.env.PW_FEED_CATALOGUE_BASE;
  process.env.PW_FEED_CATALOGUE_BASE = base;
  t.after(() => {
    if (before === undefined) Reflect.deleteProperty(process.env, 'PW_FEED_CATALOGUE_BASE');
    else process.env.PW_FEED_CATALOGUE_BASE = before;
  });
}

/** One entry of a CISA KEV JSON catalog, every field CISA writes, with `over` in place of any. */
export function kevCatalogEntry(over: Record<string, string> = {}): Record<string, string> {
  return {
    cveID: 'CVE-2099-0001',
    vendorProject: 'Acme',
    product: 'Widget',
    vulnerabilityName: 'Acme Widget flaw',
    dateAdded: '2099-01-01',
    shortDescription: 'A flaw.',
    requiredAction: 'Patch.',
    dueDate: '2099-01-21',
    knownRansomwareCampaignUse: 'Unknown',
    notes: '',
    ...over,
  };
}
