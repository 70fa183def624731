import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Instruction } from '../../../shared/instructions.ts';
import { isHandlerOutcome } from '../handler.ts';
import { fixture, patchInstruction } from '../../../shared/testing/executor-fixtures.ts';
import { packageHandler, resolveHandler } from './index.ts';

describe('packageHandler by the programs in the root', () => {
  const cases: [string, string[], string][] = [
    ['Debian: dpkg + apt-get', ['usr/bin/dpkg', 'usr/bin/apt-get'], 'apt-get'],
    ['SUSE: rpm + zypper', ['usr/bin/rpm', 'usr/bin/zypper'], 'zypper'],
    ['RHEL 9: rpm + dnf (+ yum)', ['usr/bin/rpm', 'usr/bin/dnf', 'usr/bin/yum'], 'dnf'],
    ['RHEL 7: rpm + yum', ['usr/bin/rpm', 'usr/bin/yum'], 'yum'],
    ['Alpine: apk in /sbin', ['sbin/apk'], 'apk'],
    ['apt-get without dpkg', ['usr/bin/apt-get'], 'PW_ERR_NO_PACKAGE_MANAGER'],
    ['rpm alone (rpm installed on Debian)', ['usr/bin/rpm'], 'PW_ERR_NO_PACKAGE_MANAGER'],
    ['an empty root', [], 'PW_ERR_NO_PACKAGE_MANAGER'],
  ];
  for (const [label, programs, want] of cases) {
    it(`${label} -> ${want}`, async (t) => {
      const root = await mkdtemp(join(tmpdir(), 'pw-pm-root-'));
      t.after(() => rm(root, { recursive: true, force: true }));
      for (const p of programs) {
        await mkdir(join(root, p, '..'), { recursive: true });
        await writeFile(join(root, p), '#!/bin/sh\n');
        await chmod(join(root, p), 0o755);
      }
      const h = await packageHandler(root);
      assert.equal(isHandlerOutcome(h) ? h.code : h.name, want);
    });
  }
});

describe('resolveHandler on this Debian host', () => {
  const ctx = { root: '/', dryRun: true, timeoutMs: 1000, signal: new AbortController().signal };
  const patch = patchInstruction(fixture());
  assert.ok(patch.kind === 'patch');
  const { packages: _p, advisories: _a, ...common } = patch;
  const cases: [string, Instruction, string][] = [
    ['patch', patch, 'apt-get'],
    ['reboot', { ...common, kind: 'reboot', onlyIfNeeded: true }, 'systemctl'],
    ['refresh', { ...common, kind: 'refresh' }, 'PW_ERR_INSTRUCTION_KIND'],
    ['livepatch kpatch (not installed here)', { ...common, kind: 'livepatch', provider: 'kpatch' }, 'PW_ERR_NO_LIVEPATCH_PROVIDER'],
  ];
  for (const [label, instruction, want] of cases) {
    it(`${label} -> ${want}`, async () => {
      const h = await resolveHandler(instruction, ctx);
      assert.equal(isHandlerOutcome(h) ? h.code : h.name, want);
    });
  }
});
