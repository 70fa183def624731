import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { readData, dataPath } from '../../shared/testing/data.ts';
import { importFeedPath } from '../services/feeds/store-import.ts';
import { SESSION_TTL_MS } from './auth.ts';
import { DASHBOARD_CSP } from './dashboard.ts';
import { almaInventory, debianInventory, type Fixture, HOSTILE_HOSTNAME, makeFixture, NOW } from '../../shared/testing/http-fixture.ts';
import { asyncAdvisories } from '../../shared/testing/store-fixtures.ts';

const ORIGIN = 'http://localhost';

function login(fx: Fixture, token: string, opts: { next?: string; origin?: string | null; url?: string } = {}): Promise<Response> {
  const body = new URLSearchParams({ token, ...(opts.next === undefined ? {} : { next: opts.next }) });
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (opts.origin !== null) headers.origin = opts.origin ?? ORIGIN;
  return Promise.resolve(fx.app.request(opts.url ?? '/login', { method: 'POST', body, headers }));
}

async function session(fx: Fixture, token: string): Promise<string> {
  const res = await login(fx, token);
  assert.equal(res.status, 303);
  const cookie = (res.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  assert.match(cookie, /^pw_session=[A-Za-z0-9_-]{43}$/);
  return cookie;
}

function page(fx: Fixture, path: string, cookie?: string): Promise<Response> {
  return Promise.resolve(fx.app.request(path, cookie === undefined ? {} : { headers: { cookie } }));
}

function rows(htmlText: string, tableId: string): string[] {
  const table = new RegExp(`<table id="${tableId}">([\\s\\S]*?)</table>`).exec(htmlText)?.[1] ?? '';
  const body = /<tbody>([\s\S]*)<\/tbody>/.exec(table)?.[1] ?? '';
  return [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((m) => m[1] ?? '');
}

describe('dashboard', () => {
  let fx: Fixture;
  const ids: Record<string, string> = {};
  before(async () => {
    fx = await makeFixture();
    ids.web1 = await fx.addHost(debianInventory('web-1'), { connected: true });
    ids.db1 = await fx.addHost(almaInventory('db-1', { rebootRequired: true }));
    ids.db2 = await fx.addHost(almaInventory('db-2'));
    ids.hostile = await fx.addHost(debianInventory(HOSTILE_HOSTNAME), { tags: ['"><img src=x onerror=alert(2)>'] });
  });
  after(() => {
    fx.close();
  });

  describe('without a session', () => {
    const cases: [string, string][] = [
      ['/', '/login?next=%2F'],
      ['/?q=db', '/login?next=%2F%3Fq%3Ddb'],
      ['/feeds', '/login?next=%2Ffeeds'],
      ['/hosts/00000000-0000-4000-8000-000000000000', '/login?next=%2Fhosts%2F00000000-0000-4000-8000-000000000000'],
    ];
    for (const [path, location] of cases) {
      it(`sends GET ${path} to the login form and back`, async () => {
        const res = await page(fx, path);
        assert.equal(res.status, 303);
        assert.equal(res.headers.get('location'), location);
      });
    }

    it('shows the login form with a policy that allows no script', async () => {
      const res = await page(fx, '/login');
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-security-policy'), DASHBOARD_CSP);
      assert.match(DASHBOARD_CSP, /default-src 'none'/);
      assert.equal(res.headers.get('x-frame-options'), 'DENY');
      const text = await res.text();
      assert.match(text, /<form method="post" action="\/login">/);
      assert.match(text, /<input type="password" name="token"/);
    });

    it('does not carry an outside address through the login form', async () => {
      const text = await (await page(fx, `/login?next=${encodeURIComponent('https://evil.example/')}`)).text();
      assert.match(text, /name="next" value="\/"/);
    });
  });

  describe('login', () => {
    const refused: [string, () => Promise<Response>, number, RegExp][] = [
      ['an unknown token', () => login(fx, `pwa_${'B'.repeat(43)}`), 401, /unknown or revoked/],
      ['a revoked token', () => login(fx, fx.bearer.revoked), 401, /unknown or revoked/],
      ['an empty token', () => login(fx, ''), 401, /unknown or revoked/],
      ['a token of HTML', () => login(fx, '<script>alert(1)</script>'), 401, /unknown or revoked/],
      ['a post from another site', () => login(fx, fx.bearer.admin, { origin: 'https://evil.example' }), 403, /cross-site/],
      ['a post with no Origin header', () => login(fx, fx.bearer.admin, { origin: null }), 403, /cross-site/],
      ['a form over 8 KiB', () => login(fx, 'x'.repeat(9000)), 400, /too large/],
    ];
    for (const [name, attempt, status, text] of refused) {
      it(`refuses ${name} and sets no cookie`, async () => {
        const res = await attempt();
        assert.equal(res.status, status);
        assert.equal(res.headers.get('set-cookie'), null);
        assert.match(await res.text(), text);
      });
    }

    it('sets an HttpOnly, SameSite=Strict session cookie that holds no token', async () => {
      const res = await login(fx, fx.bearer.viewer);
      assert.equal(res.status, 303);
      assert.equal(res.headers.get('location'), '/');
      const setCookie = res.headers.get('set-cookie') ?? '';
      assert.match(setCookie, /HttpOnly/);
      assert.match(setCookie, /SameSite=Strict/);
      assert.match(setCookie, /Path=\//);
      assert.match(setCookie, new RegExp(`Max-Age=${SESSION_TTL_MS / 1000}`));
      assert.doesNotMatch(setCookie, /Secure/, 'plain http: a Secure cookie would never come back');
      assert.ok(!setCookie.includes(fx.bearer.viewer), 'the cookie is a session id, not the token');
    });

    it('marks the cookie Secure over https', async () => {
      const res = await login(fx, fx.bearer.viewer, { url: 'https://collector.example/login', origin: 'https://collector.example' });
      assert.equal(res.status, 303);
      assert.match(res.headers.get('set-cookie') ?? '', /Secure/);
    });

    const nexts: [string, string][] = [
      ['/hosts/abc', '/hosts/abc'],
      ['/?q=db', '/?q=db'],
      ['//evil.example/', '/'],
      ['/\\evil.example', '/'],
      ['https://evil.example/', '/'],
      ['javascript:alert(1)', '/'],
    ];
    for (const [next, location] of nexts) {
      it(`goes on to ${location} when asked for ${next}`, async () => {
        const res = await login(fx, fx.bearer.viewer, { next });
        assert.equal(res.headers.get('location'), location);
      });
    }
  });

  describe('with a session', () => {
    let cookie: string;
    before(async () => {
      cookie = await session(fx, fx.bearer.viewer);
    });

    it('lists the hosts with their facts, and a hostile name and tag as text', async () => {
      const res = await page(fx, '/', cookie);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-security-policy'), DASHBOARD_CSP);
      const text = await res.text();
      const hostRows = rows(text, 'hosts');
      assert.equal(hostRows.length, 4);
      assert.ok(text.includes('&lt;script&gt;alert(1)&lt;/script&gt;'), 'the hostile host name is escaped');
      assert.ok(!text.includes('<script'), 'no script element anywhere');
      assert.ok(!text.includes('<img'), 'no img element from the tag');
      const db1 = hostRows.find((r) => r.includes('>db-1<')) ?? '';
      assert.match(db1, /AlmaLinux:9/);
      assert.match(db1, /<td class="num">243<\/td>/);
      assert.match(db1, /6\.18\.44-custom/);
      assert.match(db1, /<span class="warn">yes<\/span>/);
      assert.match(db1, /overdue/);
      assert.match(text, /viewer <span class="muted">\(viewer\)<\/span>/);
    });

    const filters: [string, string[]][] = [
      ['/?q=db&rebootRequired=true', ['db-1']],
      ['/?q=&ecosystem=&tag=&rebootRequired=', ['&lt;script&gt;alert(1)&lt;/script&gt;', 'db-1', 'db-2', 'web-1']],
      ['/?ecosystem=Debian%3A12', ['&lt;script&gt;alert(1)&lt;/script&gt;', 'web-1']],
      // The fixture loads AlmaLinux 9 advisories only: no feed covers the Debian hosts.
      ['/?assessment=not-assessed', ['&lt;script&gt;alert(1)&lt;/script&gt;', 'web-1']],
      ['/?assessment=assessed', ['db-1', 'db-2']],
      ['/?assessment=stale', []],
    ];
    for (const [path, names] of filters) {
      it(`filters ${path}`, async () => {
        const text = await (await page(fx, path, cookie)).text();
        const shown = rows(text, 'hosts').flatMap((r) => /<a href="\/hosts\/[^"]+">([^<]*)<\/a>/.exec(r)?.[1] ?? []);
        assert.deepEqual(shown, names);
      });
    }

    it('says which hosts nobody looked at: a card, a column, a banner on the host page', async () => {
      const text = await (await page(fx, '/', cookie)).text();
      assert.match(text, /<div class="card" id="not-assessed"><b class="bad">2<\/b><a href="\/\?assessment=not-assessed">not assessed<\/a>/);
      assert.match(text, /<b>0<\/b>compliant \(assessed, nothing overdue\)/);
      const hostRows = rows(text, 'hosts');
      const cell = (name: string) => /<td><span class="(\w+)" title="[^"]*">([^<]+)<\/span><\/td>/.exec(hostRows.find((r) => r.includes(`>${name}<`)) ?? '')?.slice(1);
      assert.deepEqual(cell('web-1'), ['bad', 'not assessed']);
      assert.deepEqual(cell('db-1'), ['ok', 'assessed']);
      const web1 = await (await page(fx, `/hosts/${ids.web1 ?? ''}`, cookie)).text();
      assert.match(web1, /<p id="assessment" role="alert" class="banner "><b class="bad">Not assessed:<\/b> no loaded feed has advisories for Debian:12: import a feed that covers it\. No findings here does not mean this host is clean: nobody looked\.<\/p>/);
      assert.match(web1, /No findings, because no loaded feed covers this host\./);
      const db1 = await (await page(fx, `/hosts/${ids.db1 ?? ''}`, cookie)).text();
      assert.doesNotMatch(db1, /id="assessment"/);
    });

    it('answers a hostile filter with a 400 page that shows it as text', async () => {
      const res = await page(fx, `/?q=${encodeURIComponent('<script>alert(1)</script>')}`, cookie);
      assert.equal(res.status, 400);
      const text = await res.text();
      assert.ok(!text.includes('<script'), 'no script element');
      assert.match(text, /start of a host name/);
    });

    it('pages with a next link', async () => {
      const first = await (await page(fx, '/?limit=3', cookie)).text();
      assert.equal(rows(first, 'hosts').length, 3);
      const next = /<a rel="next" href="([^"]+)">/.exec(first)?.[1]?.replace(/&amp;/g, '&');
      assert.ok(next !== undefined, 'a next link');
      const second = await (await page(fx, next, cookie)).text();
      assert.equal(rows(second, 'hosts').length, 1);
      assert.doesNotMatch(second, /rel="next"/);
    });

    it('shows a host with its findings, sorted overdue first', async () => {
      const api = (await (await fx.app.request(`/api/v1/hosts/${ids.db1 ?? ''}`, { headers: { authorization: `Bearer ${fx.bearer.viewer}` } })).json()) as {
        findings: { findings: { advisory: string; overdue: boolean }[] };
      };
      const res = await page(fx, `/hosts/${ids.db1 ?? ''}`, cookie);
      assert.equal(res.status, 200);
      const text = await res.text();
      const findingRows = rows(text, 'findings');
      assert.equal(findingRows.length, api.findings.findings.length);
      assert.ok(findingRows.length > 10, `${findingRows.length} findings`);
      const overdue = findingRows.map((r) => r.includes('<span class="bad">overdue</span>'));
      assert.deepEqual(overdue, [...overdue].sort((a, b) => Number(b) - Number(a)), 'overdue rows come first');
      assert.match(text, /kernel-update \(running 5\.14\.0-503\.11\.1\.el9_5, newest installed 5\.14\.0-503\.15\.1\.el9_5\)/);
      assert.match(text, /<h1>db-1<\/h1>/);
    });

    it('shows the hostile host’s page with its name as text', async () => {
      const text = await (await page(fx, `/hosts/${ids.hostile ?? ''}`, cookie)).text();
      assert.match(text, /<h1>&lt;script&gt;alert\(1\)&lt;\/script&gt;<\/h1>/);
      assert.match(text, /<title>&lt;script&gt;/);
      assert.ok(!text.includes('<script') && !text.includes('<img'), 'no element from the data');
    });

    const missing = ['/hosts/00000000-0000-4000-8000-000000000000', '/hosts/not-a-uuid', `/hosts/${encodeURIComponent('<script>')}`];
    for (const path of missing) {
      it(`answers 404 for ${path}`, async () => {
        const res = await page(fx, path, cookie);
        assert.equal(res.status, 404);
        assert.ok(!(await res.text()).includes('<script'), 'nothing echoed as markup');
      });
    }
  });

  describe('sessions end', () => {
    it('at logout, on the server too', async () => {
      const cookie = await session(fx, fx.bearer.viewer);
      const out = await fx.app.request('/logout', { method: 'POST', headers: { cookie, origin: ORIGIN } });
      assert.equal(out.status, 303);
      assert.match(out.headers.get('set-cookie') ?? '', /pw_session=;.*Max-Age=0/);
      assert.equal((await page(fx, '/', cookie)).status, 303, 'the old cookie no longer works');
    });

    it('when their token is revoked', async () => {
      const { token } = await fx.tokens.create({ name: 'short-lived', role: 'viewer', createdBy: 'cli:test' }, NOW);
      const cookie = await session(fx, token);
      assert.equal((await page(fx, '/', cookie)).status, 200);
      await fx.tokens.revoke('short-lived', 'cli:test', NOW);
      assert.equal((await page(fx, '/', cookie)).status, 303);
    });

    it('after twelve hours', async () => {
      const cookie = await session(fx, fx.bearer.viewer);
      fx.clock.now = new Date(NOW.getTime() + SESSION_TTL_MS - 1000);
      assert.equal((await page(fx, '/', cookie)).status, 200);
      fx.clock.now = new Date(NOW.getTime() + SESSION_TTL_MS + 1000);
      try {
        assert.equal((await page(fx, '/', cookie)).status, 303);
      } finally {
        fx.clock.now = NOW;
      }
    });

    it('never from a forged cookie', async () => {
      for (const cookie of ['pw_session=', `pw_session=${'A'.repeat(43)}`, 'pw_session=<script>', `pw_session=${fx.bearer.admin}`]) {
        assert.equal((await page(fx, '/', cookie)).status, 303, cookie);
      }
    });
  });

  it('never answered with a 500', () => {
    assert.deepEqual(fx.errors, []);
  });
});

