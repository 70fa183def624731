import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RolloutPlanError } from '../../../shared/errors.ts';
import { parsePlan, type PlanInput } from './plan.ts';

const AGENT = '0b7f2c1e-7a44-4c52-9d7e-3f1f0c9a2b10';
const base: PlanInput = {
  name: 'openssl week 48',
  target: { ecosystems: ['AlmaLinux:9'] },
  action: { kind: 'patch', advisories: ['ALSA-2024:9541'] },
  waves: { canary: { hosts: 1 } },
};

describe('parsePlan: a valid plan', () => {
  it('fills the defaults and freezes the result', () => {
    const p = parsePlan(base);
    assert.deepEqual(p.gate, { maxFailedHosts: 0, rebootGraceMinutes: 30 });
    assert.deepEqual(p.waves.growth, { factor: 2 });
    assert.equal(p.waitMinutes, 60);
    assert.equal(p.instructionTtlMinutes, 1440);
    assert.deepEqual(p.windows, []);
    assert.equal(p.preferLivepatch, true);
    assert.ok(Object.isFrozen(p) && Object.isFrozen(p.target) && Object.isFrozen(p.target.ecosystems));
    assert.throws(() => {
      Reflect.apply(Array.prototype.push, p.target.ecosystems, ['Debian:12']);
    }, TypeError);
  });
  it('accepts a window in Europe/Berlin', () => {
    const p = parsePlan({ ...base, windows: [{ cron: '0 22 * * 1-5', durationMinutes: 240, timezone: 'Europe/Berlin' }] });
    assert.equal(p.windows[0]?.timezone, 'Europe/Berlin');
  });
});

describe('parsePlan refuses hostile or broken input with PW_ERR_ROLLOUT_PLAN', () => {
  const cases: { name: string; plan: unknown; field: string }[] = [
    { name: 'name with ;', plan: { ...base, name: 'x; rm -rf /' }, field: 'name' },
    { name: 'name with HTML', plan: { ...base, name: '<script>alert(1)</script>' }, field: 'name' },
    { name: 'name of 129 characters', plan: { ...base, name: 'a'.repeat(129) }, field: 'name' },
    { name: '10001 agent ids', plan: { ...base, target: { agentIds: Array.from({ length: 10_001 }, () => AGENT) } }, field: 'target.agentIds' },
    { name: '1001 packages', plan: { ...base, action: { kind: 'patch', packages: Array.from({ length: 1001 }, (_, i) => ({ name: `p${i}`, version: null })) } }, field: 'action' },
    { name: 'package name -oAPT::x', plan: { ...base, action: { kind: 'patch', packages: [{ name: '-oAPT::Update::Pre-Invoke::=id', version: null }] } }, field: 'action.packages.0.name' },
    { name: 'package name with ;', plan: { ...base, action: { kind: 'patch', packages: [{ name: 'openssl;id', version: null }] } }, field: 'action.packages.0.name' },
    { name: 'patch with both packages and advisories', plan: { ...base, action: { kind: 'patch', packages: [{ name: 'openssl', version: null }], advisories: ['DSA-5764-1'] } }, field: 'action' },
    { name: 'patch with neither', plan: { ...base, action: { kind: 'patch' } }, field: 'action' },
    { name: 'unknown action kind', plan: { ...base, action: { kind: 'exec', command: 'id' } }, field: 'action' },
    { name: 'empty target', plan: { ...base, target: {} }, field: 'target' },
    { name: 'tag with a space', plan: { ...base, target: { tags: ['env prod'] } }, field: 'target.tags.0' },
    { name: 'bad cron 61 minutes', plan: { ...base, windows: [{ cron: '61 * * * *', durationMinutes: 60 }] }, field: 'windows.0.cron' },
    { name: 'cron with shell characters', plan: { ...base, windows: [{ cron: '0 22 * * *; reboot', durationMinutes: 60 }] }, field: 'windows.0.cron' },
    { name: 'cron that never fires (30 February)', plan: { ...base, windows: [{ cron: '0 0 30 2 *', durationMinutes: 60 }] }, field: 'windows.0.cron' },
    { name: 'unknown timezone Mars/Olympus', plan: { ...base, windows: [{ cron: '0 22 * * *', durationMinutes: 60, timezone: 'Mars/Olympus' }] }, field: 'windows.0.timezone' },
    { name: 'window of 0 minutes', plan: { ...base, windows: [{ cron: '0 22 * * *', durationMinutes: 0 }] }, field: 'windows.0.durationMinutes' },
    { name: '21 windows', plan: { ...base, windows: Array.from({ length: 21 }, () => ({ cron: '0 22 * * *', durationMinutes: 60 })) }, field: 'windows' },
    { name: 'canary of 0 hosts', plan: { ...base, waves: { canary: { hosts: 0 } } }, field: 'waves.canary.hosts' },
    { name: 'canary of 150 percent', plan: { ...base, waves: { canary: { percent: 150 } } }, field: 'waves.canary.percent' },
    { name: 'ttl of 31 days', plan: { ...base, instructionTtlMinutes: 31 * 24 * 60 }, field: 'instructionTtlMinutes' },
    { name: 'unknown key <img>', plan: { ...base, '<img src=x>': 1 }, field: '(plan)' },
    { name: 'not an object', plan: 'patch everything', field: '(plan)' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.throws(
        () => parsePlan(c.plan),
        (err: unknown) => {
          assert.ok(err instanceof RolloutPlanError);
          assert.equal(err.code, 'PW_ERR_ROLLOUT_PLAN');
          assert.ok(err.message.includes(`${c.field}:`), err.message);
          assert.doesNotMatch(err.message, /<script|<img|rm -rf|; reboot|openssl;id|AAAAAA/);
          assert.ok(err.message.length <= 4096);
          return true;
        },
      );
    });
  }
});
