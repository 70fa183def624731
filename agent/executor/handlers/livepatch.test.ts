import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { LivepatchTool } from '../../../shared/instructions.ts';
import { type LivepatchHost, livepatchPlan, pickProvider } from './livepatch.ts';

const RHEL: LivepatchHost = { kernelRelease: '5.14.0-503.11.1.el9_5.x86_64', rpmTool: 'dnf' };

describe('livepatchPlan argv', () => {
  const cases: [LivepatchTool, LivepatchHost, boolean, string[][]][] = [
    ['kernelcare', RHEL, false, [['kcarectl', '--update']]],
    ['kernelcare', RHEL, true, [['kcarectl', '--check']]],
    ['canonical-livepatch', RHEL, false, [['canonical-livepatch', 'refresh']]],
    ['canonical-livepatch', RHEL, true, [['canonical-livepatch', 'status', '--format', 'json']]],
    ['kpatch', RHEL, false, [['dnf', '-y', 'upgrade', '--', 'kpatch-patch = 5.14.0-503.11.1.el9_5.x86_64'], ['kpatch', 'list']]],
    ['kpatch', RHEL, true, [['dnf', '--assumeno', 'upgrade', '--', 'kpatch-patch = 5.14.0-503.11.1.el9_5.x86_64'], ['kpatch', 'list']]],
    ['kpatch', { kernelRelease: '3.10.0-1160.119.1.el7.x86_64', rpmTool: 'yum' }, false, [['yum', '-y', 'upgrade', '--', 'kpatch-patch = 3.10.0-1160.119.1.el7.x86_64'], ['kpatch', 'list']]],
  ];
  for (const [tool, host, dryRun, argv] of cases) {
    it(`${tool} on ${host.kernelRelease} (${host.rpmTool ?? 'no rpm tool'})${dryRun ? ' dry run' : ''}`, () => {
      const plan = livepatchPlan(tool, host, dryRun);
      assert.ok('steps' in plan);
      assert.deepEqual(plan.steps.map((s) => s.argv), argv);
    });
  }
  const refusals: [string, LivepatchHost, string][] = [
    ['kpatch without dnf or yum', { ...RHEL, rpmTool: null }, 'PW_ERR_NO_PACKAGE_MANAGER'],
    ['kpatch with a kernel release holding a space', { ...RHEL, kernelRelease: '5.14 -x' }, 'PW_ERR_NO_LIVEPATCH_PROVIDER'],
    ['kpatch with an option-looking kernel release', { ...RHEL, kernelRelease: '-5.14' }, 'PW_ERR_NO_LIVEPATCH_PROVIDER'],
  ];
  for (const [label, host, code] of refusals) {
    it(`refuses ${label}`, () => {
      const plan = livepatchPlan('kpatch', host, false);
      assert.ok('refused' in plan);
      assert.equal(plan.refused.code, code);
    });
  }
});

describe('pickProvider by the programs in the root', () => {
  const cases: [string, string[], LivepatchTool | null, LivepatchTool | 'refused'][] = [
    ['kcarectl present, any provider', ['usr/bin/kcarectl'], null, 'kernelcare'],
    ['snap canonical-livepatch, any provider', ['snap/bin/canonical-livepatch'], null, 'canonical-livepatch'],
    ['kpatch present, any provider', ['usr/sbin/kpatch'], null, 'kpatch'],
    ['kcarectl and kpatch, any: kernelcare first', ['usr/sbin/kpatch', 'usr/bin/kcarectl'], null, 'kernelcare'],
    ['kcarectl and kpatch, kpatch asked', ['usr/sbin/kpatch', 'usr/bin/kcarectl'], 'kpatch', 'kpatch'],
    ['kpatch asked, only kcarectl there', ['usr/bin/kcarectl'], 'kpatch', 'refused'],
    ['nothing there', [], null, 'refused'],
  ];
  for (const [label, programs, wanted, want] of cases) {
    it(label, async (t) => {
      const root = await mkdtemp(join(tmpdir(), 'pw-livepatch-root-'));
      t.after(() => rm(root, { recursive: true, force: true }));
      for (const p of programs) {
        await mkdir(join(root, p, '..'), { recursive: true });
        await writeFile(join(root, p), '#!/bin/sh\n');
        await chmod(join(root, p), 0o755);
      }
      const got = await pickProvider(root, wanted);
      if (want === 'refused') {
        assert.ok(typeof got !== 'string');
        assert.equal(got.status, 'refused');
        assert.equal(got.code, 'PW_ERR_NO_LIVEPATCH_PROVIDER');
        assert.deepEqual(got.commands, []);
      } else {
        assert.equal(got, want);
      }
    });
  }
});
