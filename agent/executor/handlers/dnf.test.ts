import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PatchTarget } from '../../../shared/instructions.ts';
import { declinedOk, type DnfTool, dnfPlan } from './dnf.ts';
import type { CommandRun } from './run.ts';

describe('dnfPlan argv', () => {
  const bind: PatchTarget = { name: 'bind', version: '32:9.16.23-24.el9_5.3' };
  const httpd: PatchTarget = { name: 'httpd', version: null };
  const cases: [DnfTool, PatchTarget[], boolean, string[][]][] = [
    ['dnf', [httpd], false, [['dnf', '--refresh', '-y', 'upgrade', '--', 'httpd']]],
    ['dnf', [httpd], true, [['dnf', '--refresh', '--assumeno', 'upgrade', '--', 'httpd']]],
    ['dnf', [bind, httpd], false, [['dnf', '--refresh', '-y', 'upgrade', '--', 'bind-32:9.16.23-24.el9_5.3', 'httpd']]],
    ['yum', [httpd], false, [['yum', 'clean', 'expire-cache'], ['yum', '-y', 'upgrade', '--', 'httpd']]],
    ['yum', [bind], true, [['yum', 'clean', 'expire-cache'], ['yum', '--assumeno', 'upgrade', '--', 'bind-32:9.16.23-24.el9_5.3']]],
  ];
  for (const [tool, packages, dryRun, argv] of cases) {
    it(`${tool} ${packages.map((p) => p.name + (p.version === null ? '' : `@${p.version}`)).join(',')}${dryRun ? ' dry run' : ''}`, () => {
      const plan = dnfPlan(tool, { packages }, dryRun);
      assert.ok('steps' in plan);
      assert.deepEqual(plan.steps.map((s) => s.argv), argv);
    });
  }
  for (const name of ['-x', 'foo;id', '$(id)', 'a b', '../x', '', '%{_bindir}']) {
    it(`refuses ${JSON.stringify(name)}`, () => {
      const plan = dnfPlan('dnf', { packages: [{ name, version: null }] }, false);
      assert.ok('refused' in plan && plan.refused.code === 'PW_ERR_UNSAFE_PACKAGE_NAME' && plan.refused.commands.length === 0);
    });
  }
});

describe('declinedOk: what a declined --assumeno transaction looks like', () => {
  const run = (exitCode: number, outputTail: string): CommandRun => ({ record: { argv: ['dnf'], exitCode, signal: null, durationMs: 1, outputTail }, timedOut: false, aborted: false, notFound: false });
  const cases: [number, string, boolean][] = [
    [0, 'Dependencies resolved.\nNothing to do.\nComplete!\n', true],
    [1, 'Upgrading:\n httpd x86_64 2.4.62-1.el9_5.2 appstream 47 k\nOperation aborted.\n', true],
    [1, 'Exiting on user command\nYour transaction was saved\n', true],
    [1, 'Error: No packages marked for upgrade.\n', false],
    [200, 'Operation aborted.\n', false],
  ];
  for (const [code, tail, ok] of cases) {
    it(`exit ${code}, ${JSON.stringify(tail.trim().split('\n').at(-1))} -> ${ok}`, () => {
      assert.equal(declinedOk(run(code, tail)), ok);
    });
  }
});
