/**
 * The dashboard: server-rendered HTML, no script at all. Every value goes through hono's
 * `html` template, which escapes it (a host name `<script>…` is text); `raw()` is not used
 * anywhere in this file. The Content-Security-Policy allows no script and only this
 * file's own stylesheet (by hash), as a second wall should an escape ever be missed.
 *
 * Login: a form posts an API token; a valid one starts a session (see auth.ts) and sets an
 * HttpOnly, SameSite=Strict cookie. Any role may look; nothing here changes state except
 * logging in and out, which check the Origin header (hono's csrf middleware).
 */
import { createHash } from 'node:crypto';
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { csrf } from 'hono/csrf';
import { html } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import * as z from 'zod';
import type { Finding } from '../../shared/protocol.ts';
import { ASSESSMENTS, type Assessment } from '../domain/correlate/coverage.ts';
import { clearSessionCookie, type Principal, sessionId, setSessionCookie } from './auth.ts';
import { sourceAddress } from './auth-limiter.ts';
import { ApiError, type ApiStatus, RateLimitedError } from './errors.ts';
import { HostsQuerySchema, parseQuery } from './query.ts';
import type { Services } from './services.ts';
import { type FeedJson, type HostJson, hostDocument, listFeeds, listHosts, listRollouts, type RolloutDetailJson, rolloutDetail, type RolloutJson, summary } from './views.ts';

type Html = HtmlEscapedString | Promise<HtmlEscapedString>;
type DashEnv = { Variables: { principal: Principal } };

