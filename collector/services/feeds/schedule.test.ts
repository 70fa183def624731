/**
 * The serving collector's own feed sync: the pure decisions (next run, what is due at
 * start) table-driven with any clock, then a real collector on 127.0.0.1 syncing on a
 * one-second schedule from a local server standing in for the upstreams, and a failed
 * scheduled sync that keeps the last good data.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { generateKeyPair } from '../../../shared/signing.ts';
import { parseConfig } from '../../config.ts';
import { inventoryOf, rhel95Packages } from '../../../shared/testing/correlate-fixtures.ts';
import { createLogger } from '../../logger.ts';
import { captureLogger } from '../../../shared/testing/capture-logger.ts';
import { createCollector } from '../../server.ts';
import type { FeedRow } from '../../store/advisories.ts';
import { storeOn } from '../../store/store.ts';
import { asyncAdvisories, tempDatabase, dumpStore } from '../../../shared/testing/store-fixtures.ts';
import { DEFAULT_FEED_SCHEDULE, dueAtStart, nextRunAt, OFFLINE_HINT } from './schedule.ts';
import type { SyncOutcome } from './sync.ts';
import { catalogueServer, withCatalogueBase } from '../../../shared/testing/feed-fixtures.ts';

describe('nextRunAt', () => {
  const cases: [string, string, string, number, number, string][] = [
    ['every 6 h, from 00:00:00: 06:00', DEFAULT_FEED_SCHEDULE.cron, '2026-12-02T00:00:00.000Z', 0, 0, '2026-12-02T06:00:00.000Z'],
    ['every 6 h, from 05:59:59', DEFAULT_FEED_SCHEDULE.cron, '2026-12-02T05:59:59.000Z', 0, 0, '2026-12-02T06:00:00.000Z'],
    ['every 6 h, from 18:00:01: next day 00:00', DEFAULT_FEED_SCHEDULE.cron, '2026-12-02T18:00:01.000Z', 0, 0, '2026-12-03T00:00:00.000Z'],
    ['every 6 h, jitter 30 min, random 0.5: +15 min', DEFAULT_FEED_SCHEDULE.cron, '2026-12-02T07:00:00.000Z', 30 * 60_000, 0.5, '2026-12-02T12:15:00.000Z'],
    ['every 6 h, jitter 30 min, random just under 1: within the jitter', DEFAULT_FEED_SCHEDULE.cron, '2026-12-02T07:00:00.000Z', 30 * 60_000, 0.999999, '2026-12-02T12:29:59.998Z'],
    ['KEV daily at 03:30, from 03:30:00: the next day', DEFAULT_FEED_SCHEDULE.kevCron, '2026-12-02T03:30:00.000Z', 0, 0, '2026-12-03T03:30:00.000Z'],
    ['KEV daily, from 01:00', DEFAULT_FEED_SCHEDULE.kevCron, '2026-12-02T01:00:00.000Z', 0, 0, '2026-12-02T03:30:00.000Z'],
    ['every second', '* * * * * *', '2026-12-02T01:00:00.400Z', 0, 0, '2026-12-02T01:00:01.000Z'],
  ];
  for (const [name, pattern, from, jitter, random, expected] of cases) {
    it(name, () => {
      assert.equal(nextRunAt(pattern, new Date(from), jitter, () => random).toISOString(), expected);
    });
  }
});

describe('dueAtStart', () => {
  const row = (source: string, checkedAt: string | null, lastError: string | null = null): FeedRow => ({
    source,
    kind: 'osv',
    location: null,
    records: 1,
    newest: null,
    importedAt: checkedAt,
    checkedAt,
    lastError,
    etag: null,
    lastModified: null,
  });
  const now = new Date('2026-12-02T12:00:00.000Z');
  const cases: [string, FeedRow[], string[]][] = [
    ['no feeds at all: everything', [], ['a', 'b']],
    ['both fresh: nothing', [row('a', '2026-12-02T11:00:00.000Z'), row('b', '2026-12-01T13:00:00.000Z')], []],
    ['one 48 h and one second old: that one', [row('a', '2026-11-30T11:59:59.000Z'), row('b', '2026-12-02T11:00:00.000Z')], ['a']],
    ['exactly 48 h: not yet', [row('a', '2026-11-30T12:00:00.000Z'), row('b', '2026-12-02T11:00:00.000Z')], []],
    ['only ever failed (no checkedAt): due', [row('a', null, 'HTTP 503'), row('b', '2026-12-02T11:00:00.000Z')], ['a']],
    ['a feed the sources do not name is ignored', [row('z', null), row('a', '2026-12-02T11:00:00.000Z')], ['b']],
  ];
  for (const [name, feeds, expected] of cases) {
    it(name, () => {
      assert.deepEqual(
        dueAtStart([{ name: 'a' }, { name: 'b' }], feeds, now, 48).map((s) => s.name),
        expected,
      );
    });
  }
});


const KEV_PATH = '/kev/sites/default/files/feeds/known_exploited_vulnerabilities.json';
const ALMA_PATH = '/osv/AlmaLinux/all.zip';

async function fleetWithAlma(t: TestContext): Promise<string> {
  const { db, path } = await tempDatabase(t, 'schedule');
  const fleet = storeOn(db).async;
  const id = await fleet.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: 'alma-1', machineId: null, tokenId: null }, new Date());
  await fleet.reports.ingest(id, 'r-1', 'hash-1', inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages().slice(0, 3)), new Date());
  db.close();
  return path;
}


describe('serve syncs its own feeds', () => {
  it('missing feeds sync at start, then every second on a one-second schedule (304s), audited as system', async (t) => {
    const srv = await catalogueServer(t);
    withCatalogueBase(t, srv.base);
    const dbPath = await fleetWithAlma(t);
    const runs: { why: string; outcomes: SyncOutcome[] }[] = [];
    let wake: () => void = () => undefined;
    const { logger } = captureLogger();
    const c = await createCollector({
      dbPath,
      listen: '127.0.0.1:0',
      logger,
      feedSync: {
        schedule: { cron: '* * * * * *', kevCron: '0 0 1 1 *', jitterMs: 0 },
        sync: { backoffMs: 1 },
        onRun: (why, outcomes) => {
          runs.push({ why, outcomes });
          wake();
        },
      },
    });
    t.after(() => c.close());
    const started = Date.now();
    while (runs.length < 2 && Date.now() - started < 20_000) await new Promise<void>((r) => (wake = r));
    assert.ok(runs.length >= 2, `runs: ${JSON.stringify(runs.map((r) => r.why))}`);
    assert.equal(runs[0]?.why, 'start: missing or stale');
    assert.deepEqual(
      runs[0].outcomes.map((o) => [o.source, o.status]),
      [
        ['osv-almalinux', 'imported'],
        ['cisa-kev', 'imported'],
        ['first-epss', 'imported'],
      ],
    );
    assert.equal(runs[1]?.why, 'schedule: feeds');
    assert.deepEqual(
      runs[1].outcomes.map((o) => [o.source, o.status]),
      [['osv-almalinux', 'not-modified']],
    );
    const audit = c.sqlite!.db.prepare("SELECT actor, action, target FROM audit WHERE action LIKE 'feed.%' ORDER BY id").all();
    assert.deepEqual(audit, [
      { actor: 'system', action: 'feed.sync', target: 'feed:osv-almalinux' },
      { actor: 'system', action: 'feed.sync', target: 'feed:cisa-kev' },
      { actor: 'system', action: 'feed.sync', target: 'feed:first-epss' },
    ]);
    const kevAsks = srv.seen.filter((s) => s.url === KEV_PATH).length;
    assert.equal(kevAsks, 1, 'KEV keeps its own (daily) schedule');
    assert.equal(srv.seen.filter((s) => s.url === '/epss/epss_scores-current.csv.gz').length, 1, 'EPSS too (daily, with KEV)');
  });

  it('fresh feeds: nothing at start; feedSync false: never', async (t) => {
    const srv = await catalogueServer(t);
    withCatalogueBase(t, srv.base);
    const dbPath = await fleetWithAlma(t);
    const off = await createCollector({ dbPath, listen: '127.0.0.1:0', logger: createLogger({ level: 'silent' }), config: parseConfig({ feedSync: false }), feedSync: { schedule: { cron: '* * * * * *', kevCron: '* * * * * *', jitterMs: 0 } } });
    await new Promise((r) => setTimeout(r, 1500));
    await off.close();
    assert.deepEqual(srv.seen, [], 'feedSync: false never fetches');
  });

  it('a scheduled sync that fails (503, then a wrong-content 200) keeps the last good data and records the error; the log says how to import feeds', async (t) => {
    let broken: 'no' | '503' | 'html' = 'no';
    const srv = await catalogueServer(t, {
      [ALMA_PATH]: (_req, res) => {
        if (broken === '503') res.writeHead(503).end();
        else if (broken === 'html') res.writeHead(200, { 'content-type': 'text/html' }).end('<html>maintenance</html>');
        else return false;
        return true;
      },
    });
    withCatalogueBase(t, srv.base);
    const dbPath = await fleetWithAlma(t);
    const runs: SyncOutcome[][] = [];
    const dumps: ReturnType<typeof dumpStore>[] = [];
    let wake: () => void = () => undefined;
    const cap = captureLogger();
    const c = await createCollector({
      dbPath,
      listen: '127.0.0.1:0',
      logger: cap.logger,
      feedSync: {
        schedule: { cron: '* * * * * *', kevCron: '0 0 1 1 *', jitterMs: 0 },
        sync: { backoffMs: 1, retries: 1 },
        onRun: (_why, outcomes) => {
          runs.push(outcomes);
          dumps.push(dumpStore(c.sqlite!.db));
          broken = runs.length === 1 ? '503' : 'html';
          wake();
        },
      },
    });
    t.after(() => c.close());
    const started = Date.now();
    while (runs.length < 3 && Date.now() - started < 20_000) await new Promise<void>((r) => (wake = r));
    assert.ok(runs.length >= 3, `${runs.length} runs`);
    assert.deepEqual(
      runs.slice(0, 3).map((r) => r.map((o) => [o.source, o.status, o.status === 'failed' ? o.code : null])),
      [
        [
          ['osv-almalinux', 'imported', null],
          ['cisa-kev', 'imported', null],
          ['first-epss', 'imported', null],
        ],
        [['osv-almalinux', 'failed', 'PW_ERR_FEED_FETCH']],
        [['osv-almalinux', 'failed', 'PW_ERR_FEED_FORMAT']],
      ],
    );
    assert.ok((dumps[0]?.advisories ?? 0) > 1000, JSON.stringify(dumps[0]));
    assert.deepEqual(dumps[1], dumps[0], 'the 503 changed no advisory');
    assert.deepEqual(dumps[2], dumps[0], 'the wrong content changed no advisory');
    const row = (await asyncAdvisories(c.sqlite!.db).feeds()).find((f) => f.source === 'osv-almalinux');
    assert.match(row?.lastError ?? '', /all\.zip: no end of central directory record \(truncated or not a zip\)/);
    assert.ok((row?.records ?? 0) > 1000);
    const actions = c.sqlite!.db.prepare("SELECT actor, action FROM audit WHERE action LIKE 'feed.%' ORDER BY id").all();
    assert.deepEqual(actions.slice(0, 5), [
      { actor: 'system', action: 'feed.sync' },
      { actor: 'system', action: 'feed.sync' },
      { actor: 'system', action: 'feed.sync' },
      { actor: 'system', action: 'feed.sync-failed' },
      { actor: 'system', action: 'feed.sync-failed' },
    ]);
    const warned = cap.lines.map((l) => JSON.parse(l) as { msg: string }).filter((l) => l.msg.includes('osv-almalinux failed'));
    assert.ok(warned.length >= 2);
    assert.ok(warned[0]?.msg.includes(OFFLINE_HINT), warned[0]?.msg);
  });
});
