import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PatchTarget } from '../../../shared/instructions.ts';
import type { CommandRun } from './run.ts';
import { zypperOk, zypperPlan } from './zypper.ts';

describe('zypperPlan argv', () => {
  const refresh = ['zypper', '--non-interactive', 'refresh'];
  const openssl: PatchTarget = { name: 'openssl-3', version: '3.1.4-150600.5.15.1' };
  const curl: PatchTarget = { name: 'curl', version: null };
  const cases: [string, PatchTarget[], boolean, string[][]][] = [
    ['curl newest', [curl], false, [refresh, ['zypper', '--non-interactive', 'update', '--', 'curl']]],
    ['curl newest, dry run', [curl], true, [refresh, ['zypper', '--non-interactive', 'update', '--dry-run', '--', 'curl']]],
    ['openssl-3 exact', [openssl], false, [refresh, ['zypper', '--non-interactive', 'install', '--', 'openssl-3=3.1.4-150600.5.15.1']]],
    [
      'curl newest + openssl-3 exact, dry run',
      [curl, openssl],
      true,
      [refresh, ['zypper', '--non-interactive', 'update', '--dry-run', '--', 'curl'], ['zypper', '--non-interactive', 'install', '--dry-run', '--', 'openssl-3=3.1.4-150600.5.15.1']],
    ],
  ];
  for (const [label, packages, dryRun, argv] of cases) {
    it(label, () => {
      const plan = zypperPlan({ packages }, dryRun);
      assert.ok('steps' in plan);
      assert.deepEqual(plan.steps.map((s) => s.argv), argv);
    });
  }
  for (const [name, version] of [['-n', null], ['curl', '1.0;id'], ['$(id)', null], ['a b', null], ['../x', null], ['', null]] as const) {
    it(`refuses ${JSON.stringify(name)} ${version ?? ''}`, () => {
      const plan = zypperPlan({ packages: [curl, { name, version }] }, false);
      assert.ok('refused' in plan && plan.refused.code === 'PW_ERR_UNSAFE_PACKAGE_NAME');
    });
  }
});

describe('zypperOk: exit codes 100-103 are information (zypper(8))', () => {
  const run = (exitCode: number): CommandRun => ({ record: { argv: ['zypper'], exitCode, signal: null, durationMs: 1, outputTail: '' }, timedOut: false, aborted: false, notFound: false });
  for (const [code, ok] of [[0, true], [100, true], [102, true], [103, true], [104, false], [1, false], [4, false], [107, false]] as const) {
    it(`exit ${code} -> ${ok}`, () => {
      assert.equal(zypperOk(run(code)), ok);
    });
  }
});