export const DASHBOARD_CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{display:flex;gap:1.5em;align-items:center;padding:.6em 1.2em;background:#1d232a;color:#fff}
header a{color:#fff;text-decoration:none;font-weight:600}header form{margin-left:auto}
main{padding:1em 1.2em}h1{font-size:1.3em;margin:.2em 0 .6em}h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;width:100%;background:#fff}th,td{padding:.35em .6em;border-bottom:1px solid #e3e6ea;text-align:left;vertical-align:top}
th{background:#eef0f3;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:.8em;margin-bottom:1em}.card{background:#fff;border:1px solid #e3e6ea;padding:.5em .9em;min-width:8em}
.card b{display:block;font-size:1.4em}.bad{color:#b42318;font-weight:600}.warn{color:#b54708}.ok{color:#067647}.muted{color:#667085}
form.filters{display:flex;gap:.6em;flex-wrap:wrap;align-items:end;margin-bottom:.8em}label{display:flex;flex-direction:column;font-size:.85em}
input,select,button{font:inherit;padding:.25em .4em}.login{max-width:28em;margin:4em auto;background:#fff;padding:1.5em;border:1px solid #e3e6ea}
.login input{width:100%;box-sizing:border-box}.error{background:#fef3f2;border:1px solid #fecdca;padding:.5em .8em;margin:.5em 0}
#findings td:first-child,#findings td:nth-child(3),#findings td:nth-child(8){white-space:nowrap}
.banner{padding:.6em .9em;margin:.6em 0;border:1px solid #fecdca;background:#fef3f2}.banner.stale{border-color:#fedf89;background:#fffaeb}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dt{font-weight:600}dd{margin:0}code{font-size:.9em}
#feeds td.error-text{max-width:32em;overflow-wrap:anywhere}#feeds td:nth-child(5),#feeds td:nth-child(2){white-space:nowrap}
`;
const CSS_HASH = createHash('sha256').update(DASHBOARD_CSS).digest('base64');
export const DASHBOARD_CSP = `default-src 'none'; style-src 'sha256-${CSS_HASH}'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`;

function page(title: string, principal: Principal | undefined, body: Html): Html {
  return html`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${title} · patchwarden</title><style>${DASHBOARD_CSS}</style></head>
<body>
<header><a href="/">patchwarden</a>${principal === undefined
    ? ''
    : html`<a href="/feeds">Feeds</a><a href="/rollouts">Rollouts</a><span>${principal.name} <span class="muted">(${principal.role})</span></span><form method="post" action="/logout"><button type="submit">Log out</button></form>`}</header>
<main>${body}</main>
</body>
</html>`;
}

function send(c: Context, body: Html, status: 200 | ApiStatus = 200) {
  c.header('Content-Security-Policy', DASHBOARD_CSP);
  c.header('X-Frame-Options', 'DENY');
  c.header('Referrer-Policy', 'no-referrer');
  c.header('Cache-Control', 'no-store');
  return c.html(body, status);
}

/** Only a path on this site: `//evil.example` and `/\evil.example` would leave it. */
function safeNext(next: string | undefined): string {
  return next !== undefined && /^\/(?![/\\])[A-Za-z0-9/_.?=&%:-]*$/.test(next) && next.length <= 2048 ? next : '/';
}

function when(iso: string | null): string {
  return iso === null ? '—' : iso.replace('T', ' ').replace(/\.\d{3}Z$/, 'Z');
}

const STATE_CLASS: Readonly<Record<string, string>> = {
  running: 'ok',
  completed: 'ok',
  succeeded: 'ok',
  'awaiting-approval': 'warn',
  paused: 'warn',
  sent: 'warn',
  halted: 'bad',
  failed: 'bad',
  refused: 'bad',
  expired: 'bad',
  'not-back': 'bad',
};

function stateCell(state: string): Html {
  return html`<span class="${STATE_CLASS[state] ?? 'muted'}">${state}</span>`;
}

/** `3/7 succeeded, 1 failed, 2 sent`: the hosts of the waves so far, as the gate counts them. */
function hostProgress(r: RolloutJson): string {
  const s = r.hostStates;
  const failed = s.failed + s.refused + s.expired + s['not-back'];
  return `${s.succeeded}/${s.total} succeeded${failed > 0 ? `, ${failed} failed` : ''}${s.sent > 0 ? `, ${s.sent} sent` : ''}`;
}

function rolloutRow(r: RolloutJson): Html {
  return html`<tr>
<td><a href="/rollouts/${r.id}">${r.name}</a>${r.dryRun ? html` <span class="muted">dry run</span>` : ''}</td>
<td>${stateCell(r.state)}</td>
<td>${r.action}</td>
<td class="num">${r.waves.current}/${r.waves.total}</td>
<td>${hostProgress(r)}</td>
<td>${r.haltedReason ?? (r.lastError === null ? '—' : html`<span class="bad">${r.lastError.code}: ${r.lastError.message}</span>`)}</td>
<td>${when(r.createdAt)} <span class="muted">${r.createdBy}</span></td>
<td>${r.approvedBy ?? '—'}</td>
</tr>`;
}

function rolloutHostRow(h: RolloutDetailJson['hosts'][number]): Html {
  return html`<tr>
<td><a href="/hosts/${h.agentId}">${h.hostname ?? h.agentId}</a></td>
<td class="num">${h.wave}</td>
<td>${stateCell(h.state)}</td>
<td>${h.step ?? '—'}</td>
<td>${h.stepsLeft.length === 0 ? '—' : h.stepsLeft.join(' + ')}</td>
<td>${h.detail ?? ''}</td>
<td>${when(h.updatedAt)}</td>
</tr>`;
}

function rolloutPage(r: RolloutDetailJson): Html {
  return html`<p><a href="/rollouts">← All rollouts</a></p>
<h1>${r.name}</h1>
<dl>
<dt>State</dt><dd>${stateCell(r.state)}${r.haltedReason === null ? '' : html`: <span class="bad">${r.haltedReason}</span>`}</dd>
<dt>Action</dt><dd>${r.action}${r.dryRun ? ' (dry run: nothing on the hosts changes)' : ''}</dd>
${r.lastError === null ? '' : html`<dt>Last error</dt><dd><span class="bad">${r.lastError.code}: ${r.lastError.message}</span> <span class="muted">at ${when(r.lastError.at)}; tried again at each tick</span></dd>`}
<dt>Waves</dt><dd>${r.waves.current} of ${r.waves.total} sent</dd>
<dt>Hosts</dt><dd>${hostProgress(r)}</dd>
<dt>Approval</dt><dd>${r.requireApproval ? (r.fourEyes ? 'required (four eyes)' : 'required') : 'not required'}${r.approvedBy === null ? '' : html`; approved by ${r.approvedBy} at ${when(r.approvedAt)}`}</dd>
<dt>Created</dt><dd>${when(r.createdAt)} by ${r.createdBy}${r.submittedBy === null ? '' : html`; submitted by ${r.submittedBy}`}</dd>
<dt>Started</dt><dd>${when(r.startedAt)}</dd>
<dt>Finished</dt><dd>${when(r.finishedAt)}</dd>
<dt>Rollout</dt><dd><code>${r.id}</code></dd>
</dl>
<h2>Hosts (${r.hosts.length})</h2>
<table id="rollout-hosts">
<thead><tr><th>Host</th><th>Wave</th><th>State</th><th>Step</th><th>Next</th><th>Detail</th><th>Updated</th></tr></thead>
<tbody>${r.hosts.length === 0 ? html`<tr><td colspan="7" class="muted">No hosts yet: they are chosen when the rollout starts.</td></tr>` : r.hosts.map(rolloutHostRow)}</tbody>
</table>`;
}

/** `3 h`, `2 d`: how long ago, coarse enough to read at a glance (the exact time is beside it). */
function ageText(seconds: number): string {
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 48 * 3600) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

/** A feed's last error can be a whole upstream answer; the page shows its start, the title a little more. */
const ERROR_SHOWN = 200;
const ERROR_TITLE = 2000;

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}

function feedRow(f: FeedJson, staleHours: number): Html {
  return html`<tr>
<td>${f.source}</td>
<td>${f.kind}</td>
<td>${f.ecosystems.length === 0 ? html`<span class="muted">none (covers no host by itself)</span>` : f.ecosystems.join(', ')}</td>
<td class="num">${f.records}</td>
<td>${f.newest === null ? '—' : f.newest.slice(0, 10)}</td>
<td>${f.checkedAt === null || f.ageSeconds === null ? html`<span class="bad">never</span>` : html`${when(f.checkedAt)} <span class="muted">(${ageText(f.ageSeconds)} ago)</span>`}</td>
<td>${f.stale ? html`<span class="bad" title="${f.checkedAt === null ? 'never checked successfully' : `last checked more than ${staleHours} h ago`}">stale</span>` : html`<span class="ok">fresh</span>`}</td>
<td class="error-text">${f.lastError === null ? '—' : html`<span class="bad" title="${clip(f.lastError, ERROR_TITLE)}">${clip(f.lastError, ERROR_SHOWN)}</span>`}</td>
</tr>`;
}

function feedsPage(feeds: FeedJson[], staleHours: number): Html {
  const stale = feeds.filter((f) => f.stale).length;
  return html`<h1>Feeds</h1>
${feeds.length === 0
    ? html`<div id="no-feeds" role="alert" class="banner"><p><b class="bad">No feed is loaded</b>, so no host is assessed: an empty findings list means nobody looked.</p>
<p>A collector with internet access syncs the feeds its hosts need by itself, at start and then on a schedule (unless its config has <code>"feedSync": false</code> or <code>PATCHWARDEN_FEED_SYNC=off</code>); <code>patchwarden-collector feed sync</code> does it now. An offline collector imports feed files or a signed bundle from an online collector (<code>feed export</code> there): <code>patchwarden-collector feed import [--trust=KEY] PATH…</code>. A serving collector picks up an import without a restart.</p></div>`
    : html`<p>${feeds.length} feeds, <span class="${stale > 0 ? 'bad' : 'ok'}">${stale} stale</span> (a feed is stale when its last successful check is more than ${staleHours} h old; <code>staleFeedHours</code> in the policy). A host is assessed only when a fresh feed covers its ecosystem.</p>`}
<table id="feeds">
<thead><tr><th>Feed</th><th>Kind</th><th>Covers</th><th>Records</th><th>Newest</th><th>Last successful check</th><th>Freshness</th><th>Last error</th></tr></thead>
<tbody>${feeds.length === 0 ? html`<tr><td colspan="8" class="muted">No feeds.</td></tr>` : feeds.map((f) => feedRow(f, staleHours))}</tbody>
</table>`;
}


function loginPage(next: string, error?: string): Html {
  return page(
    'Log in',
    undefined,
    html`<div class="login"><h1>Log in</h1>
<p>Paste an API token (<code>patchwarden-collector api-token create --name NAME --role viewer</code> makes one).</p>
${error === undefined ? '' : html`<p class="error" role="alert">${error}</p>`}
<form method="post" action="/login">
<input type="hidden" name="next" value="${next}">
<label>API token<input type="password" name="token" autocomplete="off" required autofocus></label>
<p><button type="submit">Log in</button></p>
</form></div>`,
  );
}

const ASSESSMENT_LABEL: Record<Assessment, string> = { assessed: 'assessed', stale: 'stale feeds', 'not-assessed': 'not assessed' };
const ASSESSMENT_CLASS: Record<Assessment, string> = { assessed: 'ok', stale: 'warn', 'not-assessed': 'bad' };

function assessmentCell(a: HostJson['assessment']): Html {
  return html`<span class="${ASSESSMENT_CLASS[a.state]}" title="${a.reason}">${ASSESSMENT_LABEL[a.state]}</span>`;
}

function hostRow(h: HostJson): Html {
  return html`<tr>
<td><a href="/hosts/${h.id}">${h.hostname}</a>${h.revokedAt === null ? '' : html` <span class="bad">revoked</span>`}</td>
<td>${h.ecosystem ?? '—'}</td>
<td>${assessmentCell(h.assessment)}</td>
<td class="num">${h.packageCount}</td>
<td><code>${h.kernel.release}</code>${h.kernel.managed ? '' : html` <span class="warn">unmanaged</span>`}</td>
<td>${h.rebootRequired ? html`<span class="warn">yes</span>` : 'no'}</td>
<td class="num">${h.findings.open}${h.findings.overdue > 0 ? html` <span class="bad">(${h.findings.overdue} overdue)</span>` : ''}</td>
<td>${when(h.lastSeen ?? h.lastReportAt)}${h.connected ? html` <span class="ok">●</span>` : ''}</td>
</tr>`;
}

/** The score as a percentage with its percentile; numbers formatted here, then escaped like any text. */
function epssCell(f: Finding): Html | string {
  const e = f.epss;
  if (e === null || e === undefined) return '—';
  return html`<span title="${e.cve}: EPSS ${e.score}, percentile ${e.percentile}">${(e.score * 100).toFixed(2)}%</span> <span class="muted">(p${Math.floor(e.percentile * 100)})</span>`;
}

function findingRow(f: Finding): Html {
  return html`<tr>
<td>${f.advisory}${f.kev ? html` <span class="bad">KEV</span>` : ''}</td>
<td>${f.severity}</td>
<td class="num">${epssCell(f)}</td>
<td>${f.status}</td>
<td>${f.package}</td>
<td><code>${f.installed}</code></td>
<td><code>${f.fixed ?? '—'}</code></td>
<td>${f.due ?? '—'}${f.overdue ? html` <span class="bad">overdue</span>` : ''}</td>
<td>${f.cves.slice(0, 5).join(' ')}${f.cves.length > 5 ? ` +${f.cves.length - 5}` : ''}</td>
</tr>`;
}

/** Form fields left empty are absent, not empty filters. */
function formQueries(c: Context): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(c.req.queries())) {
    const kept = v.filter((x) => x !== '');
    if (kept.length > 0) out[k] = kept;
  }
  return out;
}

const LoginForm = z.strictObject({ token: z.string().max(256), next: z.string().max(2048).optional() });

export function dashboardRoutes(s: Services): Hono<DashEnv> {
  const app = new Hono<DashEnv>();

  // Browsers ask for it on every first visit; an empty answer keeps a 404 out of their consoles.
  app.get('/favicon.ico', (c) => {
    c.header('Cache-Control', 'max-age=86400');
    return c.body(null, 204);
  });

  app.get('/login', async (c) => {
    const next = safeNext(c.req.query('next'));
    if ((await s.sessions.principal(sessionId(c))) !== undefined) return c.redirect(next, 303);
    return send(c, loginPage(next));
  });

  app.post('/login', csrf(), bodyLimit({ maxSize: 8 * 1024, onError: (c) => send(c, loginPage('/', 'The form is too large.'), 400) }), async (c) => {
    const form = LoginForm.safeParse(Object.fromEntries(Object.entries(await c.req.parseBody()).filter(([, v]) => typeof v === 'string')));
    if (!form.success) return send(c, loginPage('/', 'Paste an API token.'), 400);
    const next = safeNext(form.data.next);
    try {
      const source = sourceAddress(c);
      const { id, principal } = s.sessions.start(await s.guard.authenticate(source, form.data.token.trim(), 'login'));
      // Who opened a dashboard session, and from where.
      await s.deps.store.audit.record(principal.actor, 'dashboard.login', `api-token:${principal.name}`, JSON.stringify({ source }), s.now());
      setSessionCookie(c, id);
      return c.redirect(next, 303);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return send(c, loginPage(next, 'That token is unknown or revoked.'), 401);
      if (err instanceof RateLimitedError) {
        c.header('Retry-After', String(err.retryAfterSeconds));
        return send(c, loginPage(next, `Too many failed logins from your address. Try again in ${err.retryAfterSeconds} seconds.`), 429);
      }
      throw err;
    }
  });

  app.post('/logout', csrf(), (c) => {
    s.sessions.logout(sessionId(c));
    clearSessionCookie(c);
    return c.redirect('/login', 303);
  });

  // The pages need a session; without one the browser goes to the login form and comes back.
  const session: MiddlewareHandler<DashEnv> = async (c, next) => {
    const p = await s.sessions.principal(sessionId(c));
    if (p === undefined) {
      const back = new URL(c.req.url);
      return c.redirect(`/login?next=${encodeURIComponent(safeNext(back.pathname + back.search))}`, 303);
    }
    c.set('principal', p);
    await next();
  };

  app.get('/', session, async (c) => {
    const principal = c.get('principal');
    let q;
    try {
      q = parseQuery(HostsQuerySchema, formQueries(c));
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      return send(c, page('Hosts', principal, html`<h1>Hosts</h1><p class="error" role="alert">${err.message}</p><p><a href="/">All hosts</a></p>`), 400);
    }
    const list = await listHosts(s, q);
    const sum = await summary(s);
    const nextParams = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (k !== 'cursor') nextParams.set(k, String(v));
    if (list.nextCursor !== null) nextParams.set('cursor', list.nextCursor);
    const reboot = q.rebootRequired === undefined ? '' : String(q.rebootRequired);
    return send(
      c,
      page(
        'Hosts',
        principal,
        html`<h1>Hosts</h1>
<div class="cards">
<div class="card"><b>${sum.hosts.total}</b>hosts</div>
<div class="card"><b>${sum.agents.connected}</b>connected</div>
<div class="card"><b class="${sum.hosts.rebootRequired > 0 ? 'warn' : ''}">${sum.hosts.rebootRequired}</b>reboot pending</div>
<div class="card"><b>${sum.findings.open}</b>open findings</div>
<div class="card"><b class="${sum.findings.overdue > 0 ? 'bad' : ''}">${sum.findings.overdue}</b>overdue</div>
<div class="card"><b class="${sum.staleFeeds > 0 ? 'bad' : ''}">${sum.staleFeeds}</b>stale feeds</div>
<div class="card" id="not-assessed"><b class="${sum.hosts.byAssessment['not-assessed'] > 0 ? 'bad' : 'ok'}">${sum.hosts.byAssessment['not-assessed']}</b><a href="/?assessment=not-assessed">not assessed</a> (no feed covers them)</div>
<div class="card"><b class="${sum.hosts.byAssessment.stale > 0 ? 'warn' : ''}">${sum.hosts.byAssessment.stale}</b><a href="/?assessment=stale">assessed on stale feeds</a></div>
<div class="card"><b>${sum.hosts.compliant}</b>compliant (assessed, nothing overdue)</div>
</div>
<form class="filters" method="get" action="/">
<label>Host name starts with<input name="q" value="${q.q ?? ''}"></label>
<label>Ecosystem<input name="ecosystem" value="${q.ecosystem ?? ''}" placeholder="Debian:12"></label>
<label>Tag<input name="tag" value="${q.tag ?? ''}"></label>
<label>Reboot pending<select name="rebootRequired"><option value="" ${reboot === '' ? 'selected' : ''}>any</option><option value="true" ${reboot === 'true' ? 'selected' : ''}>yes</option><option value="false" ${reboot === 'false' ? 'selected' : ''}>no</option></select></label>
<label>Assessment<select name="assessment"><option value="" ${q.assessment === undefined ? 'selected' : ''}>any</option>${ASSESSMENTS.map((a) => html`<option value="${a}" ${q.assessment === a ? 'selected' : ''}>${ASSESSMENT_LABEL[a]}</option>`)}</select></label>
<button type="submit">Filter</button>
</form>
<table id="hosts">
<thead><tr><th>Host</th><th>Ecosystem</th><th>Assessment</th><th>Packages</th><th>Kernel</th><th>Reboot pending</th><th>Open findings</th><th>Last seen</th></tr></thead>
<tbody>${list.items.length === 0 ? html`<tr><td colspan="8" class="muted">No hosts.</td></tr>` : list.items.map(hostRow)}</tbody>
</table>
${list.nextCursor === null ? '' : html`<p><a rel="next" href="/?${nextParams.toString()}">Next page</a></p>`}`,
      ),
    );
  });

  app.get('/hosts/:id', session, async (c) => {
    const principal = c.get('principal');
    const id = c.req.param('id');
    const doc = z.uuid().safeParse(id).success ? await hostDocument(s, id, 'fix-first') : undefined;
    if (doc === undefined) return send(c, page('Not found', principal, html`<h1>No such host</h1><p><a href="/">All hosts</a></p>`), 404);
    const { host, inventory, findings } = doc;
    // What to fix first: overdue, KEV, EPSS, severity (hostDocument sorted them).
    const sorted = findings.findings;
    return send(
      c,
      page(
        host.hostname,
        principal,
        html`<p><a href="/">← All hosts</a></p>
<h1>${host.hostname}</h1>
${host.assessment.state === 'assessed' ? '' : html`<p id="assessment" role="alert" class="banner ${host.assessment.state === 'stale' ? 'stale' : ''}"><b class="${ASSESSMENT_CLASS[host.assessment.state]}">${host.assessment.state === 'stale' ? 'Assessed on stale feeds' : 'Not assessed'}:</b> ${host.assessment.reason}. ${host.assessment.state === 'stale' ? 'Findings may be missing.' : 'No findings here does not mean this host is clean: nobody looked.'}</p>`}
<dl>
<dt>Ecosystem</dt><dd>${host.ecosystem ?? '—'}${inventory.host.os.prettyName === null ? '' : html` <span class="muted">(${inventory.host.os.prettyName})</span>`}</dd>
<dt>Kernel</dt><dd><code>${host.kernel.release}</code>${host.kernel.managed ? '' : html` <span class="warn">no package provides it (unmanaged)</span>`}</dd>
<dt>Packages</dt><dd>${host.packageCount}</dd>
<dt>Reboot pending</dt><dd>${host.rebootRequired ? html`<span class="warn">yes</span>: ${inventory.reboot.reasons.map((r) => `${r.kind} (${r.detail})`).join('; ')}` : 'no'}</dd>
<dt>Last seen</dt><dd>${when(host.lastSeen)}${host.connected ? html` <span class="ok">connected</span>` : ''}</dd>
<dt>Last report</dt><dd>${when(host.lastReportAt)}</dd>
<dt>Tags</dt><dd>${host.tags.length === 0 ? '—' : host.tags.join(', ')}</dd>
<dt>Agent</dt><dd><code>${host.id}</code>${host.revokedAt === null ? '' : html` <span class="bad">revoked ${when(host.revokedAt)}</span>`}</dd>
</dl>
${findings.warnings.length === 0 ? '' : html`<h2>Warnings</h2><ul>${findings.warnings.map((w) => html`<li>${w}</li>`)}</ul>`}
<h2>Findings (${findings.findings.length}; ${host.findings.open} open, ${host.findings.overdue} overdue)</h2>
<table id="findings">
<thead><tr><th>Advisory</th><th>Severity</th><th title="FIRST EPSS: probability of exploitation in the next 30 days, and its percentile">EPSS</th><th>Status</th><th>Package</th><th>Installed</th><th>Fixed</th><th>Due</th><th>CVEs</th></tr></thead>
<tbody>${sorted.length === 0 ? html`<tr><td colspan="9" class="muted">${host.assessment.state === 'not-assessed' ? 'No findings, because no loaded feed covers this host.' : 'No findings.'}</td></tr>` : sorted.map(findingRow)}</tbody>
</table>`,
      ),
    );
  });

  app.get('/feeds', session, async (c) => {
    const staleHours = s.deps.policy.staleFeedHours;
    return send(c, page('Feeds', c.get('principal'), feedsPage(await listFeeds(s), staleHours)));
  });

  // Read-only: rollouts are created and moved through the API or the CLI, never from a page.
  app.get('/rollouts', session, async (c) => {
    const principal = c.get('principal');
    const engine = s.deps.rollouts;
    if (engine === undefined) return send(c, page('Rollouts', principal, html`<h1>Rollouts</h1><p class="muted">Rollouts are not enabled on this collector.</p>`));
    const items = await listRollouts(engine);
    return send(
      c,
      page(
        'Rollouts',
        principal,
        html`<h1>Rollouts</h1>
<table id="rollouts">
<thead><tr><th>Name</th><th>State</th><th>Action</th><th>Waves</th><th>Hosts</th><th>Halted because</th><th>Created</th><th>Approved by</th></tr></thead>
<tbody>${items.length === 0 ? html`<tr><td colspan="8" class="muted">No rollouts (<code>patchwarden-collector rollout create --plan FILE.json</code> makes one).</td></tr>` : items.map(rolloutRow)}</tbody>
</table>`,
      ),
    );
  });

  app.get('/rollouts/:id', session, async (c) => {
    const principal = c.get('principal');
    const engine = s.deps.rollouts;
    const id = c.req.param('id');
    const found = engine !== undefined && z.uuid().safeParse(id).success && (await engine.store.get(id)) !== undefined;
    if (!found) return send(c, page('Not found', principal, html`<h1>No such rollout</h1><p><a href="/rollouts">All rollouts</a></p>`), 404);
    const r = await rolloutDetail(s.deps.store, engine, id);
    return send(c, page(r.name, principal, rolloutPage(r)));
  });

  return app;
}

export function dashboardError(c: Context, err: ApiError): Response | Promise<Response> {
  const title = err.status === 404 ? 'Not found' : err.status === 403 ? 'Refused' : 'Error';
  return send(c, page(title, undefined, html`<h1>${title}</h1><p>${err.message}</p><p><a href="/">All hosts</a></p>`), err.status);
}
