/**
 * Coverage truth end to end through the API (issue 11, section 1): a host is `assessed`
 * only when a fresh loaded feed has advisories for its ecosystem, decided from the feeds'
 * own data. Real feeds from ../shared/data: the DSA list ends with Debian 11, so it covers
 * a Debian 11 host and not a Debian 12 one; the Debian tracker JSON names bookworm.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { Inventory } from '../../shared/protocol.ts';
import { dataPath } from '../../shared/testing/data.ts';
import { importFeedPath } from '../services/feeds/store-import.ts';
import type { FeedJson, HostJson, Summary } from './views.ts';
import { auth, debianInventory, makeFixture, NOW, type Fixture } from '../../shared/testing/http-fixture.ts';
import { parseWithPrometheusClient, sample } from '../../shared/testing/prometheus-text.ts';
import { asyncAdvisories } from '../../shared/testing/store-fixtures.ts';

const HOUR = 3600_000;
const DSA = dataPath('debian', 'DSA-list.gz');
const TRACKER = dataPath('debian', 'tracker-json-subset.vunnel-fixture.json');

function debian11(hostname: string): Inventory {
  const inv = debianInventory(hostname);
  inv.host.ecosystem = 'Debian:11';
  inv.host.os = { id: 'debian', idLike: [], versionId: '11', codename: 'bullseye', prettyName: 'Debian GNU/Linux 11 (bullseye)' };
  return inv;
}

function unknownDistro(hostname: string): Inventory {
  const inv = debianInventory(hostname);
  inv.host.ecosystem = null;
  inv.host.os = { id: 'plan9', idLike: [], versionId: '4', codename: null, prettyName: 'Plan 9' };
  return inv;
}

async function fixture(t: TestContext, feeds: { path: string; at: Date }[]): Promise<Fixture & { ids: Record<string, string> }> {
  const f = await makeFixture({ feeds: false });
  t.after(() => {
    f.close();
  });
  const store = asyncAdvisories(f.db);
  for (const feed of feeds) await importFeedPath(store, feed.path, { correlator: f.correlator, now: feed.at });
  const ids = {
    deb12: await f.addHost(debianInventory('deb12')),
    deb11: await f.addHost(debian11('deb11')),
    unknown: await f.addHost(unknownDistro('plan9')),
  };
  return { ...f, ids };
}

async function get<T>(f: Fixture, path: string): Promise<T> {
  const res = await f.app.request(path, auth(f.bearer.viewer));
  assert.equal(res.status, 200, `${path}: ${await res.clone().text()}`);
  return (await res.json()) as T;
}

async function states(f: Fixture): Promise<Record<string, string>> {
  const list = await get<{ items: HostJson[] }>(f, '/api/v1/hosts');
  return Object.fromEntries(list.items.map((h) => [h.hostname, h.assessment.state]));
}

const fresh = new Date(NOW.getTime() - HOUR);
const old = new Date(NOW.getTime() - 49 * HOUR); // staleFeedHours defaults to 48

describe('host assessment from the loaded feeds', () => {
  const cases: { name: string; feeds: { path: string; at: Date }[]; want: Record<string, string> }[] = [
    { name: 'no feeds at all', feeds: [], want: { deb12: 'not-assessed', deb11: 'not-assessed', plan9: 'not-assessed' } },
    { name: 'the DSA list only (ends before Debian 12)', feeds: [{ path: DSA, at: fresh }], want: { deb12: 'not-assessed', deb11: 'assessed', plan9: 'not-assessed' } },
    { name: 'a Debian tracker feed naming bookworm', feeds: [{ path: TRACKER, at: fresh }], want: { deb12: 'assessed', deb11: 'assessed', plan9: 'not-assessed' } },
    { name: 'the DSA list past staleFeedHours', feeds: [{ path: DSA, at: old }], want: { deb12: 'not-assessed', deb11: 'stale', plan9: 'not-assessed' } },
    { name: 'a stale DSA list and a fresh tracker', feeds: [{ path: DSA, at: old }, { path: TRACKER, at: fresh }], want: { deb12: 'assessed', deb11: 'assessed', plan9: 'not-assessed' } },
  ];
  for (const c of cases) {
    it(c.name, async (t) => {
      const f = await fixture(t, c.feeds);
      assert.deepEqual(await states(f), c.want);
      // The filter gives the same partition, page by page in SQL.
      for (const state of ['assessed', 'stale', 'not-assessed']) {
        const list = await get<{ items: HostJson[] }>(f, `/api/v1/hosts?assessment=${state}`);
        const want = Object.entries(c.want).filter(([, s]) => s === state).map(([h]) => h).sort();
        assert.deepEqual(list.items.map((h) => h.hostname).sort(), want, `assessment=${state}`);
      }
      // Host detail: the state, and the findings document says it too.
      const doc = await get<{ host: HostJson; findings: { assessment: { state: string; reason: string }; warnings: string[] } }>(f, `/api/v1/hosts/${f.ids.deb12}`);
      assert.equal(doc.host.assessment.state, c.want.deb12);
      assert.equal(doc.findings.assessment.state, c.want.deb12);
      if (c.want.deb12 !== 'assessed') assert.ok(doc.findings.warnings[0]?.startsWith(`${c.want.deb12}: `), doc.findings.warnings[0]);
      // Summary: counts per state; nobody looked at a not-assessed host, so it is never compliant.
      const sum = await get<Summary>(f, '/api/v1/summary');
      const by = { assessed: 0, stale: 0, 'not-assessed': 0 };
      for (const s of Object.values(c.want)) by[s as keyof typeof by]++;
      assert.deepEqual(sum.hosts.byAssessment, by);
      assert.ok(sum.hosts.compliant <= by.assessed, `compliant ${sum.hosts.compliant} > assessed ${by.assessed}`);
      // /metrics: hosts per state.
      const res = await f.app.request('/metrics');
      const families = parseWithPrometheusClient(await res.text());
      for (const [state, n] of Object.entries(by)) assert.equal(sample(families, 'patchwarden_hosts', { assessment: state }), n, `patchwarden_hosts{assessment="${state}"}`);
    });
  }

  it('a host with no findings and no covering feed is not compliant', async (t) => {
    const f = await fixture(t, []);
    const sum = await get<Summary>(f, '/api/v1/summary');
    assert.equal(sum.findings.overdue, 0);
    assert.equal(sum.hosts.compliant, 0);
  });

  it('an unknown assessment is refused', async (t) => {
    const f = await fixture(t, []);
    const res = await f.app.request('/api/v1/hosts?assessment=clean', auth(f.bearer.viewer));
    assert.equal(res.status, 400);
  });

  it('coverage follows the advisories a feed holds, and a re-import', async (t) => {
    const f = await fixture(t, [{ path: DSA, at: fresh }]);
    const store = asyncAdvisories(f.db);
    const dsa = (await store.coverage())[0];
    assert.ok(dsa !== undefined);
    assert.ok(dsa.ecosystems.includes('Debian:11'), dsa.ecosystems.join(','));
    assert.ok(!dsa.ecosystems.includes('Debian:12'), dsa.ecosystems.join(','));
    // The same feed again: coverage unchanged, hosts judged the same.
    await importFeedPath(store, DSA, { correlator: f.correlator, now: fresh });
    assert.deepEqual((await store.coverage()).find((c) => c.source === dsa.source)?.ecosystems, dsa.ecosystems);
    assert.equal((await states(f)).deb12, 'not-assessed');
    await importFeedPath(store, TRACKER, { correlator: f.correlator, now: fresh });
    assert.equal((await states(f)).deb12, 'assessed');
  });

  it('feed remove takes its coverage with it: the hosts it covered are not-assessed at once', async (t) => {
    const f = await fixture(t, [{ path: TRACKER, at: fresh }]);
    assert.equal((await states(f)).deb12, 'assessed');
    const advisories = asyncAdvisories(f.db);
    const [tracker] = await advisories.coverage();
    assert.ok(tracker !== undefined);
    await advisories.removeFeed(tracker.source, 'cli:test', NOW);
    assert.deepEqual(await advisories.coverage(), []);
    assert.deepEqual(await states(f), { deb12: 'not-assessed', deb11: 'not-assessed', plan9: 'not-assessed' });
  });

  it('GET /api/v1/feeds lists each feed with its coverage, freshness, size and last error; unknown parameters and no token are refused', async (t) => {
    const f = await fixture(t, [{ path: DSA, at: old }, { path: TRACKER, at: fresh }]);
    const store = asyncAdvisories(f.db);
    await store.recordFeedError({ source: 'DSA-list.gz', kind: 'debian-dsa-list', location: DSA }, '<script>alert(1)</script> upstream answered 503', NOW);
    const { items } = await get<{ items: FeedJson[] }>(f, '/api/v1/feeds');
    const byName = new Map(items.map((x) => [x.source, x]));
    const dsa = byName.get('DSA-list.gz');
    const tracker = byName.get('tracker-json-subset.vunnel-fixture.json');
    assert.ok(dsa !== undefined && tracker !== undefined, items.map((x) => x.source).join(','));
    assert.equal(dsa.stale, true);
    assert.equal(tracker.stale, false);
    assert.ok(dsa.ecosystems.includes('Debian:11') && !dsa.ecosystems.includes('Debian:12'));
    assert.ok(tracker.ecosystems.includes('Debian:12'));
    assert.ok(dsa.records > 1000 && tracker.records > 0);
    assert.equal(dsa.lastError, `${NOW.toISOString()} <script>alert(1)</script> upstream answered 503`, 'JSON carries the text as it is, after its time; the page escapes it');
    assert.equal(tracker.lastError, null);
    assert.equal((await f.app.request('/api/v1/feeds?x=1', auth(f.bearer.viewer))).status, 400);
    assert.equal((await f.app.request('/api/v1/feeds')).status, 401);
  });
});