function cells(row: string): string[] {
  return [...row.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((m) => (m[1] ?? '').replace(/<[^>]*>/g, '').trim());
}

/** Real feeds from ../shared/data: the DSA list checked an hour ago, KEV 49 hours ago (staleFeedHours is 48). */
async function feedsFixture(t: TestContext, feeds: boolean): Promise<{ fx: Fixture; cookie: string }> {
  const fx = await makeFixture({ feeds: false });
  t.after(() => {
    fx.close();
  });
  if (feeds) {
    const store = asyncAdvisories(fx.db);
    await importFeedPath(store, dataPath('debian', 'DSA-list.gz'), { correlator: fx.correlator, now: new Date(NOW.getTime() - 3600_000) });
    await importFeedPath(store, dataPath('kev', 'known_exploited_vulnerabilities.json.gz'), { correlator: fx.correlator, now: new Date(NOW.getTime() - 49 * 3600_000) });
    // A mistyped path: the feed exists only as its error, never checked successfully.
    await assert.rejects(importFeedPath(store, dataPath('debian', 'DSA-lst.gz'), { now: new Date(NOW.getTime() - 600_000) }));
    // A failed sync keeps the DSA list's last good data and records what the upstream said.
    await store.recordFeedError({ source: 'DSA-list.gz', kind: 'debian-dsa-list', location: null }, `HTTP 502: <script>alert(3)</script>${'x'.repeat(5000)}`, NOW);
  }
  return { fx, cookie: await session(fx, fx.bearer.viewer) };
}

describe('dashboard feeds page', () => {
  it('lists each feed with its coverage, size, freshness and last error, escaped', async (t) => {
    const { fx, cookie } = await feedsFixture(t, true);
    const res = await page(fx, '/feeds', cookie);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-security-policy'), DASHBOARD_CSP);
    const text = await res.text();
    const byName: Record<string, string[]> = {};
    for (const r of rows(text, 'feeds')) {
      const [name = '', ...rest] = cells(r);
      byName[name] = rest;
    }
    assert.deepEqual(Object.keys(byName), ['DSA-list.gz', 'DSA-lst.gz', 'known_exploited_vulnerabilities.json.gz']);
    const kevCount = (JSON.parse(readData('kev', 'known_exploited_vulnerabilities.json.gz')) as { count: number }).count;
    // Columns after the name: kind, covers, records, newest, last successful check, freshness, last error.
    const dsa = byName['DSA-list.gz'] ?? [];
    assert.equal(dsa[0], 'debian-dsa-list');
    // The DSA list ends in 2023: it names every release up to Debian 11 and not Debian 12.
    assert.equal(dsa[1], 'Debian:3.0, Debian:3.1, Debian:4.0, Debian:5.0, Debian:6.0, Debian:7, Debian:8, Debian:9, Debian:10, Debian:11');
    assert.equal(dsa[2], '5383');
    assert.equal(dsa[3], '2023-03-29');
    assert.equal(dsa[4], '2026-11-26 17:00:00Z (1 h ago)');
    assert.equal(dsa[5], 'fresh');
    assert.ok((dsa[6] ?? '').startsWith('2026-11-26T18:00:00.000Z HTTP 502: &lt;script&gt;alert(3)&lt;/script&gt;xxx'), dsa[6]);
    assert.ok((dsa[6] ?? '').endsWith('x…'), 'a long error is cut short');
    assert.ok(!text.includes('<script>'), 'the hostile error is text, not markup');
    const kev = byName['known_exploited_vulnerabilities.json.gz'] ?? [];
    assert.deepEqual(kev.slice(0, 3), ['kev-json', 'none (covers no host by itself)', String(kevCount)]);
    assert.deepEqual([kev[4], kev[5], kev[6]], ['2026-11-24 17:00:00Z (2 d ago)', 'stale', '—']);
    const mistyped = byName['DSA-lst.gz'] ?? [];
    assert.deepEqual(mistyped.slice(0, 6), ['unknown', 'none (covers no host by itself)', '0', '—', 'never', 'stale']);
    assert.match(mistyped[6] ?? '', /DSA-lst\.gz/);
    assert.match(text, /3 feeds, <span class="bad">2 stale<\/span>/);
    assert.doesNotMatch(text, /id="no-feeds"/);
  });

  it('says how to get feeds when none is loaded', async (t) => {
    const { fx, cookie } = await feedsFixture(t, false);
    const res = await page(fx, '/feeds', cookie);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /<div id="no-feeds" role="alert" class="banner"><p><b class="bad">No feed is loaded<\/b>, so no host is assessed/);
    assert.match(text, /syncs the feeds its hosts need by itself/);
    assert.match(text, /feed import \[--trust=KEY\] PATH/);
    assert.deepEqual(rows(text, 'feeds').map(cells), [['No feeds.']]);
  });

  it('is linked from every page’s header', async (t) => {
    const { fx, cookie } = await feedsFixture(t, false);
    for (const path of ['/', '/feeds', '/rollouts']) {
      assert.match(await (await page(fx, path, cookie)).text(), /<header><a href="\/">patchwarden<\/a><a href="\/feeds">Feeds<\/a>/, path);
    }
  });
});
