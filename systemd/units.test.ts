/**
 * The units as systemd itself reads them: `systemd-analyze verify` finds no error, and
 * the collector's exposure (`systemd-analyze security --offline`) stays low. The agent is
 * root by necessity (it patches); its unit documents each protection it cannot use.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { needs, TOOLS } from '../shared/testing/system-tools.ts';

const dir = import.meta.dirname;

function exposure(unit: string): number {
  const r = spawnSync('systemd-analyze', ['security', '--offline=true', join(dir, unit)], { encoding: 'utf8', timeout: 60_000 });
  const m = /Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout + r.stderr);
  assert.ok(m, r.stdout + r.stderr);
  return Number(m[1]);
}

describe('systemd units', { skip: needs(TOOLS.systemdAnalyze) }, () => {
  for (const unit of ['patchwarden-collector.service', 'patchwarden-agent.service']) {
    it(`${unit}: systemd-analyze verify finds nothing`, () => {
      const r = spawnSync('systemd-analyze', ['verify', join(dir, unit)], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr.trim(), '');
    });
  }

  it('the collector is sandboxed: exposure at most 2.0 ("OK")', () => {
    const score = exposure('patchwarden-collector.service');
    assert.ok(score <= 2.0, `exposure ${score}`);
  });

  it('the agent, root so it can patch, still drops what patching does not need: exposure under 8', () => {
    const score = exposure('patchwarden-agent.service');
    assert.ok(score < 8, `exposure ${score}`);
  });
});
