import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseWithPrometheusClient } from '../../shared/testing/prometheus-text.ts';
import { createMetrics, escapeHelp, escapeLabelValue, formatValue, MAX_SERIES_PER_METRIC, Registry } from './metrics.ts';
import { needs, TOOLS } from '../../shared/testing/system-tools.ts';

describe('escapeLabelValue', () => {
  const cases: [string, string][] = [
    ['plain', 'plain'],
    ['back\\slash', 'back\\\\slash'],
    ['say "hi"', 'say \\"hi\\"'],
    ['two\nlines', 'two\\nlines'],
    ['<script>alert(1)</script>', '<script>alert(1)</script>'],
    ["'; DROP TABLE hosts; --", "'; DROP TABLE hosts; --"],
    ['\\"\n', '\\\\\\"\\n'],
  ];
  for (const [input, want] of cases) {
    it(`escapes ${JSON.stringify(input)}`, () => {
      assert.equal(escapeLabelValue(input), want);
    });
  }
});

describe('escapeHelp', () => {
  for (const [input, want] of [
    ['a\\b', 'a\\\\b'],
    ['a\nb', 'a\\nb'],
    ['quotes "stay"', 'quotes "stay"'],
  ] as const) {
    it(`escapes ${JSON.stringify(input)}`, () => {
      assert.equal(escapeHelp(input), want);
    });
  }
});

describe('formatValue', () => {
  for (const [v, want] of [
    [0, '0'],
    [1.5, '1.5'],
    [NaN, 'NaN'],
    [Infinity, '+Inf'],
    [-Infinity, '-Inf'],
    [1e21, '1e+21'],
  ] as const) {
    it(`formats ${String(v)}`, () => {
      assert.equal(formatValue(v), want);
    });
  }
});

