/**
 * `rollout` through the real CLI (node --import tsx collector/main.ts) against the database
 * of a real collector that serves it at the same time, with real agents connected over
 * WebSocket, the AlmaLinux 9 OSV export in the store and the collector's own key on disk.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { InstructionSchema, instructionSignatureValid } from '../../shared/instructions.ts';
import { dataPath } from '../../shared/testing/data.ts';
import { importFeedPath } from '../services/feeds/store-import.ts';
import { startCollector, type TestCollector } from '../../shared/testing/collector-harness.ts';
import { TestAgent } from '../../shared/testing/fake-agent.ts';
import type { Preview } from '../services/rollouts/engine.ts';
import { BIND, bindPlan as plan, hostInventory } from '../../shared/testing/rollout-bench.ts';
import type { KeyPair } from '../../shared/signing.ts';
import type { RolloutDetailJson, RolloutJson } from '../http/views.ts';
import { KEY_FILE } from '../signing-key.ts';
import { asyncAdvisories } from '../../shared/testing/store-fixtures.ts';

const ROOT = join(import.meta.dirname, '..', '..');
/** ALSA-2026:54510 fixes bind 9.16.23 (bind-libs, bind-license, bind-utils in the RHEL 9.5 image). */
const ME = `cli:${userInfo().username}`;

function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', join(ROOT, 'collector', 'main.ts'), 'rollout', ...args], { cwd: ROOT, timeout: 60_000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

interface Fleet {
  tc: TestCollector;
  db: string;
  agents: { client: TestAgent; agentId: string; keys: KeyPair; hostname: string }[];
  writePlan: (name: string, body: unknown) => Promise<string>;
}

/** A serving collector with the AlmaLinux 9 OSV export, and `n` real agents (RHEL 9.5 rpms) tagged `web`. */
async function fleet(t: TestContext, n = 3): Promise<Fleet> {
  // A fast tick: how instructions a CLI process enqueued reach the agents already connected.
  const tc = await startCollector(t, { rolloutTickMs: 100 });
  await importFeedPath(asyncAdvisories(tc.collector.sqlite!.db), dataPath('osv', 'almalinux9.osv.jsonl.gz'));
  await tc.collector.findings.load();
  const agents: Fleet['agents'] = [];
  for (let i = 1; i <= n; i++) {
    const hostname = `web-${i}`;
    const a = await tc.agent(hostname);
    await a.client.report(hostInventory({ hostname }));
    await tc.collector.store.agents.setTags(a.agentId, ['web'], 'cli:test', new Date());
    agents.push({ ...a, hostname });
  }
  const writePlan = async (name: string, body: unknown): Promise<string> => {
    const path = join(tc.dir, name);
    await writeFile(path, typeof body === 'string' ? body : JSON.stringify(body));
    return path;
  };
  return { tc, db: tc.dbPath, agents, writePlan };
}

function auditOf(f: Fleet, id: string): { actor: string; action: string }[] {
  return f.tc.collector.sqlite!.db.prepare('SELECT actor, action FROM audit WHERE target = ? ORDER BY id').all(`rollout:${id}`) as { actor: string; action: string }[];
}

