import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it, type TestContext } from 'node:test';
import { collectInventory } from '../../agent/inventory/inventory.ts';
import { inventoryHash } from '../../shared/inventory-hash.ts';
import type { Inventory } from '../../shared/protocol.ts';
import { generateKeyPair } from '../../shared/signing.ts';
import { runCaptured } from '../../shared/testing/capture.ts';
import { dataPath } from '../../shared/testing/data.ts';
import { inventoryOf, rhel95Packages } from '../../shared/testing/correlate-fixtures.ts';
import { importFeedPath } from '../services/feeds/store-import.ts';
import { openDatabase } from '../store/db.ts';
import { storeOn } from '../store/store.ts';
import { agentCommand } from './agent.ts';
import { hostsCommand } from './hosts.ts';
import { parseDuration, tokenCommand } from './token.ts';
import { asyncAdvisories } from '../../shared/testing/store-fixtures.ts';

async function tempDb(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'c.db');
  openDatabase(path).close();
  return path;
}

let thisHost: Inventory;
before(async () => {
  thisHost = await collectInventory();
});

describe('parseDuration', () => {
  const ok: [string, number][] = [
    ['90s', 90_000],
    ['30m', 1_800_000],
    ['24h', 86_400_000],
    ['7d', 604_800_000],
    ['366d', 366 * 86_400_000],
  ];
  for (const [text, ms] of ok) {
    it(`${text} -> ${ms} ms`, () => {
      assert.equal(parseDuration(text), ms);
    });
  }
  for (const text of ['0h', '367d', '24', 'h', '1.5h', '-1h', '24H', '24h ', '99999999s', '']) {
    it(`${JSON.stringify(text)} is refused with PW_ERR_USAGE`, () => {
      assert.throws(() => parseDuration(text), { code: 'PW_ERR_USAGE' });
    });
  }
});

describe('token create', () => {
  it('prints the token alone on stdout, stores only its hash, audits it', async (t) => {
    const db = await tempDb(t);
    const out = await runCaptured(tokenCommand, ['create', '--db', db, '--uses', '3', '--ttl', '24h', '--note', 'rack 4']);
    assert.equal(out.code, 0);
    assert.match(out.stdout, /^[A-Za-z0-9_-]{43}\n$/);
    assert.match(out.stderr, /^enrollment token 1: 3 uses, expires \d{4}-\d\d-\d\dT.*; shown once, only its hash is stored\n$/);
    const token = out.stdout.trim();
    const conn = openDatabase(db, { readonly: true });
    const row = conn.prepare('SELECT hash, uses_left, note, created_by FROM enrollment_tokens').get() as { hash: string; uses_left: number; note: string; created_by: string };
    conn.close();
    assert.equal(row.hash, createHash('sha256').update(token).digest('hex'));
    assert.deepEqual([row.uses_left, row.note], [3, 'rack 4']);
    assert.match(row.created_by, /^cli:/);
  });

  it('--json gives id, token, uses, expiresAt, note', async (t) => {
    const db = await tempDb(t);
    const out = await runCaptured(tokenCommand, ['create', '--db', db, '--uses', '1', '--ttl', '30m', '--json']);
    const doc = JSON.parse(out.stdout) as Record<string, unknown>;
    assert.deepEqual(Object.keys(doc), ['id', 'token', 'uses', 'expiresAt', 'note']);
    assert.equal(doc.uses, 1);
    assert.equal(out.stderr, '');
  });

  const usage: [string, string[]][] = [
    ['no --uses', ['--ttl', '1h']],
    ['--uses 0', ['--uses', '0', '--ttl', '1h']],
    ['--uses abc', ['--uses', 'abc', '--ttl', '1h']],
    ['--uses 1000001', ['--uses', '1000001', '--ttl', '1h']],
    ['no --ttl', ['--uses', '1']],
    ['--ttl forever', ['--uses', '1', '--ttl', 'forever']],
    ['an unknown option', ['--uses', '1', '--ttl', '1h', '--role', 'admin']],
  ];
  for (const [name, args] of usage) {
    it(`${name}: PW_ERR_USAGE, no token stored`, async (t) => {
      const db = await tempDb(t);
      await assert.rejects(runCaptured(tokenCommand, ['create', '--db', db, ...args]), { code: 'PW_ERR_USAGE' });
      const conn = openDatabase(db, { readonly: true });
      assert.equal(conn.prepare('SELECT count(*) FROM enrollment_tokens').pluck().get(), 0);
      conn.close();
    });
  }

  it('token list (not a subcommand): PW_ERR_USAGE', async () => {
    await assert.rejects(runCaptured(tokenCommand, ['list']), { code: 'PW_ERR_USAGE' });
  });
});

