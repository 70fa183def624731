/**
 * The real end-to-end patch (issue 5, "Must show"): a Debian 12 root made by debootstrap
 * from Debian's point release, inventoried with the agent's own reader, patched by the apt
 * handler (real apt-get inside `chroot`, with bookworm-security in its sources), and
 * inventoried again. The package to patch is whatever bookworm-security upgrades in that
 * root today, asked of the root's own apt, never a name written here.
 *
 * Needs root, debootstrap and deb.debian.org; skipped, loudly, without them. The root is
 * cached (.cache/debootstrap/root.tar.gz): about 40 s to build once, seconds to extract.
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Instruction, PatchInstruction } from '../../../shared/instructions.ts';
import type { Package } from '../../../shared/protocol.ts';
import { collectInventory } from '../../inventory/inventory.ts';
import type { HandlerContext } from '../handler.ts';
import { debootstrapUnavailable, ensureDebianRoot, extractRoot, removeRoot } from '../../../shared/testing/debootstrap-root.ts';
import { fixture, patchInstruction } from '../../../shared/testing/executor-fixtures.ts';
import { aptHandler } from './apt.ts';
import { runCommand } from './run.ts';

const STEP_TIMEOUT_MS = 10 * 60_000;

interface Upgrade {
  name: string;
  installed: string;
  candidate: string;
}

/**
 * `apt-get -s upgrade` lines for bookworm-security, as apt 2.6 prints them:
 * `Inst libssl3 [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian-Security:12/oldstable-security [amd64])`
 * (the suite reads `stable-security` while bookworm is stable).
 */
function securityUpgrades(simulation: string): Upgrade[] {
  const out: Upgrade[] = [];
  for (const line of simulation.split('\n')) {
    const m = /^Inst (\S+) \[([^\]]+)\] \((\S+) Debian-Security:12\/\S*security[ \]]/.exec(line);
    if (m !== null) out.push({ name: m[1] as string, installed: m[2] as string, candidate: m[3] as string });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

async function packages(root: string): Promise<Package[]> {
  const inv = await collectInventory({ root, running: { release: '6.1.0-0-amd64', version: '#1 SMP' } });
  assert.equal(inv.packageFormat, 'deb');
  return inv.packages;
}

function asPatch(i: Instruction): PatchInstruction {
  if (i.kind !== 'patch') throw new Error(`expected a patch instruction, got ${i.kind}`);
  return i;
}

function versionOf(pkgs: readonly Package[], name: string): string | undefined {
  return pkgs.find((p) => p.name === name)?.version;
}

describe('apt handler, end to end in a debootstrapped Debian 12 root', { timeout: 30 * 60_000 }, () => {
  it('upgrades a package bookworm-security fixes, and a dry run changes nothing', async (t) => {
    const unavailable = await debootstrapUnavailable();
    if (unavailable !== null) {
      const why = `SKIPPED: the debootstrap end-to-end patch test did NOT run: ${unavailable}`;
      console.warn(`\n*** ${why} ***\n`);
      t.skip(why);
      return;
    }
    const timing: Record<string, number> = {};
    const time = async <T>(label: string, f: () => Promise<T>): Promise<T> => {
      const start = performance.now();
      try {
        return await f();
      } finally {
        timing[label] = Math.round(performance.now() - start);
      }
    };

    const cached = await time('ensureRoot', () => ensureDebianRoot());
    const root = await mkdtemp(join(tmpdir(), 'pw-e2e-bookworm-'));
    t.after(() => removeRoot(root));
    await time('extract', () => extractRoot(cached.tarball, root));
    const ctx: HandlerContext = { root, dryRun: false, timeoutMs: STEP_TIMEOUT_MS, signal: new AbortController().signal };

    const update = await time('apt-get update', () => runCommand(['apt-get', '-q', 'update'], ctx));
    assert.equal(update.record.exitCode, 0, update.record.outputTail);
    const sim = await time('apt-get -s upgrade', () => runCommand(['apt-get', '-s', 'upgrade'], ctx, { tailBytes: 4 * 1024 * 1024 }));
    assert.equal(sim.record.exitCode, 0, sim.record.outputTail);
    const upgrades = securityUpgrades(sim.record.outputTail);
    assert.ok(upgrades.length > 0, `bookworm-security upgrades nothing in a point-release root?\n${sim.record.outputTail.slice(-2000)}`);
    const target = upgrades[0] as Upgrade;

    const before = await time('inventory before', () => packages(root));
    assert.equal(versionOf(before, target.name), target.installed, `${target.name} before`);

    const f = fixture(new Date());
    const dry = await time('dry run', () => aptHandler.run(asPatch(patchInstruction(f, { dryRun: true, packages: [{ name: target.name, version: null }] })), { ...ctx, dryRun: true }));
    assert.equal(dry.status, 'succeeded', dry.message + dry.commands.map((c) => c.outputTail).join('\n'));
    const [, simulated] = dry.commands;
    assert.ok(simulated !== undefined && dry.commands.length === 2);
    assert.deepEqual(simulated.argv.slice(0, 3), ['chroot', root, 'apt-get']);
    assert.ok(simulated.argv.includes('-s'));
    assert.match(simulated.outputTail, new RegExp(`Inst ${target.name.replace(/[+.]/g, '\\$&')} `));
    assert.deepEqual(await packages(root), before, 'a dry run changed the installed packages');

    // The dry run asked for the newest candidate; the patch names the exact version (`name=version`).
    const real = await time('patch', () => aptHandler.run(asPatch(patchInstruction(f, { packages: [{ name: target.name, version: target.candidate }] })), ctx));
    assert.equal(real.status, 'succeeded', real.message + real.commands.map((c) => c.outputTail).join('\n'));
    assert.equal(real.code, null);
    const [, installed] = real.commands;
    assert.ok(installed !== undefined);
    assert.equal(installed.exitCode, 0);
    assert.equal(installed.argv.at(-1), `${target.name}=${target.candidate}`);

    const after = await time('inventory after', () => packages(root));
    assert.equal(versionOf(after, target.name), target.candidate, `${target.name} after the patch`);
    // Only the target and what apt needed to upgrade with it changed; nothing was removed.
    for (const p of before) assert.ok(versionOf(after, p.name) !== undefined, `${p.name} disappeared`);

    console.log(`# e2e: ${target.name} ${target.installed} -> ${target.candidate} (${upgrades.length} security upgrades pending); root ${cached.built ? 'built' : 'cached'} (build took ${Math.round(cached.buildSeconds)} s); ms: ${JSON.stringify(timing)}`);
  });
});
