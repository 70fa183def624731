import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PatchTarget } from '../../../shared/instructions.ts';
import { apkPlan } from './apk.ts';

describe('apkPlan argv', () => {
  const base = ['apk', 'add', '--no-interactive', '--update-cache', '--upgrade'];
  const cases: [string, PatchTarget[], boolean, string[]][] = [
    ['busybox newest', [{ name: 'busybox', version: null }], false, [...base, '--', 'busybox']],
    ['busybox newest, dry run', [{ name: 'busybox', version: null }], true, [...base, '--simulate', '--', 'busybox']],
    ['openssl exact', [{ name: 'openssl', version: '3.3.2-r1' }], false, [...base, '--', 'openssl=3.3.2-r1']],
    ['openssh exact (p suffix), dry run', [{ name: 'openssh', version: '9.9_p1-r2' }], true, [...base, '--simulate', '--', 'openssh=9.9_p1-r2']],
  ];
  for (const [label, packages, dryRun, argv] of cases) {
    it(label, () => {
      const plan = apkPlan({ packages }, dryRun);
      assert.ok('steps' in plan);
      assert.deepEqual(plan.steps.map((s) => s.argv), [argv]);
    });
  }
  for (const [name, version] of [['-X', null], ['Busybox', null], ['foo;id', null], ['$(id)', null], ['a b', null], ['../x', null], ['', null], ['openssl', '10.0.11-0']] as const) {
    it(`refuses ${JSON.stringify(name)} ${version ?? ''}`, () => {
      const plan = apkPlan({ packages: [{ name, version }] }, false);
      assert.ok('refused' in plan && plan.refused.code === 'PW_ERR_UNSAFE_PACKAGE_NAME');
    });
  }
});
