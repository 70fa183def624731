import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { PatchTarget } from '../../../shared/instructions.ts';
import { fixture, patchInstruction } from '../../../shared/testing/executor-fixtures.ts';
import { aptHandler, aptPatternTarget, aptPlan } from './apt.ts';

const OPTS = ['-q', '-y', '--no-remove', '-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold', '-o', 'Dpkg::Use-Pty=0'];

describe('aptPlan argv', () => {
  const cases: [string, PatchTarget[], boolean, string[]][] = [
    ['libssl3 newest', [{ name: 'libssl3', version: null }], false, [...OPTS, '--only-upgrade', 'install', '--', 'libssl3']],
    ['libssl3 newest, dry run', [{ name: 'libssl3', version: null }], true, [...OPTS, '-s', '--only-upgrade', 'install', '--', 'libssl3']],
    [
      'openssl + libssl3 exact',
      [{ name: 'openssl', version: '3.0.17-1~deb12u2' }, { name: 'libssl3', version: '3.0.17-1~deb12u2' }],
      false,
      [...OPTS, '--only-upgrade', 'install', '--', 'openssl=3.0.17-1~deb12u2', 'libssl3=3.0.17-1~deb12u2'],
    ],
    ['libc6 exact, dry run', [{ name: 'libc6', version: '2.36-9+deb12u13' }], true, [...OPTS, '-s', '--only-upgrade', 'install', '--', 'libc6=2.36-9+deb12u13']],
  ];
  for (const [label, packages, dryRun, install] of cases) {
    it(label, () => {
      const plan = aptPlan({ packages }, dryRun);
      assert.ok('steps' in plan);
      assert.deepEqual(
        plan.steps.map((s) => s.argv),
        [['apt-get', '-q', 'update'], ['apt-get', ...install]],
      );
    });
  }
});

describe('apt handler refuses hostile names and runs nothing', () => {
  const names = ['-oAPT::Update::Pre-Invoke::=id', 'foo;rm -rf /', '$(id)', 'a b', '../x', '', 'Libssl3'];
  for (const name of names) {
    it(JSON.stringify(name), async (t) => {
      const root = await mkdtemp(join(tmpdir(), 'pw-apt-refuse-'));
      t.after(() => rm(root, { recursive: true, force: true }));
      const i = patchInstruction(fixture(), { packages: [{ name, version: null }] });
      assert.ok(i.kind === 'patch');
      const out = await aptHandler.run(i, { root, dryRun: false, timeoutMs: 5_000, signal: new AbortController().signal });
      assert.equal(out.status, 'refused');
      assert.equal(out.code, 'PW_ERR_UNSAFE_PACKAGE_NAME');
      assert.deepEqual(out.commands, []);
    });
  }
});

describe('apt-get would read a name with a regex character as a pattern unless a package has exactly that name (issue 10)', () => {
  const installed = new Set(['libc6', 'libgtk2.0-0', 'libstdc++6', 'g++-12']);
  const cases: [string, ReadonlySet<string> | null, boolean][] = [
    // apt 2.6 on bookworm: `apt-get -s --only-upgrade install libc6.` selects libc6-dev and the cross toolchains by regex.
    ['libc6.', installed, false],
    ['libc.6', installed, false],
    ['libc6.1', installed, false],
    ['libgtk2.0-0', installed, true],
    ['libstdc++6', installed, true],
    ['g++-12', installed, true],
    ['g++-12', null, false],
    ['libc6', new Set(), true],
  ];
  for (const [name, set, ok] of cases) {
    it(`${name}, ${set === null ? 'no dpkg database' : `installed: ${[...set].join(' ') || 'none'}`}: ${ok ? 'runs' : 'refused'}`, () => {
      assert.equal(aptPatternTarget([{ name: 'openssl', version: null }, { name, version: '1.0-1' }], set)?.name, ok ? undefined : name);
    });
  }

  it('the handler refuses libc6. on a root whose dpkg status has libc6, before any command', async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'pw-apt-pattern-'));
    t.after(() => rm(root, { recursive: true, force: true }));
    await mkdir(join(root, 'var/lib/dpkg'), { recursive: true });
    await writeFile(join(root, 'var/lib/dpkg/status'), 'Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u13\n\n');
    for (const version of [null, '2.36-9+deb12u14']) {
      const i = patchInstruction(fixture(), { packages: [{ name: 'libc6.', version }] });
      assert.ok(i.kind === 'patch');
      const out = await aptHandler.run(i, { root, dryRun: true, timeoutMs: 5_000, signal: new AbortController().signal });
      assert.equal(out.status, 'refused');
      assert.equal(out.code, 'PW_ERR_UNSAFE_PACKAGE_NAME');
      assert.match(out.message, /"libc6\." is installed under no such name, so apt-get would read it as a regular expression/);
      assert.deepEqual(out.commands, []);
    }
  });
});