describe('Registry', () => {
  it('refuses invalid metric and label names', () => {
    const r = new Registry();
    assert.throws(() => r.counter('1bad', 'x'), TypeError);
    assert.throws(() => r.counter('bad-name', 'x'), TypeError);
    assert.throws(() => r.counter('ok', 'x', ['__reserved']), TypeError);
    assert.throws(() => r.histogram('h', 'x', ['le']), TypeError);
    assert.throws(() => r.histogram('h2', 'x', [], [1, 1]), TypeError);
  });

  it('refuses the same name twice', () => {
    const r = new Registry();
    r.gauge('g', 'x');
    assert.throws(() => r.counter('g', 'x'), /registered twice/);
  });

  it('refuses a counter going down and missing or extra labels', () => {
    const r = new Registry();
    const c = r.counter('c_total', 'x', ['status']);
    assert.throws(() => { c.inc({ status: 'a' }, -1); }, RangeError);
    assert.throws(() => { c.inc({} as { status: string }); }, /needs label status/);
    assert.throws(() => { c.inc({ status: 'a', extra: 'b' } as { status: string }); }, /takes labels/);
  });

  it('counts and renders hostile label values that the Prometheus parser reads back unchanged', { skip: needs(TOOLS.prometheusClient) }, async () => {
    const r = new Registry();
    const c = r.counter('t_requests_total', 'Requests "by" route\nsecond line \\ backslash.', ['route', 'status']);
    const hostile = ['/api/v1/hosts', 'quote"d', 'back\\slash', 'new\nline', '<script>alert(1)</script>', "'; DROP TABLE hosts; --", 'ünïcødé'];
    hostile.forEach((route, i) => {
      c.inc({ route, status: '200' }, i + 1);
    });
    c.inc({ route: '/api/v1/hosts', status: '200' });
    const text = await r.render();
    const families = parseWithPrometheusClient(text);
    const fam = families.find((f) => f.name === 't_requests');
    assert.ok(fam !== undefined, text);
    assert.equal(fam.type, 'counter');
    assert.equal(fam.help, 'Requests "by" route\nsecond line \\ backslash.');
    const got = new Map(fam.samples.map((s) => [s.labels.route, s.value]));
    assert.equal(got.size, hostile.length);
    hostile.forEach((route, i) => {
      assert.equal(got.get(route), i === 0 ? 2 : i + 1, route);
    });
  });

  it('renders a histogram with cumulative buckets, sum and count', { skip: needs(TOOLS.prometheusClient) }, async () => {
    const r = new Registry();
    const h = r.histogram('t_seconds', 'x', [], [0.1, 1, 10]);
    for (const v of [0.05, 0.1, 0.5, 2, 20]) h.observe(v);
    const fam = parseWithPrometheusClient(await r.render()).find((f) => f.name === 't_seconds');
    assert.ok(fam !== undefined, 'the histogram is in the output');
    assert.equal(fam.type, 'histogram');
    const byName = (n: string, le?: string) => fam.samples.find((s) => s.name === n && (le === undefined || s.labels.le === le))?.value;
    assert.equal(byName('t_seconds_bucket', '0.1'), 2);
    assert.equal(byName('t_seconds_bucket', '1.0') ?? byName('t_seconds_bucket', '1'), 3);
    assert.equal(byName('t_seconds_bucket', '10.0') ?? byName('t_seconds_bucket', '10'), 4);
    assert.equal(byName('t_seconds_bucket', '+Inf'), 5);
    assert.equal(byName('t_seconds_count'), 5);
    assert.ok(Math.abs((byName('t_seconds_sum') ?? 0) - 22.65) < 1e-9, `sum ${byName('t_seconds_sum') ?? 'missing'}`);
  });

  it('times sync and async work and records a throwing run too', { skip: needs(TOOLS.prometheusClient) }, async () => {
    const r = new Registry();
    const h = r.histogram('t_time_seconds', 'x', ['kind']);
    assert.equal(h.time({ kind: 'sync' }, () => 7), 7);
    assert.equal(await h.time({ kind: 'async' }, () => new Promise<number>((res) => setTimeout(() => { res(8); }, 20))), 8);
    assert.throws(() => h.time({ kind: 'sync' }, () => { throw new Error('boom'); }), /boom/);
    assert.equal(h.count({ kind: 'sync' }), 2);
    assert.equal(h.count({ kind: 'async' }), 1);
    const fam = parseWithPrometheusClient(await r.render()).find((f) => f.name === 't_time_seconds');
    const asyncSum = fam?.samples.find((s) => s.name === 't_time_seconds_sum' && s.labels.kind === 'async')?.value ?? 0;
    assert.ok(asyncSum >= 0.015, `async sum ${asyncSum}`);
  });

  it('stops adding series past the limit instead of growing without end', () => {
    const r = new Registry();
    const c = r.counter('t_many_total', 'x', ['k']);
    for (let i = 0; i < MAX_SERIES_PER_METRIC + 5; i++) c.inc({ k: String(i) });
    assert.equal(c.dropped, 5);
    assert.equal(c.get({ k: '0' }), 1);
    assert.equal(c.get({ k: String(MAX_SERIES_PER_METRIC + 1) }), 0);
  });

  it('runs collect hooks (asynchronous ones awaited) at render and counts the ones that fail', { skip: needs(TOOLS.prometheusClient) }, async () => {
    const r = new Registry();
    const g = r.gauge('t_gauge', 'x', ['feed']);
    let n = 0;
    r.onCollect(() => {
      g.reset();
      g.set({ feed: `f${++n}` }, n);
    });
    r.onCollect(() => {
      throw new Error('database is locked');
    });
    // A hook that reads the store asynchronously is awaited before the text is made; a rejection counts as a failure.
    const later = r.gauge('t_later', 'x');
    r.onCollect(async () => {
      await new Promise((resolve) => setImmediate(resolve));
      later.set(n * 10);
    });
    r.onCollect(() => Promise.reject(new Error('connection reset')));
    await r.render();
    const fams = parseWithPrometheusClient(await r.render());
    assert.deepEqual(fams.find((f) => f.name === 't_gauge')?.samples.map((s) => [s.labels.feed, s.value]), [['f2', 2]]);
    assert.equal(fams.find((f) => f.name === 't_later')?.samples[0]?.value, 20);
    assert.equal(fams.find((f) => f.name === 'patchwarden_metrics_collect_errors')?.samples[0]?.value, 2);
  });
});

describe('createMetrics', { skip: needs(TOOLS.prometheusClient) }, () => {
  it('exposes the documented names, parseable by the Prometheus client', async () => {
    const m = createMetrics();
    m.reportsTotal.inc({ status: 'stored' });
    m.reportIngestSeconds.observe(0.004);
    m.feedAgeSeconds.set({ feed: 'almalinux9' }, 3600);
    m.httpRequestsTotal.inc({ route: '/api/v1/hosts', status: '200' });
    m.agentsConnected.set(3);
    const fams = parseWithPrometheusClient(await m.registry.render());
    const names = fams.map((f) => f.name).sort();
    assert.deepEqual(names, [
      'patchwarden_agent_connections',
      'patchwarden_agents_connected',
      'patchwarden_auth_refused',
      'patchwarden_feed_age_seconds',
      'patchwarden_findings_open',
      'patchwarden_findings_queue',
      'patchwarden_hosts',
      'patchwarden_hosts_total',
      'patchwarden_http_requests',
      'patchwarden_instruction_results',
      'patchwarden_metrics_collect_errors',
      'patchwarden_report_ingest_seconds',
      'patchwarden_reports',
      'patchwarden_rollouts',
      'patchwarden_store_checkpoint_failures',
      'patchwarden_store_wal_frames',
      'process_resident_memory_bytes',
    ]);
    const rss = fams.find((f) => f.name === 'process_resident_memory_bytes')?.samples[0]?.value ?? 0;
    assert.ok(rss > 10 * 1024 * 1024, `rss ${rss}`);
  });
});