describe('hosts and agent revoke', () => {
  async function fleetDb(t: TestContext) {
    const db = await tempDb(t);
    const conn = openDatabase(db);
    const fleet = storeOn(conn).async;
    const rhel = inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages(), { package: { name: 'kernel', source: 'kernel', version: '5.14.0-503.11.1.el9_5' } });
    rhel.reboot.required = true;
    const ids: string[] = [];
    for (const inv of [thisHost, rhel]) {
      const id = await fleet.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: inv.host.hostname, machineId: null, tokenId: null });
      await fleet.reports.ingest(id, randomUUID(), inventoryHash(inv), inv);
      ids.push(id);
    }
    conn.close();
    return { db, ids, rhel };
  }

  it('hosts prints one row per host: hostname, ecosystem, packages, kernel, reboot, last seen, agent id', async (t) => {
    const { db, ids, rhel } = await fleetDb(t);
    const out = await runCaptured(hostsCommand, ['--db', db]);
    assert.equal(out.code, 0);
    const lines = out.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^HOSTNAME +ECOSYSTEM +ASSESSMENT +PACKAGES +KERNEL +REBOOT +LAST SEEN +AGENT$/);
    assert.equal(lines.length, 3);
    const rhelLine = lines.find((l) => l.startsWith('test-1 '));
    assert.match(rhelLine ?? '', new RegExp(`^test-1 +AlmaLinux:9 +not-assessed +${rhel.packages.length} +6\\.18\\.44-custom +yes +\\d{4}-\\d\\d-\\d\\dT\\S+ +${ids[1]!}$`));
    const mine = lines.find((l) => l.startsWith(`${thisHost.host.hostname} `));
    assert.match(mine ?? '', new RegExp(` ${thisHost.packages.length} +${thisHost.kernel.release.replace(/[.+]/g, '\\$&')}${thisHost.kernel.package === null ? ' \\(unmanaged\\)' : ''} +${thisHost.reboot.required ? 'yes' : 'no'} `));
  });

  it('hosts --json is the host summaries', async (t) => {
    const { db, ids } = await fleetDb(t);
    const out = await runCaptured(hostsCommand, ['--db', db, '--json']);
    const hosts = JSON.parse(out.stdout) as { agentId: string; packageCount: number }[];
    assert.deepEqual(new Set(hosts.map((h) => h.agentId)), new Set(ids));
    assert.equal(hosts.find((h) => h.agentId === ids[0])?.packageCount, thisHost.packages.length);
  });

  it('hosts says which hosts no loaded feed covers: not-assessed until a feed naming AlmaLinux:9 is imported, stale past staleFeedHours', async (t) => {
    const { db, ids } = await fleetDb(t);
    const state = async (args: string[] = []) => {
      const out = await runCaptured(hostsCommand, ['--db', db, '--json', ...args]);
      const hosts = JSON.parse(out.stdout) as { agentId: string; assessment: { state: string; reason: string } }[];
      return hosts.find((h) => h.agentId === ids[1])?.assessment;
    };
    assert.equal((await state())?.state, 'not-assessed');
    assert.match((await state())?.reason ?? '', /no advisory feeds are loaded/);
    const conn = openDatabase(db);
    await importFeedPath(asyncAdvisories(conn), dataPath('osv', 'almalinux9.osv.jsonl.gz'), { now: new Date(Date.now() - 2 * 3600_000) });
    conn.close();
    assert.equal((await state())?.state, 'assessed');
    const dir = await mkdtemp(join(tmpdir(), 'pw-policy-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'policy.json'), JSON.stringify({ staleFeedHours: 1 }));
    assert.equal((await state(['--policy', join(dir, 'policy.json')]))?.state, 'stale');
  });

  it('hosts on an empty database prints the header only', async (t) => {
    const db = await tempDb(t);
    const out = await runCaptured(hostsCommand, ['--db', db]);
    assert.equal(out.stdout.split('\n').length, 2);
  });

  it('agent revoke: revoked once and audited, again says so, an unknown id exits 1, a non-uuid is a usage error', async (t) => {
    const { db, ids } = await fleetDb(t);
    const first = await runCaptured(agentCommand, ['revoke', '--db', db, ids[0]!]);
    assert.equal(first.code, 0);
    assert.match(first.stdout, new RegExp(`^agent ${ids[0]!} \\(${thisHost.host.hostname}\\) revoked\\n$`));
    const again = await runCaptured(agentCommand, ['revoke', '--db', db, ids[0]!]);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /was revoked already at /);
    const unknown = await runCaptured(agentCommand, ['revoke', '--db', db, randomUUID()]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no agent .* is enrolled/);
    await assert.rejects(runCaptured(agentCommand, ['revoke', '--db', db, "'; DROP TABLE agents;--"]), { code: 'PW_ERR_USAGE' });
    await assert.rejects(runCaptured(agentCommand, ['revoke', '--db', db]), { code: 'PW_ERR_USAGE' });
    await assert.rejects(runCaptured(agentCommand, ['delete', ids[0]!]), { code: 'PW_ERR_USAGE' });
    const conn = openDatabase(db, { readonly: true });
    const audit = conn.prepare("SELECT actor, target FROM audit WHERE action = 'agent.revoke'").all() as { actor: string; target: string }[];
    conn.close();
    assert.equal(audit.length, 1);
    assert.equal(audit[0]?.target, `agent:${ids[0]!}`);
    assert.match(audit[0].actor, /^cli:/);
  });
});