describe('rollout CLI beside a serving collector', () => {
  it('previews, creates, submits, refuses the creator as approver, approves, shows, pauses and cancels; audited with each actor', async (t) => {
    const f = await fleet(t);
    const planFile = await f.writePlan('plan.json', plan({ requireApproval: true, fourEyes: true }));

    const pv = await cli('preview', '--db', f.db, '--plan', planFile);
    assert.equal(pv.code, 0, pv.stderr);
    const lines = pv.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^HOST +WAVE +ACTION +PACKAGES \(FROM->TO\) +FINDINGS RESOLVED +REBOOT$/);
    const rows = lines.slice(1, 4).map((l) => l.split(/ {2,}/));
    assert.deepEqual(rows.map((r) => r[0]).sort(), ['web-1', 'web-2', 'web-3']);
    assert.deepEqual(rows.map((r) => r[1]).sort(), ['0', '1', '1']);
    for (const r of rows) {
      assert.equal(r[2], 'patch');
      assert.match(r[3] ?? '', /^bind-libs 32:9\.16\.23-[^ ]+->32:9\.16\.23-[^ ]+, bind-license 32:9\.16\.23-.*, bind-utils 32:9\.16\.23-/);
      assert.match(r[4] ?? '', new RegExp(BIND));
      assert.equal(r[5], 'no');
    }
    assert.match(lines[4] ?? '', /^total: 3 hosts in 2 waves \(1, 2\), 9 package upgrades, \d+ findings resolved, 0 reboots needed, 0 avoided by live patching, 0 skipped$/);

    const created = await cli('create', '--db', f.db, '--plan', planFile, '--actor', 'alice');
    assert.equal(created.code, 0, created.stderr);
    const id = created.stdout.trim();
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.match(created.stderr, /created as a draft by alice/);

    const listed = await cli('list', '--db', f.db, '--json');
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(
      (JSON.parse(listed.stdout) as RolloutJson[]).map((r) => [r.id, r.state, r.createdBy]),
      [[id, 'draft', 'alice']],
    );

    const submitted = await cli('submit', '--db', f.db, '--id', id, '--actor', 'alice');
    assert.deepEqual([submitted.code, submitted.stdout], [0, `rollout ${id}: draft -> awaiting-approval (submit by alice)\n`]);
    const selfApproved = await cli('approve', '--db', f.db, '--id', id, '--actor', 'alice');
    assert.equal(selfApproved.code, 1);
    assert.match(selfApproved.stderr, /needs a second person: alice created or submitted it \(PW_ERR_ROLLOUT_APPROVAL\)/);

    const approved = await cli('approve', '--db', f.db, '--id', id);
    assert.deepEqual([approved.code, approved.stdout], [0, `rollout ${id}: awaiting-approval -> running (approve by ${ME})\n`], approved.stderr);

    // The serving collector sees the CLI's rows at once: the engine keeps nothing in memory.
    const served = await f.tc.collector.rollouts.get(id);
    assert.deepEqual([served.state, served.approvedBy], ['running', ME]);
    const canary = served.hosts.find((h) => h.state === 'sent') ?? assert.fail('the canary was sent its instruction');
    const pending = await f.tc.collector.outbox.pendingFor(canary.agentId, new Date());
    assert.equal(pending.length, 1);
    const entry = pending[0] ?? assert.fail();
    assert.ok(instructionSignatureValid(entry, f.tc.collector.publicKey), 'signed with the collector key from beside the database');
    assert.equal(InstructionSchema.parse(JSON.parse(entry.payload)).agentId, canary.agentId);
    // This process cannot reach the collector's open connections: the serving collector's
    // tick finds the unsent entry and pushes it to the canary, still connected.
    const agent = f.agents.find((a) => a.agentId === canary.agentId) ?? assert.fail();
    const frame = await agent.client.expect('instruction', 10_000);
    assert.deepEqual([frame.payload, frame.signature], [entry.payload, entry.signature]);

    const shown = await cli('show', '--db', f.db, '--id', id, '--json');
    assert.equal(shown.code, 0, shown.stderr);
    const detail = JSON.parse(shown.stdout) as RolloutDetailJson;
    assert.deepEqual(detail.hostStates, { total: 3, pending: 2, sent: 1, succeeded: 0, failed: 0, refused: 0, expired: 0, 'not-back': 0 });
    assert.equal(detail.hosts.find((h) => h.state === 'sent')?.hostname, agent.hostname);
    const shownText = await cli('show', '--db', f.db, '--id', id);
    assert.match(shownText.stdout, new RegExp(`^rollout ${id}: bind week 48\nstate: running\n`));
    assert.match(shownText.stdout, /approval: required, four eyes/);
    assert.match(shownText.stdout, /waves: 1 of 2 sent; hosts: 0\/3 ok, 1 sent/);
    assert.match(shownText.stdout, new RegExp(`${agent.hostname} +0 +sent +patch +- *\n`));

    const stored = await cli('preview', '--db', f.db, '--id', id, '--json');
    assert.equal(stored.code, 0, stored.stderr);
    assert.deepEqual((JSON.parse(stored.stdout) as Preview).waves, [1, 2]);

    const paused = await cli('pause', '--db', f.db, '--id', id, '--actor', 'bob', '--json');
    assert.deepEqual(JSON.parse(paused.stdout), { id, from: 'running', state: 'paused', actor: 'bob' });
    const cancelled = await cli('cancel', '--db', f.db, '--id', id, '--actor', 'carol');
    assert.equal(cancelled.stdout, `rollout ${id}: paused -> cancelled (cancel by carol)\n`);

    assert.deepEqual(auditOf(f, id), [
      { actor: 'alice', action: 'rollout.create' },
      { actor: 'alice', action: 'rollout.submit' },
      { actor: ME, action: 'rollout.approve' },
      { actor: ME, action: 'rollout.start' },
      { actor: ME, action: 'rollout.targets' },
      { actor: 'system', action: 'rollout.wave-start' },
      { actor: 'bob', action: 'rollout.pause' },
      { actor: 'carol', action: 'rollout.cancel' },
    ]);
    const table = await cli('list', '--db', f.db);
    assert.match(table.stdout, new RegExp(`^ID +STATE +ACTION +WAVES +HOSTS +CREATED +BY +NAME\n${id}  cancelled +patch +1/2 +0/3 ok, 1 sent +\\S+ +alice +bind week 48\n$`));
  });

  it('a submit that cannot sign (no collector key) fails with nothing changed', async (t) => {
    const f = await fleet(t, 1);
    const id = (await cli('create', '--db', f.db, '--plan', await f.writePlan('p.json', plan()))).stdout.trim();
    await rename(join(f.tc.dir, KEY_FILE), join(f.tc.dir, 'moved.key'));
    const r = await cli('submit', '--db', f.db, '--id', id);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot read the collector key .*collector\.key to sign with.*\(PW_ERR_SOURCE_UNAVAILABLE\)/);
    const after = await f.tc.collector.rollouts.get(id);
    assert.deepEqual([after.state, after.hosts.length, (await f.tc.collector.outbox.forRollout(id)).length], ['draft', 0, 0], 'the transaction rolled back');
    assert.deepEqual(auditOf(f, id).map((a) => a.action), ['rollout.create']);
  });
});

