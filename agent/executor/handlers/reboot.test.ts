import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { RebootInstruction } from '../../../shared/instructions.ts';
import type { HandlerContext } from '../handler.ts';
import { fixture, patchInstruction } from '../../../shared/testing/executor-fixtures.ts';
import { currentRebootState, rebootArgv, rebootHandler } from './reboot.ts';

function reboot(overrides: Partial<RebootInstruction>): RebootInstruction {
  const patch = patchInstruction(fixture());
  if (patch.kind !== 'patch') throw new Error('executor-fixtures made no patch instruction');
  const { packages: _p, advisories: _a, ...common } = patch;
  return { ...common, kind: 'reboot', onlyIfNeeded: false, ...overrides };
}

async function emptyRoot(t: { after: (f: () => Promise<void>) => void }): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'pw-reboot-root-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  return root;
}

const ctx = (root: string, dryRun: boolean): HandlerContext => ({ root, dryRun, timeoutMs: 10_000, signal: new AbortController().signal });
const ID = '0b6f7d1e-6a8c-4a39-9d6b-2f3c1e7a9b10';

describe('rebootArgv', () => {
  const cases: [string | null, string[]][] = [
    [null, ['systemctl', `--message=patchwarden: instruction ${ID}`, 'reboot']],
    ['wave-2', ['systemctl', `--message=patchwarden: instruction ${ID} (rollout wave-2)`, 'reboot']],
  ];
  for (const [rolloutId, argv] of cases) {
    it(`rollout ${rolloutId ?? 'none'}`, () => {
      assert.deepEqual(rebootArgv({ id: ID, rolloutId }), argv);
    });
  }
});

describe('reboot handler (never reboots this machine: dry runs, or a chroot without systemctl)', () => {
  it('dry run, unconditional: runs nothing, says what it would run', async (t) => {
    const out = await rebootHandler().run(reboot({ id: ID }), ctx(await emptyRoot(t), true));
    assert.equal(out.status, 'succeeded');
    assert.deepEqual(out.commands, []);
    assert.equal(out.message, `dry run: would run systemctl --message=patchwarden: instruction ${ID} reboot (asked to reboot unconditionally)`);
  });
  it('dry run, only if needed, on this host: runs nothing whatever the state', async () => {
    const state = await currentRebootState('/');
    const out = await rebootHandler().run(reboot({ onlyIfNeeded: true }), ctx('/', true));
    assert.equal(out.status, 'succeeded');
    assert.deepEqual(out.commands, []);
    assert.match(out.message, state.required ? /^dry run: would run systemctl / : /^no reboot needed any more/);
  });
  it('only if needed, a root with no reboot reason: succeeded, nothing run', async (t) => {
    const root = await emptyRoot(t);
    assert.equal((await currentRebootState(root)).required, false);
    const out = await rebootHandler().run(reboot({ onlyIfNeeded: true }), ctx(root, false));
    assert.deepEqual([out.status, out.code, out.commands], ['succeeded', null, []]);
  });
  it('only if needed, needed (a newer kernel installed), dry run: names the reason', async (t) => {
    const reasons = [{ kind: 'kernel-update' as const, detail: 'running 6.1.0-18-amd64, newest installed 6.1.0-56-amd64' }];
    const out = await rebootHandler({ state: () => Promise.resolve({ required: true, reasons }) }).run(reboot({ onlyIfNeeded: true }), ctx(await emptyRoot(t), true));
    assert.equal(out.status, 'succeeded');
    assert.deepEqual(out.commands, []);
    assert.match(out.message, /\(kernel-update: running 6\.1\.0-18-amd64, newest installed 6\.1\.0-56-amd64\)$/);
  });
  it('only if needed, the reboot state unreadable: failed, nothing run', async (t) => {
    const out = await rebootHandler({ state: () => Promise.reject(new Error('EACCES: /run/reboot-required')) }).run(reboot({ onlyIfNeeded: true }), ctx(await emptyRoot(t), false));
    assert.deepEqual([out.status, out.code, out.commands], ['failed', 'PW_ERR_SOURCE_UNAVAILABLE', []]);
    assert.match(out.message, /cannot be read, so no reboot: EACCES/);
  });
  it('for real in a chroot without systemctl: failed, PW_ERR_COMMAND_NOT_FOUND', { skip: process.getuid?.() !== 0 ? 'chroot needs root' : false }, async (t) => {
    const root = await emptyRoot(t);
    const out = await rebootHandler().run(reboot({ id: ID }), ctx(root, false));
    assert.equal(out.status, 'failed');
    assert.equal(out.code, 'PW_ERR_COMMAND_NOT_FOUND');
    const [run] = out.commands;
    assert.ok(run !== undefined && out.commands.length === 1);
    assert.deepEqual(run.argv, ['chroot', root, ...rebootArgv({ id: ID, rolloutId: null })]);
    assert.equal(run.exitCode, 127);
    assert.match(out.message, /^systemctl is not installed/);
  });
});
