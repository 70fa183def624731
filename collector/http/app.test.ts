import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { packagesHash } from '../../shared/inventory-hash.ts';
import { DEFAULT_POLICY } from '../domain/correlate/policy.ts';
import { HostFindings } from '../services/findings/host-findings.ts';
import { createLogger } from '../logger.ts';
import { almaInventory, auth, debianInventory, type Fixture, makeFixture, NOW } from '../../shared/testing/http-fixture.ts';
import { parseWithPrometheusClient, sample } from '../../shared/testing/prometheus-text.ts';
import { needs, TOOLS } from '../../shared/testing/system-tools.ts';

describe('GET /healthz', () => {
  // collector/http/health.test.ts has the rest of the body (room, quick_check) on real files.
  const pick = (b: unknown) => {
    const { status, db, store } = b as { status: string; db: boolean; store: { writable: boolean } };
    return { status, db, writable: store.writable };
  };
  it('answers ok without a token while the database answers, 503 once it is gone', async (t) => {
    const fx = await makeFixture({ feeds: false });
    t.after(() => {
      fx.close();
    });
    const ok = await fx.app.request('/healthz');
    assert.equal(ok.status, 200);
    assert.deepEqual(pick(await ok.json()), { status: 'ok', db: true, writable: true });
    fx.db.close();
    const down = await fx.app.request('/healthz');
    assert.equal(down.status, 503);
    assert.deepEqual(pick(await down.json()), { status: 'error', db: false, writable: false });
  });
});

describe('unexpected errors', () => {
  it('answer 500 PW_ERR_INTERNAL with no detail, and the cause goes to onError', async (t) => {
    const fx = await makeFixture({ feeds: false });
    t.after(() => {
      fx.close();
    });
    await fx.addHost(debianInventory('web-1'));
    // The tokens are checked first, so break the store after: the host query fails inside.
    fx.db.pragma('foreign_keys = OFF');
    fx.db.exec('DROP TABLE reports');
    const res = await fx.app.request('/api/v1/hosts', auth(fx.bearer.viewer));
    assert.equal(res.status, 500);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'PW_ERR_INTERNAL');
    assert.doesNotMatch(body.error.message, /reports|SQL|sqlite/i);
    assert.equal(fx.errors.length, 1);
    assert.match(String(fx.errors[0]), /reports/);
  });
});

describe('GET /metrics', { skip: needs(TOOLS.prometheusClient) }, () => {
  let fx: Fixture;
  before(async () => {
    fx = await makeFixture();
    await fx.addHost(debianInventory('web-1'), { connected: true });
    await fx.addHost(almaInventory('db-1'));
    await fx.addHost(almaInventory('db-2'), { connected: true });
  });
  after(() => {
    fx.close();
  });

  it('serves the exposition format that the Prometheus client parses, with the store’s state and request counts by route pattern', async () => {
    const hosts = (await (await fx.app.request('/api/v1/hosts', auth(fx.bearer.viewer))).json()) as { items: { id: string }[] };
    for (const h of hosts.items) await fx.app.request(`/api/v1/hosts/${h.id}`, auth(fx.bearer.viewer));
    await fx.app.request('/api/v1/hosts');
    await fx.app.request('/no/such/page');
    await fx.app.request('/api/v1/hosts?limit=0', auth(fx.bearer.viewer));
    // The gateway's HostFindings keeps each host's open count as it correlates its report; the gauge sums them.
    const hf = new HostFindings({ store: fx.store.async, policy: DEFAULT_POLICY, logger: createLogger({ level: 'silent' }), now: () => NOW });
    await hf.load();
    for (const h of hosts.items) {
      const inv = await fx.store.async.reports.latestInventory(h.id);
      if (inv !== undefined) await hf.refresh(h.id, inv, packagesHash(inv));
    }
    fx.metrics.reportsTotal.inc({ status: 'stored' }, 3);
    fx.metrics.reportIngestSeconds.observe(0.004);
    const summary = (await (await fx.app.request('/api/v1/summary', auth(fx.bearer.viewer))).json()) as { findings: { open: number } };

    const res = await fx.app.request('/metrics');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    const fams = parseWithPrometheusClient(await res.text());
    const requests = (route: string, status: string) => sample(fams, 'patchwarden_http_requests_total', { route, status });
    assert.equal(requests('/api/v1/hosts/:id', '200'), 3, 'one series for the three hosts: the pattern, not the path');
    assert.equal(requests('/api/v1/hosts', '200'), 1);
    assert.equal(requests('/api/v1/hosts', '401'), 1);
    assert.equal(requests('/api/v1/hosts', '400'), 1);
    assert.equal(requests('unmatched', '404'), 1);
    assert.equal(sample(fams, 'patchwarden_hosts_total'), 3);
    assert.equal(sample(fams, 'patchwarden_agents_connected'), 2);
    // No history or exception yet: the ingest-time counts and the read-time summary agree.
    assert.equal(sample(fams, 'patchwarden_findings_open'), summary.findings.open);
    assert.ok(summary.findings.open > 0, 'the AlmaLinux hosts have open findings');
    assert.equal(sample(fams, 'patchwarden_feed_age_seconds', { feed: 'almalinux9.osv.jsonl.gz' }), 3600);
    assert.equal(sample(fams, 'patchwarden_feed_age_seconds', { feed: 'known_exploited_vulnerabilities.json.gz' }), 3600);
    assert.equal(sample(fams, 'patchwarden_reports_total', { status: 'stored' }), 3);
    assert.equal(sample(fams, 'patchwarden_report_ingest_seconds_count'), 1);
    assert.ok((sample(fams, 'process_resident_memory_bytes') ?? 0) > 10 * 1024 * 1024, 'RSS is reported');
    assert.equal(sample(fams, 'patchwarden_metrics_collect_errors'), 0);
    const names = new Set(fams.map((f) => f.name));
    for (const n of ['patchwarden_http_requests', 'patchwarden_reports', 'patchwarden_report_ingest_seconds', 'process_resident_memory_bytes']) assert.ok(names.has(n), n);
  });

  it('shows a feed never checked successfully as +Inf seconds old', async () => {
    fx.db.prepare("INSERT INTO feeds (source, kind, location, last_error) VALUES ('debian-tracker', 'unknown', 'https://security-tracker.debian.org/tracker/data/json', '2026-11-26T17:00:00Z HTTP 503')").run();
    fx.clock.now = new Date(NOW.getTime() + 1000);
    const fams = parseWithPrometheusClient(await (await fx.app.request('/metrics')).text());
    assert.equal(String(sample(fams, 'patchwarden_feed_age_seconds', { feed: 'debian-tracker' })), 'inf');
    assert.equal(sample(fams, 'patchwarden_feed_age_seconds', { feed: 'almalinux9.osv.jsonl.gz' }), 3601);
  });
});

describe('every answer', () => {
  it('carries nosniff; API answers are never cached', async (t) => {
    const fx = await makeFixture({ feeds: false });
    t.after(() => {
      fx.close();
    });
    for (const path of ['/healthz', '/metrics', '/api/v1/hosts', '/login', '/nope']) {
      const res = await fx.app.request(path);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path);
    }
    const api = await fx.app.request('/api/v1/summary', auth(fx.bearer.viewer));
    assert.equal(api.headers.get('cache-control'), 'no-store');
  });
});
