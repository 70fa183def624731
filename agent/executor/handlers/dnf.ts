/**
 * The Red Hat family: dnf where it exists, else yum (RHEL/CentOS 7). `upgrade NAME` for the
 * newest candidate, `upgrade NAME-[EPOCH:]VERSION-RELEASE` for an exact one. dnf refreshes
 * its metadata first (`--refresh`); yum has no such flag, so its cache is expired instead.
 *
 * Dry run is `--assumeno`: the transaction is resolved and shown, then declined. Both tools
 * report a declined transaction as exit 1 ("Operation aborted." from dnf, "Exiting on user
 * command" from yum), so that exit with that text is the dry run's success.
 */
import type { PatchInstruction } from '../../../shared/instructions.ts';
import type { Handler, HandlerContext, HandlerOutcome } from '../handler.ts';
import { packageSpecs } from './names.ts';
import type { CommandRun } from './run.ts';
import { type Plan, refused, runPlan } from './steps.ts';

export type DnfTool = 'dnf' | 'yum';

export function declinedOk(run: CommandRun): boolean {
  if (run.record.exitCode === 0) return true;
  return run.record.exitCode === 1 && /Operation aborted|Exiting on user command/.test(run.record.outputTail);
}

export function dnfPlan(tool: DnfTool, instruction: Pick<PatchInstruction, 'packages'>, dryRun: boolean): Plan {
  const specs = packageSpecs('rpm', instruction.packages);
  if (!specs.ok) return refused(specs.code, specs.message);
  const upgrade = tool === 'dnf' ? ['dnf', '--refresh'] : ['yum'];
  const confirm = dryRun ? '--assumeno' : '-y';
  return {
    steps: [
      ...(tool === 'yum' ? [{ argv: ['yum', 'clean', 'expire-cache'] }] : []),
      { argv: [...upgrade, confirm, 'upgrade', '--', ...specs.specs], ...(dryRun ? { ok: declinedOk } : {}) },
    ],
    done: `${dryRun ? 'simulated the upgrade of' : 'upgraded'} ${specs.specs.join(' ')} with ${tool}`,
  };
}

export function dnfHandler(tool: DnfTool): Handler<PatchInstruction> {
  return {
    name: tool,
    run(instruction: PatchInstruction, ctx: HandlerContext): Promise<HandlerOutcome> {
      return runPlan(dnfPlan(tool, instruction, ctx.dryRun), ctx);
    },
  };
}
