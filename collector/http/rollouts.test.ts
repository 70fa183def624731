import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import { InstructionSchema, instructionSignatureValid, type PatchInstruction } from '../../shared/instructions.ts';
import { dataPath } from '../../shared/testing/data.ts';
import { importFeedPath } from '../services/feeds/store-import.ts';
import { startCollector, type TestCollector } from '../../shared/testing/collector-harness.ts';
import { type TestAgent } from '../../shared/testing/fake-agent.ts';
import { BIND, bindPlan as plan, hostInventory, resultFor } from '../../shared/testing/rollout-bench.ts';
import { DASHBOARD_CSP } from './dashboard.ts';
import { MAX_PLAN_BYTES } from './rollouts.ts';
import type { RolloutDetailJson, RolloutJson } from './views.ts';
import { asyncAdvisories } from '../../shared/testing/store-fixtures.ts';

/** ALSA-2026:54510 fixes bind 9.16.23 (bind-libs, bind-license, bind-utils in the RHEL 9.5 image). */

interface ErrorJson {
  error: { code: string; message: string };
}

interface Api {
  tc: TestCollector;
  tokens: Record<'alice' | 'bob' | 'viewer' | 'admin', string>;
  agents: { client: TestAgent; agentId: string; hostname: string }[];
  call: (token: string | null, method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<Response>;
  /** The collector log's lines about requests answered with 500. */
  failures: () => string[];
}

/**
 * A real collector on port 0 with the AlmaLinux 9 OSV export in its store, three real
 * agents over WebSocket (enrolled with a token, each reporting the RHEL 9.5 image's rpms),
 * tagged `web`, and API tokens: alice and bob (operators), a viewer and an admin.
 */
async function setup(t: TestContext, hosts = 3): Promise<Api> {
  const tc = await startCollector(t);
  await importFeedPath(asyncAdvisories(tc.collector.sqlite!.db), dataPath('osv', 'almalinux9.osv.jsonl.gz'));
  await tc.collector.findings.load();
  const store = tc.collector.store.apiTokens;
  const make = async (name: string, role: 'viewer' | 'operator' | 'admin') => (await store.create({ name, role, createdBy: 'cli:test' })).token;
  const tokens = { alice: await make('alice', 'operator'), bob: await make('bob', 'operator'), viewer: await make('viewer', 'viewer'), admin: await make('admin', 'admin') };
  const agents: Api['agents'] = [];
  for (let i = 1; i <= hosts; i++) {
    const hostname = `web-${i}`;
    const { client, agentId } = await tc.agent(hostname);
    await client.report(hostInventory({ hostname }));
    await tc.collector.store.agents.setTags(agentId, ['web'], 'cli:test', new Date());
    agents.push({ client, agentId, hostname });
  }
  const call: Api['call'] = (token, method, path, body, headers = {}) => {
    const h: Record<string, string> = { ...headers };
    if (token !== null) h.authorization = `Bearer ${token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === 'string' ? body : JSON.stringify(body);
      h['content-type'] ??= 'application/json';
    }
    return fetch(`${tc.collector.url}/api/v1${path}`, { method, headers: h, ...(payload === undefined ? {} : { body: payload }) });
  };
  const failures = () => tc.logs.filter((l) => l.includes('HTTP request failed'));
  return { tc, tokens, agents, call, failures };
}

async function json<T>(res: Response, status: number): Promise<T> {
  const text = await res.text();
  assert.equal(res.status, status, text.slice(0, 500));
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  return JSON.parse(text) as T;
}

async function errorOf(res: Response, status: number, code: string): Promise<string> {
  const body = await json<ErrorJson>(res, status);
  assert.equal(body.error.code, code, body.error.message);
  return body.error.message;
}

async function auditOf(api: Api, id: string): Promise<{ actor: string; action: string }[]> {
  const page = await json<{ items: { actor: string; action: string; target: string | null }[] }>(await api.call(api.tokens.admin, 'GET', '/audit?limit=500'), 200);
  return page.items
    .filter((e) => e.target === `rollout:${id}`)
    .reverse()
    .map((e) => ({ actor: e.actor, action: e.action }));
}

describe('rollouts API: a four-eyes rollout from plan to cancel', () => {
  it('creates, previews, submits, refuses the creator and a viewer as approvers, runs on a second operator, pauses, resumes, cancels; audited with each actor', async (t) => {
    const api = await setup(t);
    const { call, tokens, tc } = api;

    const preview = await json<{ preview: { hosts: { hostname: string; wave: number; action: string; packages: { name: string; from: string | null }[]; findingsResolved: string[] }[]; waves: number[]; totals: { hosts: number; packages: number } } }>(
      await call(tokens.alice, 'POST', '/rollouts/preview', plan({ requireApproval: true, fourEyes: true })),
      200,
    );
    assert.deepEqual(preview.preview.waves, [1, 2]);
    assert.deepEqual(preview.preview.hosts.map((h) => h.hostname).sort(), ['web-1', 'web-2', 'web-3']);
    for (const h of preview.preview.hosts) {
      assert.equal(h.action, 'patch');
      assert.deepEqual(h.packages.map((p) => p.name), ['bind-libs', 'bind-license', 'bind-utils']);
      assert.ok(h.packages.every((p) => p.from?.startsWith('32:9.16.23') === true), JSON.stringify(h.packages));
      assert.ok(h.findingsResolved.includes(BIND));
    }
    assert.deepEqual(preview.preview.totals.hosts, 3);
    assert.deepEqual(preview.preview.totals.packages, 9);

    const created = await call(tokens.alice, 'POST', '/rollouts', plan({ requireApproval: true, fourEyes: true }));
    const r = (await json<{ rollout: RolloutDetailJson }>(created, 201)).rollout;
    assert.equal(created.headers.get('location'), `/api/v1/rollouts/${r.id}`);
    assert.deepEqual([r.state, r.createdBy, r.action, r.waves.total, r.hosts.length], ['draft', 'api:alice', 'patch', 0, 0]);

    const list = await json<{ items: RolloutJson[] }>(await call(tokens.viewer, 'GET', '/rollouts'), 200);
    assert.deepEqual(
      list.items.map((x) => [x.id, x.name, x.state]),
      [[r.id, 'bind week 48', 'draft']],
    );
    const stored = await json<{ preview: { totals: { hosts: number } } }>(await call(tokens.viewer, 'GET', `/rollouts/${r.id}/preview`), 200);
    assert.equal(stored.preview.totals.hosts, 3);

    assert.equal((await json<{ rollout: RolloutJson }>(await call(tokens.alice, 'POST', `/rollouts/${r.id}/submit`), 200)).rollout.state, 'awaiting-approval');
    await errorOf(await call(tokens.viewer, 'POST', `/rollouts/${r.id}/approve`), 403, 'PW_ERR_FORBIDDEN');
    const msg = await errorOf(await call(tokens.alice, 'POST', `/rollouts/${r.id}/approve`), 403, 'PW_ERR_ROLLOUT_APPROVAL');
    assert.match(msg, /needs a second person: api:alice/);
    for (const a of api.agents) assert.equal(a.client.received.filter((f) => f.includes('"instruction"')).length, 0, `${a.hostname} got nothing before the approval`);

    const approved = (await json<{ rollout: RolloutDetailJson }>(await call(tokens.bob, 'POST', `/rollouts/${r.id}/approve`), 200)).rollout;
    assert.deepEqual([approved.state, approved.approvedBy, approved.waves], ['running', 'api:bob', { current: 1, total: 2 }]);
    assert.deepEqual(approved.hostStates, { total: 3, pending: 2, sent: 1, succeeded: 0, failed: 0, refused: 0, expired: 0, 'not-back': 0 });
    const canary = approved.hosts.find((h) => h.state === 'sent') ?? assert.fail('a canary host was sent its instruction');
    assert.equal(canary.wave, 0);
    const agent = api.agents.find((a) => a.agentId === canary.agentId) ?? assert.fail();
    assert.equal(canary.hostname, agent.hostname);
    // The real gateway pushed it to the connected agent: signed with the key it pinned.
    const frame = await agent.client.expect('instruction');
    assert.ok(instructionSignatureValid(frame, tc.collector.publicKey));
    const ins = InstructionSchema.parse(JSON.parse(frame.payload)) as PatchInstruction;
    assert.deepEqual([ins.kind, ins.agentId, ins.rolloutId, ins.id], ['patch', agent.agentId, r.id, canary.instructionId]);

    assert.equal((await json<{ rollout: RolloutJson }>(await call(tokens.alice, 'POST', `/rollouts/${r.id}/pause`), 200)).rollout.state, 'paused');
    assert.match(await errorOf(await call(tokens.alice, 'POST', `/rollouts/${r.id}/pause`), 409, 'PW_ERR_ROLLOUT_STATE'), /it is paused/);
    assert.equal((await json<{ rollout: RolloutJson }>(await call(tokens.bob, 'POST', `/rollouts/${r.id}/resume`), 200)).rollout.state, 'running');
    assert.equal((await json<{ rollout: RolloutJson }>(await call(tokens.admin, 'POST', `/rollouts/${r.id}/cancel`), 200)).rollout.state, 'cancelled');
    await errorOf(await call(tokens.alice, 'POST', `/rollouts/${r.id}/resume`), 409, 'PW_ERR_ROLLOUT_STATE');

    assert.deepEqual(await auditOf(api, r.id), [
      { actor: 'api:alice', action: 'rollout.create' },
      { actor: 'api:alice', action: 'rollout.submit' },
      { actor: 'api:bob', action: 'rollout.approve' },
      { actor: 'api:bob', action: 'rollout.start' },
      { actor: 'api:bob', action: 'rollout.targets' },
      { actor: 'system', action: 'rollout.wave-start' },
      { actor: 'api:alice', action: 'rollout.pause' },
      { actor: 'api:bob', action: 'rollout.resume' },
      { actor: 'api:admin', action: 'rollout.cancel' },
    ]);
    assert.deepEqual(api.failures(), []);
  });

  it('a plan without approval starts on submit; the shown hosts carry their agents host names', async (t) => {
    const api = await setup(t, 2);
    const r = (await json<{ rollout: RolloutJson }>(await api.call(api.tokens.alice, 'POST', '/rollouts', plan({ waves: { canary: { hosts: 2 } } })), 201)).rollout;
    const started = (await json<{ rollout: RolloutDetailJson }>(await api.call(api.tokens.alice, 'POST', `/rollouts/${r.id}/submit`), 200)).rollout;
    assert.equal(started.state, 'running');
    assert.deepEqual(started.hosts.map((h) => [h.hostname, h.state, h.step]).sort(), [
      ['web-1', 'sent', 'patch'],
      ['web-2', 'sent', 'patch'],
    ]);
    const shown = (await json<{ rollout: RolloutDetailJson }>(await api.call(api.tokens.viewer, 'GET', `/rollouts/${r.id}`), 200)).rollout;
    assert.deepEqual(shown.plan.action, { kind: 'patch', advisories: [BIND], reboot: 'never' });
    assert.deepEqual(shown.hostStates.sent, 2);
  });
});

describe('rollouts API: hostile and wrong requests', () => {
  const hostilePlans: [string, unknown, string][] = [
    ['a SQL name', plan({ name: "x'; DROP TABLE rollouts; --" }), 'DROP TABLE'],
    ['an HTML name', plan({ name: '<script>alert(1)</script>' }), '<script>'],
    ['a shell package name', plan({ action: { kind: 'patch', packages: [{ name: '$(reboot)', version: null }] } }), '$(reboot)'],
    ['an option-looking package name', plan({ action: { kind: 'patch', packages: [{ name: '-oAPT::Get::AllowUnauthenticated=true', version: null }] } }), '-oAPT'],
    ['a hostile unknown field', { ...plan(), '<img src=x onerror=alert(1)>': 1 }, '<img'],
    ['a shell tag', plan({ target: { tags: ['web;rm -rf /'] } }), 'rm -rf'],
    // U+0000, which PostgreSQL's text cannot hold, in the plan's fields with a column or a JSON query of their own.
    ['a NUL in the name', plan({ name: 'web\u0000fleet' }), 'u0000'],
    ['a NUL in a tag', plan({ target: { tags: ['web\u0000'] } }), 'u0000'],
    ['a NUL in a package name', plan({ action: { kind: 'patch', packages: [{ name: 'bind\u0000', version: null }] } }), 'u0000'],
    ['an empty target', plan({ target: {} }), 'NOTHING-ECHOED'],
    ['a JSON string (not a plan, nor an id)', JSON.stringify(randomUUID()), 'NOTHING-ECHOED'],
    ['an array nested 50,000 deep', '['.repeat(50_000) + ']'.repeat(50_000), 'NOTHING-ECHOED'],
    ['null', 'null', 'NOTHING-ECHOED'],
  ];

  it('refuses each hostile plan with 400 PW_ERR_ROLLOUT_PLAN, echoes none of it, stores nothing', async (t) => {
    const api = await setup(t, 1);
    for (const [label, body, marker] of hostilePlans) {
      for (const path of ['/rollouts', '/rollouts/preview']) {
        await t.test(`${label} to POST ${path}`, async () => {
          const res = await api.call(api.tokens.alice, 'POST', path, body);
          const text = await res.clone().text();
          await errorOf(res, 400, 'PW_ERR_ROLLOUT_PLAN');
          assert.ok(!text.includes(marker), `echoed ${marker}: ${text.slice(0, 300)}`);
        });
      }
    }
    const list = await json<{ items: unknown[] }>(await api.call(api.tokens.viewer, 'GET', '/rollouts'), 200);
    assert.deepEqual(list.items, [], 'the rollouts table is there and empty');
    assert.deepEqual(api.failures(), []);
  });

  it('refuses bodies that are not JSON plans, and oversized ones as they arrive', async (t) => {
    const api = await setup(t, 1);
    const good = JSON.stringify(plan());
    const cases: [string, () => Promise<Response>, number, string][] = [
      ['text/plain', () => api.call(api.tokens.alice, 'POST', '/rollouts', good, { 'content-type': 'text/plain' }), 400, 'PW_ERR_BAD_REQUEST'],
      ['a form', () => api.call(api.tokens.alice, 'POST', '/rollouts', 'name=x', { 'content-type': 'application/x-www-form-urlencoded' }), 400, 'PW_ERR_BAD_REQUEST'],
      ['no content type', () => fetch(`${api.tc.collector.url}/api/v1/rollouts`, { method: 'POST', headers: { authorization: `Bearer ${api.tokens.alice}` }, body: new Blob([good]) }), 400, 'PW_ERR_BAD_REQUEST'],
      ['broken JSON', () => api.call(api.tokens.alice, 'POST', '/rollouts', '{"name": "x",', {}), 400, 'PW_ERR_BAD_REQUEST'],
      ['binary garbage', () => api.call(api.tokens.alice, 'POST', '/rollouts', '\u0000\uffff\u0001PK\u0003\u0004', {}), 400, 'PW_ERR_BAD_REQUEST'],
      ['2 MiB with a length', () => api.call(api.tokens.alice, 'POST', '/rollouts', JSON.stringify({ ...plan(), pad: 'x'.repeat(2 * MAX_PLAN_BYTES) })), 413, 'PW_ERR_INPUT_TOO_LARGE'],
      [
        '2 MiB chunked, no length',
        () => {
          const chunk = new TextEncoder().encode('x'.repeat(64 * 1024));
          let sent = 0;
          const stream = new ReadableStream<Uint8Array>({
            pull(ctl) {
              if (sent++ < 32) ctl.enqueue(chunk);
              else ctl.close();
            },
          });
          return fetch(`${api.tc.collector.url}/api/v1/rollouts/preview`, {
            method: 'POST',
            headers: { authorization: `Bearer ${api.tokens.alice}`, 'content-type': 'application/json' },
            body: stream,
            duplex: 'half',
          });
        },
        413,
        'PW_ERR_INPUT_TOO_LARGE',
      ],
    ];
    for (const [label, send, status, code] of cases) {
      await t.test(`${label} -> ${status} ${code}`, async () => {
        await errorOf(await send(), status, code);
      });
    }
    assert.deepEqual(api.failures(), []);
  });

  it('answers ids that are not rollout ids with 404 PW_ERR_ROLLOUT_NOT_FOUND without echoing them', async (t) => {
    const api = await setup(t, 1);
    const ids = ['not-a-uuid', "1' OR '1'='1", '<script>alert(1)</script>', '../../audit', randomUUID(), '00000000-0000-0000-0000-000000000000'];
    for (const raw of ids) {
      const path = `/rollouts/${encodeURIComponent(raw)}`;
      for (const [method, suffix] of [['GET', ''], ['GET', '/preview'], ['POST', '/approve'], ['POST', '/cancel']] as const) {
        await t.test(`${method} ${path}${suffix}`, async () => {
          const res = await api.call(api.tokens.alice, method, `${path}${suffix}`);
          const text = await res.clone().text();
          await errorOf(res, 404, 'PW_ERR_ROLLOUT_NOT_FOUND');
          if (!/^[0-9a-f-]{36}$/.test(raw)) assert.ok(!text.includes(raw), text);
        });
      }
    }
    assert.deepEqual(api.failures(), []);
  });

  it('checks tokens and roles before anything else', async (t) => {
    const api = await setup(t, 1);
    const id = (await json<{ rollout: RolloutJson }>(await api.call(api.tokens.alice, 'POST', '/rollouts', plan()), 201)).rollout.id;
    const cases: [string, string | null, string, string, number, string][] = [
      ['no token lists', null, 'GET', '/rollouts', 401, 'PW_ERR_UNAUTHENTICATED'],
      ['a wrong token creates', 'pwa_' + 'A'.repeat(43), 'POST', '/rollouts', 401, 'PW_ERR_UNAUTHENTICATED'],
      ['a viewer creates', api.tokens.viewer, 'POST', '/rollouts', 403, 'PW_ERR_FORBIDDEN'],
      ['a viewer previews a plan', api.tokens.viewer, 'POST', '/rollouts/preview', 403, 'PW_ERR_FORBIDDEN'],
      ['a viewer submits', api.tokens.viewer, 'POST', `/rollouts/${id}/submit`, 403, 'PW_ERR_FORBIDDEN'],
      ['a viewer cancels', api.tokens.viewer, 'POST', `/rollouts/${id}/cancel`, 403, 'PW_ERR_FORBIDDEN'],
      ['an unknown action', api.tokens.alice, 'POST', `/rollouts/${id}/explode`, 404, 'PW_ERR_NOT_FOUND'],
      ['a query parameter', api.tokens.viewer, 'GET', '/rollouts?state=running', 400, 'PW_ERR_BAD_REQUEST'],
      ['approve a draft', api.tokens.bob, 'POST', `/rollouts/${id}/approve`, 409, 'PW_ERR_ROLLOUT_STATE'],
    ];
    for (const [label, token, method, path, status, code] of cases) {
      await t.test(`${label}: ${status} ${code}`, async () => {
        await errorOf(await api.call(token, method, path, method === 'POST' ? plan() : undefined), status, code);
      });
    }
    const r = (await json<{ rollout: RolloutJson }>(await api.call(api.tokens.viewer, 'GET', `/rollouts/${id}`), 200)).rollout;
    assert.equal(r.state, 'draft', 'nothing moved it');
  });
});

describe('dashboard: rollouts pages', () => {
  const HOSTILE = '<script>alert(1)</script>';

  async function login(api: Api, token: string): Promise<string> {
    const res = await fetch(`${api.tc.collector.url}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: api.tc.collector.url },
      body: new URLSearchParams({ token }),
    });
    assert.equal(res.status, 303);
    return (res.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  }

  function page(api: Api, path: string, cookie?: string): Promise<Response> {
    return fetch(`${api.tc.collector.url}${path}`, { redirect: 'manual', headers: cookie === undefined ? {} : { cookie } });
  }

  it('lists a halted rollout with its waves and reason, and shows its hosts, with a hostile name and agent message escaped', async (t) => {
    const api = await setup(t, 2);
    const r = (await json<{ rollout: RolloutJson }>(await api.call(api.tokens.alice, 'POST', '/rollouts', plan()), 201)).rollout;
    const started = (await json<{ rollout: RolloutDetailJson }>(await api.call(api.tokens.alice, 'POST', `/rollouts/${r.id}/submit`), 200)).rollout;
    const canary = started.hosts.find((h) => h.state === 'sent') ?? assert.fail();
    const agent = api.agents.find((a) => a.agentId === canary.agentId) ?? assert.fail();
    const frame = await agent.client.expect('instruction');
    const ins = InstructionSchema.parse(JSON.parse(frame.payload));
    // The agent's own words reach the page: its result message is input like any other.
    const result = { ...resultFor(ins.id, 'failed', new Date()), message: `dnf said ${HOSTILE}` };
    const resultId = randomUUID();
    agent.client.send({ type: 'result', id: resultId, result });
    assert.equal((await agent.client.expect('ack')).id, resultId);
    assert.equal((await api.tc.collector.rollouts.get(r.id)).state, 'halted');
    // A name the plan grammar never lets in, written straight into the row: the page's own escaping must hold.
    api.tc.collector.sqlite!.db.prepare('UPDATE rollouts SET name = ? WHERE id = ?').run(HOSTILE, r.id);

    const cookie = await login(api, api.tokens.viewer);
    const list = await page(api, '/rollouts', cookie);
    assert.equal(list.status, 200);
    assert.equal(list.headers.get('content-security-policy'), DASHBOARD_CSP);
    const listHtml = await list.text();
    assert.ok(!listHtml.includes(HOSTILE), 'the name is escaped');
    const row = /<table id="rollouts">[\s\S]*?<tbody>\s*<tr>([\s\S]*?)<\/tr>/.exec(listHtml)?.[1] ?? assert.fail(listHtml);
    const cells = [...row.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((m) => (m[1] ?? '').replace(/<[^>]+>/g, '').trim());
    assert.equal(cells[0], '&lt;script&gt;alert(1)&lt;/script&gt;');
    assert.deepEqual(cells.slice(1, 5), ['halted', 'patch', '1/2', '0/2 succeeded, 1 failed']);
    assert.match(cells[5] ?? '', /^gate after wave 0: 1 of 1 hosts failed, refused, expired or did not come back \(limit 0\)$/);
    assert.match(row, new RegExp(`<a href="/rollouts/${r.id}">`));

    const detail = await page(api, `/rollouts/${r.id}`, cookie);
    assert.equal(detail.status, 200);
    const detailHtml = await detail.text();
    assert.ok(!detailHtml.includes(HOSTILE), 'neither the name nor the agent message is markup');
    assert.ok(detailHtml.includes('<h1>&lt;script&gt;alert(1)&lt;/script&gt;</h1>'));
    assert.ok(detailHtml.includes('PW_ERR_COMMAND_FAILED: dnf said &lt;script&gt;alert(1)&lt;/script&gt;'));
    const hostRows = /<table id="rollout-hosts">[\s\S]*?<tbody>([\s\S]*?)<\/tbody>/.exec(detailHtml)?.[1] ?? assert.fail();
    assert.equal([...hostRows.matchAll(/<tr>/g)].length, 2);
    assert.match(hostRows, new RegExp(`<a href="/hosts/${agent.agentId}">${agent.hostname}</a>`));

    const cases: [string, string | undefined, number][] = [
      ['/rollouts/not-a-uuid', cookie, 404],
      [`/rollouts/${randomUUID()}`, cookie, 404],
      ['/rollouts', undefined, 303],
      [`/rollouts/${r.id}`, undefined, 303],
    ];
    for (const [path, c, status] of cases) {
      await t.test(`GET ${path} ${c === undefined ? 'without' : 'with'} a session -> ${status}`, async () => {
        const res = await page(api, path, c);
        assert.equal(res.status, status);
        if (status === 303) assert.match(res.headers.get('location') ?? '', /^\/login\?next=/);
        await res.body?.cancel();
      });
    }
    assert.deepEqual(api.failures(), []);
  });
});
