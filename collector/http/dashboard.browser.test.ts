/**
 * The dashboard in a real browser (Debian's Chromium through playwright-core) against a
 * real HTTP server on a free port: log in with an API token, see the hosts, open a host,
 * and check that a hostile host name is shown as text and runs nothing. Screenshots go to
 * /tmp for a person to look at.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { getRequestListener } from '@hono/node-server';
import { type Browser, chromium, type Page } from 'playwright-core';
import { asyncAdvisories } from '../../shared/testing/store-fixtures.ts';
import { almaInventory, debianInventory, type Fixture, HOSTILE_HOSTNAME, makeFixture } from '../../shared/testing/http-fixture.ts';
import { needs, TOOLS } from '../../shared/testing/system-tools.ts';

const CHROMIUM = TOOLS.chromium.path;
export const SCREENSHOTS = { hosts: '/tmp/patchwarden-dashboard-hosts.png', host: '/tmp/patchwarden-dashboard-host.png', feeds: '/tmp/patchwarden-dashboard-feeds.png' };

describe('dashboard in Chromium', { skip: needs(TOOLS.chromium) }, () => {
  let fx: Fixture;
  let server: Server;
  let base: string;
  let browser: Browser;
  let page: Page;
  const dialogs: string[] = [];
  const consoleErrors: string[] = [];
  const ids: Record<string, string> = {};

  before(async () => {
    fx = await makeFixture();
    ids.web1 = await fx.addHost(debianInventory('web-1'), { connected: true, tags: ['prod'] });
    ids.db1 = await fx.addHost(almaInventory('db-1', { rebootRequired: true }), { connected: true });
    ids.db2 = await fx.addHost(almaInventory('db-2'));
    ids.hostile = await fx.addHost(debianInventory(HOSTILE_HOSTNAME), { tags: ['"><img src=x onerror=alert(2)>'] });
    const listener = getRequestListener(fx.app.fetch);
    server = createServer((req, res) => {
      void listener(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
      timeout: 60_000,
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('dialog', (d) => {
      dialogs.push(`${d.type()}: ${d.message()}`);
      void d.dismiss();
    });
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(e.message));
  });

  after(async () => {
    await browser.close();
    await new Promise<void>((resolve) => {
      server.close(() => {
        resolve();
      });
      server.closeAllConnections();
    });
    fx.close();
  });

  it('sends a visitor to the login form, which refuses a wrong token', async () => {
    await page.goto(`${base}/`);
    assert.equal(new URL(page.url()).pathname, '/login');
    await page.fill('input[name="token"]', `pwa_${'C'.repeat(43)}`);
    await Promise.all([page.waitForURL(/\/login$/), page.click('button[type="submit"]')]);
    assert.match((await page.textContent('[role="alert"]')) ?? '', /unknown or revoked/);
  });

  it('logs in with a viewer token and shows the hosts table, the hostile name as text', async () => {
    await page.fill('input[name="token"]', fx.bearer.viewer);
    await Promise.all([page.waitForURL(`${base}/`), page.click('button[type="submit"]')]);
    const names = await page.locator('#hosts tbody tr td:first-child a').allTextContents();
    assert.deepEqual(names, [HOSTILE_HOSTNAME, 'db-1', 'db-2', 'web-1']);
    assert.equal(await page.locator('script').count(), 0, 'no script element in the page');
    assert.equal(await page.locator('img').count(), 0, 'no img element from the hostile tag');
    // HttpOnly: a script in the page could not read the session.
    assert.equal(await page.evaluate<string>('document.cookie'), '');
    const [cookie] = await page.context().cookies();
    assert.deepEqual([cookie?.name, cookie?.httpOnly, cookie?.sameSite], ['pw_session', true, 'Strict']);
    const headers = await page.locator('#hosts thead th').allTextContents();
    assert.deepEqual(headers, ['Host', 'Ecosystem', 'Assessment', 'Packages', 'Kernel', 'Reboot pending', 'Open findings', 'Last seen']);
    const db1 = (await page.locator('#hosts tbody tr', { has: page.locator('a', { hasText: /^db-1$/ }) }).locator('td').allTextContents()).map((t) => t.trim());
    assert.equal(db1[1], 'AlmaLinux:9');
    assert.equal(db1[2], 'assessed');
    assert.equal(db1[3], '243');
    assert.equal(db1[5], 'yes');
    assert.match(db1[6] ?? '', /^\d+ \(\d+ overdue\)$/);
    // Only AlmaLinux 9 advisories are loaded: nothing covers the Debian hosts, and the page says so.
    const web1 = (await page.locator('#hosts tbody tr', { has: page.locator('a', { hasText: /^web-1$/ }) }).locator('td').allTextContents()).map((t) => t.trim());
    assert.equal(web1[2], 'not assessed');
    assert.match((await page.textContent('#not-assessed')) ?? '', /^2not assessed \(no feed covers them\)$/);
    // The stylesheet is allowed by its hash under the CSP: the header is dark.
    assert.equal(await page.evaluate<string>("getComputedStyle(document.querySelector('header')).backgroundColor"), 'rgb(29, 35, 42)');
    await page.screenshot({ path: SCREENSHOTS.hosts, fullPage: true });
  });

  it('filters by a host name prefix', async () => {
    await page.fill('input[name="q"]', 'db');
    await Promise.all([page.waitForURL(/q=db/), page.click('form.filters button')]);
    const names = await page.locator('#hosts tbody tr td:first-child a').allTextContents();
    assert.deepEqual(names, ['db-1', 'db-2']);
  });

  it('opens a host with its findings', async () => {
    await Promise.all([page.waitForURL(`${base}/hosts/${ids.db1 ?? ''}`), page.click('text=db-1')]);
    assert.equal(await page.textContent('h1'), 'db-1');
    const findings = await page.locator('#findings tbody tr').count();
    assert.ok(findings > 10, `${findings} findings`);
    assert.match((await page.textContent('dl')) ?? '', /kernel-update/);
    await page.screenshot({ path: SCREENSHOTS.host, fullPage: false });
  });

  it('shows the hostile host’s page with its name as the heading text, and a banner: nobody looked', async () => {
    await page.goto(`${base}/hosts/${ids.hostile ?? ''}`);
    assert.equal(await page.textContent('h1'), HOSTILE_HOSTNAME);
    assert.match((await page.textContent('#assessment')) ?? '', /^Not assessed: no loaded feed has advisories for Debian:12/);
    assert.equal(await page.evaluate<string>("getComputedStyle(document.querySelector('#assessment')).backgroundColor"), 'rgb(254, 243, 242)');
    assert.equal(await page.title(), `${HOSTILE_HOSTNAME} · patchwarden`);
    assert.equal(await page.locator('script').count(), 0, 'no script element in the page');
  });

  it('opens the Feeds page from the header, a hostile last error shown as text', async () => {
    await asyncAdvisories(fx.db).recordFeedError({ source: 'almalinux9.osv.jsonl.gz', kind: 'osv', location: null }, 'HTTP 502: <img src=x onerror=alert(5)>', fx.clock.now);
    await Promise.all([page.waitForURL(`${base}/feeds`), page.click('header a[href="/feeds"]')]);
    assert.equal(await page.textContent('h1'), 'Feeds');
    const names = await page.locator('#feeds tbody tr td:first-child').allTextContents();
    assert.deepEqual(names, ['almalinux9.osv.jsonl.gz', 'known_exploited_vulnerabilities.json.gz']);
    const alma = (await page.locator('#feeds tbody tr').first().locator('td').allTextContents()).map((t) => t.trim());
    assert.equal(alma[2], 'AlmaLinux:8, AlmaLinux:9, AlmaLinux:10', 'what the export names (it has AlmaLinux 8 and 10 entries too), Debian-style numeric order');
    assert.equal(alma[6], 'fresh');
    assert.match(alma[7] ?? '', /HTTP 502: <img src=x onerror=alert\(5\)>$/);
    assert.equal(await page.locator('img').count(), 0, 'no img element from the hostile error');
    assert.equal(await page.locator('script').count(), 0, 'no script element in the page');
    assert.equal(await page.evaluate<string>("getComputedStyle(document.querySelector('header')).backgroundColor"), 'rgb(29, 35, 42)');
    assert.deepEqual(consoleErrors.filter((m) => /Content.Security.Policy/i.test(m)), [], 'the page broke no CSP rule');
    await page.screenshot({ path: SCREENSHOTS.feeds, fullPage: true });
  });

  it('logs out', async () => {
    await Promise.all([page.waitForURL(/\/login$/), page.click('header button')]);
    await page.goto(`${base}/`);
    assert.equal(new URL(page.url()).pathname, '/login');
  });

  it('ran no script and broke no Content-Security-Policy rule', () => {
    assert.deepEqual(dialogs, []);
    // The refused login's 401 is logged by Chromium as a failed load; anything else is not expected.
    assert.deepEqual(
      consoleErrors.filter((m) => m !== 'Failed to load resource: the server responded with a status of 401 (Unauthorized)'),
      [],
    );
    assert.deepEqual(fx.errors, []);
  });
});
