/**
 * Debian and Ubuntu: `apt-get update`, then `apt-get install --only-upgrade` of the named
 * packages. `--only-upgrade` so a patch never installs a package the host did not have;
 * `--force-confdef --force-confold` so a changed config file keeps the admin's version
 * without a prompt (a prompt with no terminal would hang until the timeout). The dry run is
 * apt-get's own simulation (`-s`); it refreshes the package lists too, since a simulation
 * against stale lists says nothing, and the lists are a cache, not installed state.
 */
import type { PatchInstruction } from '../../../shared/instructions.ts';
import type { Handler, HandlerContext, HandlerOutcome } from '../handler.ts';
import { packageSpecs } from './names.ts';
import { type Plan, refused, runPlan } from './steps.ts';

// --no-remove: an upgrade that would remove any package aborts instead (-y alone would let
// apt-get remove what conflicts with the new version: nothing an operator approved).
const APT_OPTIONS = ['-q', '-y', '--no-remove', '-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold', '-o', 'Dpkg::Use-Pty=0'];

export function aptPlan(instruction: Pick<PatchInstruction, 'packages'>, dryRun: boolean): Plan {
  const specs = packageSpecs('dpkg', instruction.packages);
  if (!specs.ok) return refused(specs.code, specs.message);
  return {
    steps: [
      { argv: ['apt-get', '-q', 'update'] },
      { argv: ['apt-get', ...APT_OPTIONS, ...(dryRun ? ['-s'] : []), '--only-upgrade', 'install', '--', ...specs.specs] },
    ],
    done: `${dryRun ? 'simulated the upgrade of' : 'upgraded'} ${specs.specs.join(' ')} with apt-get`,
  };
}

export const aptHandler: Handler<PatchInstruction> = {
  name: 'apt-get',
  run(instruction: PatchInstruction, ctx: HandlerContext): Promise<HandlerOutcome> {
    return runPlan(aptPlan(instruction, ctx.dryRun), ctx);
  },
};
