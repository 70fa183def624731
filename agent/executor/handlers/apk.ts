/**
 * Alpine: `apk add --upgrade` with a fresh index (`--update-cache`): `NAME` for the newest
 * candidate, `NAME=VERSION` for an exact one. apk records what `add` names in
 * /etc/apk/world, so an exact version stays pinned there until a later unversioned patch of
 * the same package replaces the constraint. `--no-interactive` because /etc/apk/interactive
 * would make apk ask on stdin; `--simulate` is its dry run.
 */
import type { PatchInstruction } from '../../../shared/instructions.ts';
import type { Handler, HandlerContext, HandlerOutcome } from '../handler.ts';
import { packageSpecs } from './names.ts';
import { type Plan, refused, runPlan } from './steps.ts';

export function apkPlan(instruction: Pick<PatchInstruction, 'packages'>, dryRun: boolean): Plan {
  const specs = packageSpecs('apk', instruction.packages);
  if (!specs.ok) return refused(specs.code, specs.message);
  return {
    steps: [{ argv: ['apk', 'add', '--no-interactive', '--update-cache', '--upgrade', ...(dryRun ? ['--simulate'] : []), '--', ...specs.specs] }],
    done: `${dryRun ? 'simulated the upgrade of' : 'upgraded'} ${specs.specs.join(' ')} with apk`,
  };
}

export const apkHandler: Handler<PatchInstruction> = {
  name: 'apk',
  run(instruction: PatchInstruction, ctx: HandlerContext): Promise<HandlerOutcome> {
    return runPlan(apkPlan(instruction, ctx.dryRun), ctx);
  },
};
