import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { FindingsSchema, type FindingStatus, InventorySchema, type Findings } from '../../shared/protocol.ts';
import { readData } from '../../shared/testing/data.ts';
import { HostFindings } from '../services/findings/host-findings.ts';
import { DEFAULT_POLICY } from '../domain/correlate/policy.ts';
import { createLogger } from '../logger.ts';
import { almaInventory, auth, debianInventory, type Fixture, HOSTILE_HOSTNAME, makeFixture, NOW } from '../../shared/testing/http-fixture.ts';

interface HostItem {
  id: string;
  hostname: string;
  ecosystem: string | null;
  packageCount: number;
  rebootRequired: boolean;
  connected: boolean;
  lastSeen: string | null;
  tags: string[];
  revokedAt: string | null;
  findings: { open: number; overdue: number };
}
interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
interface ErrorJson {
  error: { code: string; message: string };
}

async function json<T>(res: Response): Promise<T> {
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  return (await res.json()) as T;
}

const DAY = 24 * 3600_000;

/** Rows of `dpkg-query -W` on the same real host whose status is installed (`ii`): the agent must report exactly these. */
function dpkgQueryInstalled(): number {
  return readData('host-inventory', 'debian12-host.dpkg-query.tsv')
    .split('\n')
    .filter((l) => l.split('\t')[5]?.startsWith('ii') === true).length;
}

