import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FindingsSchema, type Findings, type Package } from '../../shared/protocol.ts';
import { dataPath } from '../../shared/testing/data.ts';
import { inventoryOf } from '../../shared/testing/correlate-fixtures.ts';
import { exceptionCommand } from './exception.ts';
import { feedCommand } from './feed.ts';
import { scanCommand } from './scan.ts';

function io(): { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream; stdin: NodeJS.ReadableStream; out: () => string } {
  const chunks: string[] = [];
  const sink = { write: (c: string) => chunks.push(c) > 0 } as unknown as NodeJS.WritableStream;
  return { stdout: sink, stderr: { write: () => true } as unknown as NodeJS.WritableStream, stdin: process.stdin, out: () => chunks.join('') };
}

const ssl = (v: string): Package[] => [
  { name: 'libssl3', version: v, arch: 'x86_64', source: 'openssl', sourceVersion: v },
  { name: 'libcrypto3', version: v, arch: 'x86_64', source: 'openssl', sourceVersion: v },
];
const ADV = 'Alpine:v3.21/openssl/3.3.2-r3';

describe('scan --db --record keeps first-seen and resolved per host; exceptions accept a risk until they expire', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pw-hist-'));
  after(() => rm(dir, { recursive: true, force: true }));
  const db = join(dir, 'c.db');
  assert.equal(await feedCommand(['import', '--db', db, dataPath('alpine-secdb', 'v3.21-main.json.gz')], io()), 0);

  async function scan(version: string, now: string): Promise<Findings> {
    const inv = join(dir, `inv-${version}.json`);
    await writeFile(inv, JSON.stringify(inventoryOf('Alpine:v3.21', 'apk', ssl(version))));
    const o = io();
    await scanCommand(['--inventory', inv, '--db', db, '--record', '--json', '--now', now], o);
    return FindingsSchema.parse(JSON.parse(o.out()));
  }
  const one = (doc: Findings) => doc.findings.find((f) => f.advisory === ADV);

  it('day 1: openssl 3.3.2-r1 lacks the r3 fix: open, first seen today', async () => {
    const f = one(await scan('3.3.2-r1', '2026-11-01T10:00:00Z'));
    assert.equal(f?.status, 'open');
    assert.equal(f.firstSeen, '2026-11-01T10:00:00.000Z');
  });

  it('day 5: still open, first seen stays day 1', async () => {
    const f = one(await scan('3.3.2-r1', '2026-11-05T10:00:00Z'));
    assert.equal(f?.firstSeen, '2026-11-01T10:00:00.000Z');
  });

  it('an exception with an owner and an expiry: accepted, no due date', async () => {
    assert.equal(await exceptionCommand(['add', '--db', db, '--advisory', ADV, '--package', 'openssl', '--fleet-wide', '--owner', 'sec-team', '--reason', 'WAF rule', '--expires', '2099-01-01'], io()), 0);
    const f = one(await scan('3.3.2-r1', '2026-11-06T10:00:00Z'));
    assert.equal(f?.status, 'accepted');
    assert.equal(f.due, null);
    assert.match(f.why, /accepted by sec-team until 2099-01-01: WAF rule/);
  });

  it('day 9: upgraded to r3: resolved, with first seen and resolved times (time to remediate)', async () => {
    const doc = await scan('3.3.2-r3', '2026-11-09T10:00:00Z');
    const f = one(doc);
    assert.equal(f?.status, 'resolved');
    assert.equal(f.firstSeen, '2026-11-01T10:00:00.000Z');
    assert.equal(f.resolvedAt, '2026-11-09T10:00:00.000Z');
    assert.equal(f.overdue, false);
  });

  it('day 12: the old version comes back: a new first seen', async () => {
    const f = one(await scan('3.3.2-r1', '2026-11-12T10:00:00Z'));
    assert.equal(f?.firstSeen, '2026-11-12T10:00:00.000Z');
  });

  const bad: [string, string[]][] = [
    ['an expiry in the past', ['--advisory', ADV, '--owner', 'x', '--reason', 'y', '--expires', '2001-01-01']],
    ['no owner', ['--advisory', ADV, '--reason', 'y', '--expires', '2099-01-01']],
    ['a hostile package name', ['--advisory', ADV, '--package', "openssl'; DROP TABLE exceptions;--", '--owner', 'x', '--reason', 'y', '--expires', '2099-01-01']],
    ['an advisory id with spaces', ['--advisory', 'ALSA 1 <b>', '--owner', 'x', '--reason', 'y', '--expires', '2099-01-01']],
    // Issue 10: the owner was free text, and a fleet-wide acceptance needed no asking.
    ['a free-text owner with markup', ['--advisory', ADV, '--host', 'web-1', '--owner', 'Bob <b>the</b> owner', '--reason', 'y', '--expires', '2099-01-01']],
    ['an owner that forges a log line', ['--advisory', ADV, '--host', 'web-1', '--owner', 'x\nexception 9: accepted by ceo', '--reason', 'y', '--expires', '2099-01-01']],
    ['an owner of 129 characters', ['--advisory', ADV, '--host', 'web-1', '--owner', 'a'.repeat(129), '--reason', 'y', '--expires', '2099-01-01']],
    ['a reason with terminal escapes', ['--advisory', ADV, '--host', 'web-1', '--owner', 'x', '--reason', 'ok\u001b[2J', '--expires', '2099-01-01']],
    ['neither --host nor --fleet-wide (every host, silently)', ['--advisory', ADV, '--owner', 'x', '--reason', 'y', '--expires', '2099-01-01']],
    ['both --host and --fleet-wide', ['--advisory', ADV, '--host', 'web-1', '--fleet-wide', '--owner', 'x', '--reason', 'y', '--expires', '2099-01-01']],
  ];
  for (const [name, args] of bad) {
    it(`exception add refuses ${name} with PW_ERR_USAGE`, async () => {
      await assert.rejects(exceptionCommand(['add', '--db', db, ...args], io()), { code: 'PW_ERR_USAGE' });
    });
  }

});
