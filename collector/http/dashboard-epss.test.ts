/**
 * The dashboard's host page with EPSS loaded: an EPSS column beside severity, numbers
 * formatted and escaped as text, rows in fix-first order (the API's sort=fix-first).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Finding } from '../../shared/protocol.ts';
import { importFeedPath } from '../services/feeds/store-import.ts';
import { EPSS_EXCERPT } from '../../shared/testing/feed-fixtures.ts';
import { almaInventory, type Fixture, makeFixture, NOW } from '../../shared/testing/http-fixture.ts';
import { asyncAdvisories } from '../../shared/testing/store-fixtures.ts';

function rows(htmlText: string, tableId: string): string[] {
  const table = new RegExp(`<table id="${tableId}">([\\s\\S]*?)</table>`).exec(htmlText)?.[1] ?? '';
  const body = /<tbody>([\s\S]*)<\/tbody>/.exec(table)?.[1] ?? '';
  return [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((m) => m[1] ?? '');
}

const cells = (row: string): string[] => [...row.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((m) => m[1] ?? '');

describe('dashboard host page with EPSS', () => {
  let fx: Fixture;
  let id = '';
  let cookie = '';
  before(async () => {
    fx = await makeFixture();
    await importFeedPath(asyncAdvisories(fx.db), EPSS_EXCERPT, { name: 'first-epss', now: new Date(NOW.getTime() - 3600_000) });
    id = await fx.addHost(almaInventory('db-1'));
    const res = await fx.app.request('/login', { method: 'POST', body: new URLSearchParams({ token: fx.bearer.viewer }), headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'http://localhost' } });
    cookie = (res.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  });
  after(() => {
    fx.close();
  });

  it('an EPSS column, its numbers as escaped text, rows in the API’s fix-first order', async () => {
    const api = (await (await fx.app.request(`/api/v1/hosts/${id}?sort=fix-first`, { headers: { authorization: `Bearer ${fx.bearer.viewer}` } })).json()) as { findings: { findings: Finding[] } };
    const res = await fx.app.request(`/hosts/${id}`, { headers: { cookie } });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /<th title="FIRST EPSS: probability of exploitation in the next 30 days, and its percentile">EPSS<\/th>/);
    const list = rows(text, 'findings');
    assert.equal(list.length, api.findings.findings.length);
    // Advisory, severity, EPSS: the page's rows are the API's fix-first list, one for one.
    list.forEach((row, i) => {
      const f = api.findings.findings[i] as Finding;
      const [advisory = '', severity = '', epss = ''] = cells(row);
      assert.ok(advisory.startsWith(f.advisory), `row ${i}: ${advisory} / ${f.advisory}`);
      assert.equal(severity, f.severity);
      if (f.epss === null || f.epss === undefined) assert.equal(epss, '—');
      else assert.match(epss, new RegExp(`^<span title="${f.epss.cve}: EPSS ${f.epss.score}, percentile ${f.epss.percentile}">${(f.epss.score * 100).toFixed(2).replace('.', '\\.')}%</span> <span class="muted">\\(p\\d+\\)</span>$`));
    });
    const glibc = list.filter((r) => r.includes('ALSA-2026:2786'));
    assert.equal(glibc.length, 5);
    for (const r of glibc) assert.match(cells(r)[2] ?? '', />0\.63%<\/span> <span class="muted">\(p47\)<\/span>/);
  });
});