describe('JSON API', () => {
  let fx: Fixture;
  const ids: Record<string, string> = {};

  before(async () => {
    fx = await makeFixture();
    // Seven hosts, two ecosystems, with tags, reboot flags and last-seen times that the filters tell apart.
    ids.web1 = await fx.addHost(debianInventory('web-1'), { tags: ['prod', 'web'], seenAt: NOW, connected: true });
    ids.web2 = await fx.addHost(debianInventory('web-2'), { tags: ['prod', 'web'], seenAt: new Date(NOW.getTime() - 3 * DAY) });
    ids.web10 = await fx.addHost(debianInventory('web-10'), { tags: ['staging'], seenAt: new Date(NOW.getTime() - 10 * DAY) });
    ids.db1 = await fx.addHost(almaInventory('db-1', { rebootRequired: true }), { tags: ['prod', 'db'], seenAt: NOW, connected: true });
    ids.db2 = await fx.addHost(almaInventory('db-2'), { tags: ['prod', 'db'], seenAt: new Date(NOW.getTime() - DAY) });
    ids.batch = await fx.addHost(almaInventory('batch-1', { rebootRequired: true }), { seenAt: new Date(NOW.getTime() - 40 * DAY) });
    ids.hostile = await fx.addHost(debianInventory(HOSTILE_HOSTNAME), { tags: ["'; DROP TABLE hosts; --"] });
  });
  after(() => {
    fx.close();
  });

  const get = (path: string, token?: string) => fx.app.request(path, token === undefined ? {} : auth(token));

  describe('authentication and roles', () => {
    const routes: { method: 'GET' | 'POST'; label: string; path: () => string; role: 'viewer' | 'admin'; ok: number }[] = [
      { method: 'GET', label: '/api/v1/hosts', path: () => '/api/v1/hosts', role: 'viewer', ok: 200 },
      { method: 'GET', label: '/api/v1/hosts/:id', path: () => `/api/v1/hosts/${ids.db1 ?? ''}`, role: 'viewer', ok: 200 },
      { method: 'GET', label: '/api/v1/summary', path: () => '/api/v1/summary', role: 'viewer', ok: 200 },
      { method: 'GET', label: '/api/v1/whoami', path: () => '/api/v1/whoami', role: 'viewer', ok: 200 },
      { method: 'GET', label: '/api/v1/audit (admin)', path: () => '/api/v1/audit', role: 'admin', ok: 200 },
      // An agent that does not exist: the admin gets past auth to a 404, and nothing changes.
      { method: 'POST', label: '/api/v1/agents/:unknown/revoke (admin)', path: () => `/api/v1/agents/${randomUUID()}/revoke`, role: 'admin', ok: 404 },
      { method: 'GET', label: '/api/v1/no-such-route', path: () => '/api/v1/no-such-route', role: 'viewer', ok: 404 },
    ];
    const callers: { name: string; header: () => string | undefined; want: (r: (typeof routes)[number]) => [number, string | null] }[] = [
      { name: 'no Authorization header', header: () => undefined, want: () => [401, 'PW_ERR_UNAUTHENTICATED'] },
      { name: 'a Basic header', header: () => `Basic ${Buffer.from('admin:admin').toString('base64')}`, want: () => [401, 'PW_ERR_UNAUTHENTICATED'] },
      { name: 'Bearer with nothing after it', header: () => 'Bearer ', want: () => [401, 'PW_ERR_UNAUTHENTICATED'] },
      { name: 'a well-formed token nobody made', header: () => `Bearer pwa_${'A'.repeat(43)}`, want: () => [401, 'PW_ERR_UNAUTHENTICATED'] },
      { name: "a token with SQL in it", header: () => "Bearer ' OR '1'='1", want: () => [401, 'PW_ERR_UNAUTHENTICATED'] },
      { name: 'a 10 kB token', header: () => `Bearer ${'x'.repeat(10_000)}`, want: () => [401, 'PW_ERR_UNAUTHENTICATED'] },
      { name: 'a revoked admin token', header: () => `Bearer ${fx.bearer.revoked}`, want: () => [401, 'PW_ERR_UNAUTHENTICATED'] },
      { name: 'the viewer token', header: () => `Bearer ${fx.bearer.viewer}`, want: (r) => (r.role === 'viewer' ? [r.ok, r.ok === 404 ? 'PW_ERR_NOT_FOUND' : null] : [403, 'PW_ERR_FORBIDDEN']) },
      { name: 'the operator token', header: () => `Bearer ${fx.bearer.operator}`, want: (r) => (r.role === 'viewer' ? [r.ok, r.ok === 404 ? 'PW_ERR_NOT_FOUND' : null] : [403, 'PW_ERR_FORBIDDEN']) },
      { name: 'the admin token', header: () => `Bearer ${fx.bearer.admin}`, want: (r) => [r.ok, r.ok === 404 ? 'PW_ERR_NOT_FOUND' : null] },
      { name: 'the admin token, scheme in lower case', header: () => `bearer ${fx.bearer.admin}`, want: (r) => [r.ok, r.ok === 404 ? 'PW_ERR_NOT_FOUND' : null] },
    ];
    for (const r of routes) {
      for (const caller of callers) {
        it(`${r.method} ${r.label} with ${caller.name}`, async () => {
          const h = caller.header();
          const res = await fx.app.request(r.path(), { method: r.method, headers: h === undefined ? {} : { authorization: h } });
          const [status, code] = caller.want(r);
          assert.equal(res.status, status);
          const body = await json<ErrorJson & Record<string, unknown>>(res);
          if (code !== null) {
            assert.equal(body.error.code, code);
            assert.equal(typeof body.error.message, 'string');
          } else assert.equal(body.error, undefined);
          if (status === 401) assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="patchwarden"');
          assert.equal(res.headers.get('cache-control'), 'no-store');
        });
      }
    }

    it('does not take the dashboard session cookie as API credentials', async () => {
      const login = await fx.app.request('/login', { method: 'POST', body: new URLSearchParams({ token: fx.bearer.admin }), headers: { origin: 'http://localhost' } });
      const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
      assert.match(cookie, /^pw_session=/);
      const res = await fx.app.request('/api/v1/hosts', { headers: { cookie } });
      assert.equal(res.status, 401);
    });

    it('names the token and its role at whoami', async () => {
      assert.deepEqual(await json(await get('/api/v1/whoami', fx.bearer.operator)), { name: 'operator', role: 'operator' });
    });
  });

  describe('GET /api/v1/hosts', () => {
    it('lists every host in (hostname, id) order with real package counts', async () => {
      const page = await json<Page<HostItem>>(await get('/api/v1/hosts', fx.bearer.viewer));
      assert.equal(page.nextCursor, null);
      assert.deepEqual(
        page.items.map((h) => h.hostname),
        [HOSTILE_HOSTNAME, 'batch-1', 'db-1', 'db-2', 'web-1', 'web-10', 'web-2'],
      );
      const web1 = page.items.find((h) => h.hostname === 'web-1');
      assert.equal(web1?.packageCount, dpkgQueryInstalled(), 'the same package count as dpkg-query -W on that host');
      assert.equal(page.items.find((h) => h.hostname === 'db-1')?.packageCount, 243);
      assert.equal(web1.connected, true);
      assert.deepEqual(web1.tags, ['prod', 'web']);
    });

    it('counts the AlmaLinux hosts’ real findings and none for the Debian ones (no bookworm feed loaded)', async () => {
      const page = await json<Page<HostItem>>(await get('/api/v1/hosts', fx.bearer.viewer));
      const db1 = page.items.find((h) => h.hostname === 'db-1');
      assert.ok(db1 !== undefined && db1.findings.open > 10, JSON.stringify(db1?.findings));
      // The AlmaLinux 9 fixes are from 2024-2026 and the policy gives 30 days: most are overdue on 2026-11-26.
      assert.ok(db1.findings.overdue > 0, 'some of db-1’s findings are overdue');
      assert.deepEqual(page.items.find((h) => h.hostname === 'web-1')?.findings, { open: 0, overdue: 0 });
    });

    const filters: [string, string[]][] = [
      ['ecosystem=Debian:12', [HOSTILE_HOSTNAME, 'web-1', 'web-10', 'web-2']],
      ['ecosystem=AlmaLinux:9', ['batch-1', 'db-1', 'db-2']],
      ['ecosystem=Ubuntu:24.04:LTS', []],
      ['rebootRequired=true', ['batch-1', 'db-1']],
      ['rebootRequired=false', [HOSTILE_HOSTNAME, 'db-2', 'web-1', 'web-10', 'web-2']],
      [`seenSince=${encodeURIComponent(new Date(NOW.getTime() - 2 * DAY).toISOString())}`, [HOSTILE_HOSTNAME, 'db-1', 'db-2', 'web-1']],
      ['seenSince=2026-11-20T00:00:00%2B02:00', [HOSTILE_HOSTNAME, 'db-1', 'db-2', 'web-1', 'web-2']],
      ['tag=prod', ['db-1', 'db-2', 'web-1', 'web-2']],
      ['tag=db', ['db-1', 'db-2']],
      ['tag=prod&ecosystem=Debian:12', ['web-1', 'web-2']],
      ['q=web', ['web-1', 'web-10', 'web-2']],
      ['q=web-1', ['web-1', 'web-10']],
      ['q=WEB', []],
      ['q=db&rebootRequired=true', ['db-1']],
      ['q=zzz', []],
    ];
    for (const [query, want] of filters) {
      it(`filters ${decodeURIComponent(query)}`, async () => {
        const page = await json<Page<HostItem>>(await get(`/api/v1/hosts?${query}`, fx.bearer.viewer));
        assert.deepEqual(
          page.items.map((h) => h.hostname),
          want,
        );
      });
    }

    it('pages through 3 pages of 3, 3 and 1 in a stable order that a host joining mid-way does not disturb', async () => {
      const all = (await json<Page<HostItem>>(await get('/api/v1/hosts', fx.bearer.viewer))).items.map((h) => h.id);
      const p1 = await json<Page<HostItem>>(await get('/api/v1/hosts?limit=3', fx.bearer.viewer));
      assert.equal(p1.items.length, 3);
      assert.ok(p1.nextCursor !== null, 'page 1 has a next cursor');
      // A host whose name sorts before the cursor joins between pages: keyset paging neither repeats nor skips.
      const late = await fx.addHost(debianInventory('aaa-late'));
      try {
        const p2 = await json<Page<HostItem>>(await get(`/api/v1/hosts?limit=3&cursor=${p1.nextCursor}`, fx.bearer.viewer));
        assert.equal(p2.items.length, 3);
        assert.ok(p2.nextCursor !== null, 'page 2 has a next cursor');
        const p3 = await json<Page<HostItem>>(await get(`/api/v1/hosts?cursor=${encodeURIComponent(p2.nextCursor)}&limit=3`, fx.bearer.viewer));
        assert.equal(p3.items.length, 1);
        assert.equal(p3.nextCursor, null);
        assert.deepEqual([...p1.items, ...p2.items, ...p3.items].map((h) => h.id), all);
      } finally {
        fx.db.prepare('DELETE FROM hosts WHERE agent_id = ?').run(late);
      }
    });

    it('pages with filters, and the page size may change between pages', async () => {
      const p1 = await json<Page<HostItem>>(await get('/api/v1/hosts?tag=prod&limit=1', fx.bearer.viewer));
      assert.deepEqual(p1.items.map((h) => h.hostname), ['db-1']);
      const p2 = await json<Page<HostItem>>(await get(`/api/v1/hosts?limit=500&tag=prod&cursor=${p1.nextCursor ?? ''}`, fx.bearer.viewer));
      assert.deepEqual(p2.items.map((h) => h.hostname), ['db-2', 'web-1', 'web-2']);
      assert.equal(p2.nextCursor, null);
    });

    it('refuses tampered, foreign and misapplied cursors with PW_ERR_BAD_CURSOR', async () => {
      const p1 = await json<Page<HostItem>>(await get('/api/v1/hosts?limit=2', fx.bearer.viewer));
      const cursor = p1.nextCursor ?? '';
      const [payload = '', mac = ''] = cursor.split('.');
      const position = JSON.parse(Buffer.from(payload, 'base64url').toString()) as [string, string];
      const forged = Buffer.from(JSON.stringify(['a', position[1]])).toString('base64url');
      const other = await makeFixture({ feeds: false });
      await other.addHost(debianInventory('x-1'));
      await other.addHost(debianInventory('x-2'));
      const foreign = (await json<Page<HostItem>>(await other.app.request('/api/v1/hosts?limit=1', auth(other.bearer.viewer)))).nextCursor ?? '';
      other.close();
      const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
      const cases: [string, string][] = [
        ['a payload with one character changed', `${flip(payload, 3)}.${mac}`],
        ['a re-encoded position with the old signature', `${forged}.${mac}`],
        ['the signature cut short', `${payload}.${mac.slice(0, 10)}`],
        ['no signature', payload],
        ['a cursor from another collector', foreign],
        ['base64 of SQL', `${Buffer.from("' OR 1=1 --").toString('base64url')}.${mac}`],
        ['an empty signature part', `${payload}.`],
      ];
      for (const [name, bad] of cases) {
        const res = await get(`/api/v1/hosts?limit=2&cursor=${encodeURIComponent(bad)}`, fx.bearer.viewer);
        assert.equal(res.status, 400, name);
        assert.equal((await json<ErrorJson>(res)).error.code, 'PW_ERR_BAD_CURSOR', name);
      }
      const underOtherFilters = await get(`/api/v1/hosts?limit=2&ecosystem=Debian:12&cursor=${cursor}`, fx.bearer.viewer);
      assert.equal(underOtherFilters.status, 400);
      assert.equal((await json<ErrorJson>(underOtherFilters)).error.code, 'PW_ERR_BAD_CURSOR');
      const good = await get(`/api/v1/hosts?limit=2&cursor=${cursor}`, fx.bearer.viewer);
      assert.equal(good.status, 200);
    });

    const bad: [string, string][] = [
      ['an unknown parameter', 'page=2'],
      ['an unknown parameter with HTML for a name', '%3Cscript%3E=1'],
      ['a repeated parameter', 'limit=1&limit=2'],
      ['limit=0', 'limit=0'],
      ['limit=501', 'limit=501'],
      ['limit=-1', 'limit=-1'],
      ['limit=1e2', 'limit=1e2'],
      ['limit=abc', 'limit=abc'],
      ['limit empty', 'limit='],
      ['rebootRequired=yes', 'rebootRequired=yes'],
      ['seenSince=yesterday', 'seenSince=yesterday'],
      ['seenSince as a date without time', 'seenSince=2026-11-26'],
      ['ecosystem with SQL', `ecosystem=${encodeURIComponent("Debian:12' OR '1'='1")}`],
      ['ecosystem with a UNION', `ecosystem=${encodeURIComponent('x UNION SELECT hash FROM api_tokens --')}`],
      ['q with a script tag', `q=${encodeURIComponent('<script>alert(1)</script>')}`],
      ['q with shell', `q=${encodeURIComponent('$(rm -rf /)')}`],
      ['q with backticks', `q=${encodeURIComponent('`id`')}`],
      ['q with a percent wildcard', `q=${encodeURIComponent('%')}`],
      ['q with an underscore wildcard and SQL', `q=${encodeURIComponent("_' --")}`],
      ['q with a NUL', 'q=web%00'],
      ['tag with spaces', `tag=${encodeURIComponent('a b')}`],
      ['tag with a quote', `tag=${encodeURIComponent("prod'")}`],
      ['a 300-character q', `q=${'a'.repeat(300)}`],
      ['a 5000-character cursor', `cursor=${'a'.repeat(5000)}`],
      ['invalid percent-encoding', 'q=%E0%A4%A'],
    ];
    for (const [name, query] of bad) {
      it(`answers 400 for ${name}`, async () => {
        const res = await get(`/api/v1/hosts?${query}`, fx.bearer.viewer);
        assert.equal(res.status, 400);
        const body = await json<ErrorJson>(res);
        assert.match(body.error.code, /^PW_ERR_BAD_(REQUEST|CURSOR)$/);
        assert.ok(body.error.message.length > 0 && body.error.message.length < 600, body.error.message);
      });
    }

    it('returns a hostile host name as JSON data, byte for byte', async () => {
      const res = await get('/api/v1/hosts?tag=' + encodeURIComponent("'; DROP TABLE hosts; --").replace(/'/g, '%27'), fx.bearer.viewer);
      // The tag grammar refuses the quote: the filter never reaches SQL.
      assert.equal(res.status, 400);
      const all = await json<Page<HostItem>>(await get('/api/v1/hosts', fx.bearer.viewer));
      const hostile = all.items.find((h) => h.id === ids.hostile);
      assert.equal(hostile?.hostname, HOSTILE_HOSTNAME);
      assert.deepEqual(hostile.tags, ["'; DROP TABLE hosts; --"]);
      assert.equal((fx.db.prepare('SELECT count(*) AS n FROM hosts').get() as { n: number }).n, 7);
    });
  });

  describe('GET /api/v1/hosts/:id', () => {
    it('returns the host, its latest inventory and the findings document the gateway computes', async () => {
      const res = await get(`/api/v1/hosts/${ids.db1 ?? ''}`, fx.bearer.viewer);
      assert.equal(res.status, 200);
      const doc = await json<{ host: HostItem; inventory: unknown; findings: Findings }>(res);
      assert.equal(doc.host.hostname, 'db-1');
      const inv = InventorySchema.parse(doc.inventory);
      assert.equal(inv.packages.length, 243);
      assert.equal(inv.reboot.required, true);
      const findings = FindingsSchema.parse(doc.findings);
      assert.equal(findings.schema, 'patchwarden.findings/1');
      assert.equal(findings.host, 'db-1');
      assert.equal(findings.ecosystem, 'AlmaLinux:9');
      assert.ok(findings.findings.length > 10, `${findings.findings.length} findings`);
      assert.ok(findings.findings.every((f) => f.source !== '' && f.installed !== ''), 'every finding names its feed and the installed version');
      assert.deepEqual(findings.feeds.map((f) => [f.source, f.stale]), [['almalinux9.osv.jsonl.gz', false], ['known_exploited_vulnerabilities.json.gz', false]]);
      // The same document as the gateway's HostFindings (its own advisory load, KEV and history) for this host.
      const hf = new HostFindings({ store: fx.store.async, policy: DEFAULT_POLICY, logger: createLogger({ level: 'silent' }), now: () => NOW });
      await hf.load();
      const theirs = await hf.findings(ids.db1 ?? '');
      assert.deepEqual(findings.findings, theirs?.findings);
      assert.equal(doc.host.findings.open, findings.findings.filter((f) => ['open', 'unfixed', 'fixed-pending-reboot'].includes(f.status)).length);
      assert.equal(doc.host.findings.overdue, findings.findings.filter((f) => f.overdue).length);
    });

    it('applies the host’s history: a recorded first-seen date is kept', async () => {
      const first = (await json<{ findings: Findings }>(await get(`/api/v1/hosts/${ids.db2 ?? ''}`, fx.bearer.viewer))).findings.findings[0];
      assert.ok(first !== undefined, 'db-2 has a finding');
      const earlier = '2026-01-02T03:04:05.000Z';
      await fx.store.async.history.record(ids.db2 ?? '', [{ ...first, firstSeen: earlier }], new Date(earlier));
      const again = (await json<{ findings: Findings }>(await get(`/api/v1/hosts/${ids.db2 ?? ''}`, fx.bearer.viewer))).findings.findings.find((f) => f.advisory === first.advisory && f.package === first.package);
      assert.equal(again?.firstSeen, earlier);
    });

    const missing: [string, string][] = [
      ['an unknown uuid', randomUUID()],
      ['not a uuid', 'web-1'],
      ['HTML', encodeURIComponent('<script>alert(1)</script>')],
      ['SQL', encodeURIComponent("' OR 1=1 --")],
      ['a path traversal', '..%2F..%2Fetc%2Fpasswd'],
    ];
    for (const [name, id] of missing) {
      it(`answers 404 PW_ERR_NOT_FOUND for ${name}`, async () => {
        const res = await get(`/api/v1/hosts/${id}`, fx.bearer.viewer);
        assert.equal(res.status, 404);
        const body = await json<ErrorJson>(res);
        assert.equal(body.error.code, 'PW_ERR_NOT_FOUND');
        assert.ok(!body.error.message.includes('<'), 'nothing of the request is echoed');
      });
    }

    it('refuses query parameters it does not take', async () => {
      const res = await get(`/api/v1/hosts/${ids.db1 ?? ''}?verbose=1`, fx.bearer.viewer);
      assert.equal(res.status, 400);
      assert.equal((await json<ErrorJson>(res)).error.code, 'PW_ERR_BAD_REQUEST');
    });
  });

  describe('GET /api/v1/summary', () => {
    interface SummaryJson {
      hosts: { total: number; rebootRequired: number; byEcosystem: Record<string, number> };
      agents: { enrolled: number; connected: number; revoked: number };
      findings: { open: number; overdue: number; byStatus: Record<FindingStatus, number>; bySeverity: Record<string, number>; hostsWithOverdue: number };
      feeds: { source: string; ageSeconds: number | null; stale: boolean }[];
      staleFeeds: number;
    }

    it('counts hosts, ecosystems, reboots, connections and findings as the host list does', async () => {
      const s = await json<SummaryJson>(await get('/api/v1/summary', fx.bearer.viewer));
      assert.equal(s.hosts.total, 7);
      assert.deepEqual(s.hosts.byEcosystem, { 'AlmaLinux:9': 3, 'Debian:12': 4 });
      assert.equal(s.hosts.rebootRequired, 2);
      assert.equal(s.agents.connected, 2);
      const hosts = (await json<Page<HostItem>>(await get('/api/v1/hosts', fx.bearer.viewer))).items;
      assert.equal(s.findings.open, hosts.reduce((n, h) => n + h.findings.open, 0));
      assert.equal(s.findings.overdue, hosts.reduce((n, h) => n + h.findings.overdue, 0));
      assert.equal(s.findings.hostsWithOverdue, 3);
      assert.equal(Object.values(s.findings.bySeverity).reduce((a, b) => a + b, 0), s.findings.open);
      assert.equal(s.findings.byStatus.open + s.findings.byStatus.unfixed + s.findings.byStatus['fixed-pending-reboot'], s.findings.open);
      assert.deepEqual(s.feeds.map((f) => [f.source, f.ageSeconds, f.stale]), [['almalinux9.osv.jsonl.gz', 3600, false], ['known_exploited_vulnerabilities.json.gz', 3600, false]]);
      assert.equal(s.staleFeeds, 0);
    });

    it('follows a fleet-wide exception and a due date passing without any host reporting', async () => {
      const before = await json<SummaryJson>(await get('/api/v1/summary', fx.bearer.viewer));
      const doc = await json<{ findings: Findings }>(await get(`/api/v1/hosts/${ids.db1 ?? ''}`, fx.bearer.viewer));
      const target = doc.findings.findings.find((f) => f.status === 'open');
      assert.ok(target !== undefined, 'db-1 has an open finding');
      await fx.store.async.history.addException({ advisory: target.advisory, package: target.package, owner: 'sec-team', reason: 'compensating control', expires: '2027-01-01T00:00:00.000Z' }, NOW);
      const after = await json<SummaryJson>(await get('/api/v1/summary', fx.bearer.viewer));
      assert.equal(after.findings.byStatus.accepted, before.findings.byStatus.accepted + 3, 'one accepted finding on each AlmaLinux host');
      assert.equal(after.findings.open, before.findings.open - 3);
      fx.db.prepare('DELETE FROM exceptions').run();
      // A year later every deadline has passed.
      fx.clock.now = new Date(NOW.getTime() + 365 * DAY);
      try {
          const later = await json<SummaryJson>(await get('/api/v1/summary', fx.bearer.viewer));
          // Every deadline (publication + 30 days) has passed: each finding that needs action is overdue.
        assert.equal(later.findings.overdue, later.findings.open);
        assert.ok(later.findings.overdue >= before.findings.overdue, `overdue ${before.findings.overdue} -> ${later.findings.overdue}`);
        assert.equal(later.staleFeeds, 2, 'feeds a year old are stale');
      } finally {
        fx.clock.now = NOW;
      }
    });
  });

  describe('GET /api/v1/audit', () => {
    it('lists the audit log newest first, in pages, filtered by action', async () => {
      const first = await json<Page<{ id: number; actor: string; action: string; target: string | null }>>(await get('/api/v1/audit?limit=2', fx.bearer.admin));
      assert.equal(first.items.length, 2);
      assert.ok((first.items[0]?.id ?? 0) > (first.items[1]?.id ?? 0), 'newest first');
      const seen = [...first.items];
      let cursor = first.nextCursor;
      while (cursor !== null) {
        const page = await json<Page<{ id: number; actor: string; action: string; target: string | null }>>(await get(`/api/v1/audit?limit=2&cursor=${cursor}`, fx.bearer.admin));
        seen.push(...page.items);
        cursor = page.nextCursor;
      }
      const total = (fx.db.prepare('SELECT count(*) AS n FROM audit').get() as { n: number }).n;
      assert.equal(seen.length, total);
      assert.deepEqual(seen.map((e) => e.id), [...seen.map((e) => e.id)].sort((a, b) => b - a));
      assert.ok(seen.some((e) => e.action === 'api-token.create' && e.target === 'api-token:viewer' && e.actor === 'cli:test'), 'the viewer token’s creation is audited');
      assert.ok(seen.some((e) => e.action === 'api-token.revoke' && e.target === 'api-token:gone'), 'the revocation of gone is audited');
      assert.ok(seen.some((e) => e.action === 'agent.enroll'), 'enrollments are audited');
      const creates = await json<Page<{ action: string }>>(await get('/api/v1/audit?action=api-token.create', fx.bearer.admin));
      assert.deepEqual(creates.items.map((e) => e.action), ['api-token.create', 'api-token.create', 'api-token.create', 'api-token.create']);
    });

    it('refuses a cursor of the host list and bad filters', async () => {
      const hosts = await json<Page<HostItem>>(await get('/api/v1/hosts?limit=1', fx.bearer.viewer));
      const res = await get(`/api/v1/audit?cursor=${hosts.nextCursor ?? ''}`, fx.bearer.admin);
      assert.equal(res.status, 400);
      assert.equal((await json<ErrorJson>(res)).error.code, 'PW_ERR_BAD_CURSOR');
      for (const q of ['actor=%3Cscript%3E', "action=agent.revoke'--", 'limit=9999', 'since=yesterday']) {
        const r = await get(`/api/v1/audit?${q}`, fx.bearer.admin);
        assert.equal(r.status, 400, q);
        assert.equal((await json<ErrorJson>(r)).error.code, 'PW_ERR_BAD_REQUEST', q);
      }
    });
  });

  // PostgreSQL's text cannot hold U+0000: a parameter with one is refused by its grammar
  // before it is a statement's parameter, where it would be a 500 there.
  describe('U+0000 in query parameters and path ids', () => {
    const table: { path: string; role: 'viewer' | 'admin'; method?: 'POST'; status: number; code: string; clean: string }[] = [
      { path: '/api/v1/hosts?ecosystem=Debian%3A12%00', role: 'viewer', status: 400, code: 'PW_ERR_BAD_REQUEST', clean: '/api/v1/hosts?ecosystem=Debian%3A12' },
      { path: '/api/v1/hosts?tag=prod%00', role: 'viewer', status: 400, code: 'PW_ERR_BAD_REQUEST', clean: '/api/v1/hosts?tag=prod' },
      { path: '/api/v1/hosts?q=web%00', role: 'viewer', status: 400, code: 'PW_ERR_BAD_REQUEST', clean: '/api/v1/hosts?q=web' },
      { path: '/api/v1/hosts?q%00=web', role: 'viewer', status: 400, code: 'PW_ERR_BAD_REQUEST', clean: '/api/v1/hosts?q=web' },
      { path: '/api/v1/hosts?cursor=%00', role: 'viewer', status: 400, code: 'PW_ERR_BAD_CURSOR', clean: '/api/v1/hosts' },
      { path: '/api/v1/audit?actor=cli%3Atest%00', role: 'admin', status: 400, code: 'PW_ERR_BAD_REQUEST', clean: '/api/v1/audit?actor=cli%3Atest' },
      { path: '/api/v1/audit?action=agent.enroll%00', role: 'admin', status: 400, code: 'PW_ERR_BAD_REQUEST', clean: '/api/v1/audit?action=agent.enroll' },
      { path: '/api/v1/hosts/%00', role: 'viewer', status: 404, code: 'PW_ERR_NOT_FOUND', clean: '/api/v1/hosts' },
      { path: '/api/v1/agents/%00/revoke', role: 'admin', method: 'POST', status: 404, code: 'PW_ERR_NOT_FOUND', clean: '/api/v1/hosts' },
    ];
    for (const c of table) {
      it(`${c.method ?? 'GET'} ${c.path}: ${c.status} ${c.code}, nothing written, the next request served`, async () => {
        const audited = (fx.db.prepare('SELECT count(*) AS n FROM audit').get() as { n: number }).n;
        const errors = fx.errors.length;
        const res = await fx.app.request(c.path, { method: c.method ?? 'GET', ...auth(fx.bearer[c.role]) });
        assert.equal(res.status, c.status);
        assert.equal((await json<ErrorJson>(res)).error.code, c.code);
        assert.equal((fx.db.prepare('SELECT count(*) AS n FROM audit').get() as { n: number }).n, audited);
        assert.equal(fx.errors.length, errors, 'no 500');
        assert.equal((await get(c.clean, fx.bearer[c.role])).status, 200);
      });
    }
  });

  describe('POST /api/v1/agents/:id/revoke', () => {
    it('revokes as the admin token, audits it with the token name, tells the gateway, and refuses a second time', async () => {
      const id = await fx.addHost(debianInventory('to-revoke'));
      const res = await fx.app.request(`/api/v1/agents/${id}/revoke`, { method: 'POST', ...auth(fx.bearer.admin) });
      assert.equal(res.status, 200);
      assert.deepEqual(await json(res), { agent: { id, hostname: 'to-revoke', revokedAt: NOW.toISOString() } });
      assert.deepEqual(fx.revokedAgents, [id]);
      assert.equal((await fx.store.async.agents.get(id))?.revokedAt, NOW.toISOString());
      const audit = fx.db.prepare("SELECT actor, action, target FROM audit WHERE action = 'agent.revoke'").all();
      assert.deepEqual(audit, [{ actor: 'api:admin', action: 'agent.revoke', target: `agent:${id}` }]);
      const again = await fx.app.request(`/api/v1/agents/${id}/revoke`, { method: 'POST', ...auth(fx.bearer.admin) });
      assert.equal(again.status, 409);
      assert.equal((await json<ErrorJson>(again)).error.code, 'PW_ERR_CONFLICT');
      const shown = (await json<Page<HostItem>>(await get('/api/v1/hosts?q=to-revoke', fx.bearer.viewer))).items[0];
      assert.equal(shown?.revokedAt, NOW.toISOString());
      fx.db.prepare('DELETE FROM hosts WHERE agent_id = ?').run(id);
    });

    it('is refused to the operator and leaves the agent as it was', async () => {
      const res = await fx.app.request(`/api/v1/agents/${ids.web2 ?? ''}/revoke`, { method: 'POST', ...auth(fx.bearer.operator) });
      assert.equal(res.status, 403);
      assert.equal((await fx.store.async.agents.get(ids.web2 ?? ''))?.revokedAt, null);
    });

    it('is a 404 for GET (only POST revokes)', async () => {
      const res = await get(`/api/v1/agents/${ids.web2 ?? ''}/revoke`, fx.bearer.admin);
      assert.equal(res.status, 404);
      assert.equal((await fx.store.async.agents.get(ids.web2 ?? ''))?.revokedAt, null);
    });
  });

  it('never answered a request with a 500', () => {
    assert.deepEqual(fx.errors, []);
  });
});
