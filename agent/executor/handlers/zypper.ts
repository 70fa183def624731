/**
 * SUSE: `zypper refresh`, then `zypper update NAME` for the newest candidate and
 * `zypper install NAME=VERSION` for an exact one (`update` takes names only; `install` of
 * an installed package at a newer version upgrades it). `--dry-run` is zypper's own.
 *
 * zypper's exit codes 100-103 are information, not failure (zypper(8) "EXIT CODES"):
 * 100 updates needed, 101 security updates needed, 102 reboot needed after the update,
 * 103 zypper itself was updated.
 */
import type { PatchInstruction } from '../../../shared/instructions.ts';
import type { Handler, HandlerContext, HandlerOutcome } from '../handler.ts';
import { packageSpecs } from './names.ts';
import type { CommandRun } from './run.ts';
import { type Plan, refused, runPlan, type Step } from './steps.ts';

export function zypperOk(run: CommandRun): boolean {
  const code = run.record.exitCode;
  return code === 0 || (code !== null && code >= 100 && code <= 103);
}

export function zypperPlan(instruction: Pick<PatchInstruction, 'packages'>, dryRun: boolean): Plan {
  const all = packageSpecs('rpm', instruction.packages);
  if (!all.ok) return refused(all.code, all.message);
  const newest = instruction.packages.filter((p) => p.version === null).map((p) => p.name);
  const exact = instruction.packages.flatMap((p) => (p.version === null ? [] : [`${p.name}=${p.version}`]));
  const dry = dryRun ? ['--dry-run'] : [];
  const steps: Step[] = [{ argv: ['zypper', '--non-interactive', 'refresh'], ok: zypperOk }];
  if (newest.length > 0) steps.push({ argv: ['zypper', '--non-interactive', 'update', ...dry, '--', ...newest], ok: zypperOk });
  if (exact.length > 0) steps.push({ argv: ['zypper', '--non-interactive', 'install', ...dry, '--', ...exact], ok: zypperOk });
  return { steps, done: `${dryRun ? 'simulated the upgrade of' : 'upgraded'} ${[...newest, ...exact].join(' ')} with zypper` };
}

export const zypperHandler: Handler<PatchInstruction> = {
  name: 'zypper',
  run(instruction: PatchInstruction, ctx: HandlerContext): Promise<HandlerOutcome> {
    return runPlan(zypperPlan(instruction, ctx.dryRun), ctx);
  },
};