describe('rollout CLI: bad input', () => {
  it('refuses each with its exit code and code, echoing nothing hostile', async (t) => {
    const f = await fleet(t, 1);
    const draft = (await cli('create', '--db', f.db, '--plan', await f.writePlan('ok.json', plan()))).stdout.trim();
    const hostileName = await f.writePlan('sql.json', plan({ name: "x'; DROP TABLE rollouts; --" }));
    const html = await f.writePlan('html.json', { ...plan(), '<script>alert(1)</script>': true });
    const shell = await f.writePlan('shell.json', plan({ action: { kind: 'patch', packages: [{ name: '$(reboot)', version: null }] } }));
    const option = await f.writePlan('option.json', plan({ action: { kind: 'patch', packages: [{ name: '-oAPT::Get::AllowUnauthenticated=true', version: null }] } }));
    const notJson = await f.writePlan('garbage.json', '\u0000\u0001PK\u0003\u0004 not json');
    const idString = await f.writePlan('string.json', JSON.stringify(draft));
    const huge = await f.writePlan('huge.json', JSON.stringify({ ...plan(), pad: 'x'.repeat(1024 * 1024) }));
    const cases: [string, string[], number, string, string | null][] = [
      ['no subcommand', [], 2, 'PW_ERR_USAGE', null],
      ['an unknown subcommand', ['explode', '--db', f.db], 2, 'PW_ERR_USAGE', null],
      ['create without --plan', ['create', '--db', f.db], 2, 'PW_ERR_USAGE', null],
      ['an unknown option', ['list', '--db', f.db, '--state', 'running'], 2, 'PW_ERR_USAGE', null],
      ['a missing plan file', ['create', '--db', f.db, '--plan', join(f.tc.dir, 'nope.json')], 1, 'PW_ERR_SOURCE_UNAVAILABLE', null],
      ['a plan that is not JSON', ['create', '--db', f.db, '--plan', notJson], 1, 'PW_ERR_MALFORMED_INPUT', null],
      ['a plan over 1 MiB', ['create', '--db', f.db, '--plan', huge], 1, 'PW_ERR_INPUT_TOO_LARGE', null],
      ['a SQL plan name', ['create', '--db', f.db, '--plan', hostileName], 1, 'PW_ERR_ROLLOUT_PLAN', 'DROP TABLE'],
      ['an HTML field name', ['preview', '--db', f.db, '--plan', html], 1, 'PW_ERR_ROLLOUT_PLAN', '<script>'],
      ['a shell package name', ['create', '--db', f.db, '--plan', shell], 1, 'PW_ERR_ROLLOUT_PLAN', '$(reboot)'],
      ['an option-looking package name', ['preview', '--db', f.db, '--plan', option], 1, 'PW_ERR_ROLLOUT_PLAN', '-oAPT'],
      ['a plan file holding a rollout id', ['preview', '--db', f.db, '--plan', idString], 1, 'PW_ERR_ROLLOUT_PLAN', null],
      ['preview with --plan and --id', ['preview', '--db', f.db, '--plan', shell, '--id', draft], 2, 'PW_ERR_USAGE', null],
      ['an id that is not a uuid', ['show', '--db', f.db, '--id', "1' OR '1'='1"], 2, 'PW_ERR_USAGE', "'1'='1"],
      ['an unknown rollout', ['approve', '--db', f.db, '--id', randomUUID()], 1, 'PW_ERR_ROLLOUT_NOT_FOUND', null],
      ['a shell actor', ['submit', '--db', f.db, '--id', draft, '--actor', 'x;rm -rf /'], 2, 'PW_ERR_USAGE', 'rm -rf'],
      ['resume a draft', ['resume', '--db', f.db, '--id', draft], 1, 'PW_ERR_ROLLOUT_STATE', null],
      ['a database that does not exist', ['list', '--db', join(f.tc.dir, 'none.db')], 1, 'PW_ERR_STORE', null],
    ];
    for (const [label, args, code, errCode, marker] of cases) {
      await t.test(`${label}: exit ${code} ${errCode}`, async () => {
        const r = await cli(...args);
        assert.equal(r.code, code, r.stderr);
        assert.equal(r.stdout, '');
        assert.match(r.stderr, new RegExp(`\\(${errCode}\\)`));
        if (marker !== null) assert.ok(!r.stderr.includes(marker), r.stderr);
      });
    }
    const left = await f.tc.collector.rollouts.list();
    assert.deepEqual(left.map((r) => [r.id, r.state]), [[draft, 'draft']], 'nothing else was stored or moved');
  });
});
