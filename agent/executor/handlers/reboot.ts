/**
 * Reboot with `systemctl reboot --message=…`: the message lands in the journal and in the
 * wall broadcast, so whoever is logged in sees which instruction rebooted the machine.
 * `onlyIfNeeded` re-reads the reboot state the inventory reports (reboot-required file,
 * newer installed kernel, needs-restarting, init mapping deleted libraries) just before,
 * since a live patch or an earlier reboot may have made this one needless. A dry run runs
 * nothing and says what it would have run.
 */
import { errorMessage } from '../../../shared/errors.ts';
import type { Reboot } from '../../../shared/protocol.ts';
import type { RebootInstruction } from '../../../shared/instructions.ts';
import { createContext } from '../../inventory/context.ts';
import { readKernel } from '../../inventory/kernel.ts';
import { readPackages } from '../../inventory/packages.ts';
import { readReboot } from '../../inventory/reboot.ts';
import type { Handler, HandlerContext, HandlerOutcome } from '../handler.ts';
import { runPlan } from './steps.ts';

export function rebootArgv(instruction: Pick<RebootInstruction, 'id' | 'rolloutId'>): string[] {
  const rollout = instruction.rolloutId === null ? '' : ` (rollout ${instruction.rolloutId})`;
  return ['systemctl', `--message=patchwarden: instruction ${instruction.id}${rollout}`, 'reboot'];
}

export type RebootState = Pick<Reboot, 'required' | 'reasons'>;

/** The reboot state as the inventory would report it now, for `root`. */
export async function currentRebootState(root: string): Promise<RebootState> {
  const ictx = createContext(root);
  const pkgs = await readPackages(ictx);
  const kernel = await readKernel(ictx, pkgs.packages, pkgs.format);
  return readReboot(ictx, kernel);
}

export function rebootHandler(options: { state?: (root: string) => Promise<RebootState> } = {}): Handler<RebootInstruction> {
  const state = options.state ?? currentRebootState;
  return {
    name: 'systemctl',
    async run(instruction: RebootInstruction, ctx: HandlerContext): Promise<HandlerOutcome> {
      let why = 'asked to reboot unconditionally';
      if (instruction.onlyIfNeeded) {
        let now: RebootState;
        try {
          now = await state(ctx.root);
        } catch (err) {
          // Not knowing is not a reason to reboot a server.
          return { status: 'failed', code: 'PW_ERR_SOURCE_UNAVAILABLE', message: `the reboot state cannot be read, so no reboot: ${errorMessage(err)}`.slice(0, 4096), commands: [] };
        }
        if (!now.required) return { status: 'succeeded', code: null, message: 'no reboot needed any more; nothing run', commands: [] };
        why = now.reasons.map((r) => `${r.kind}: ${r.detail}`).join('; ');
      }
      const argv = rebootArgv(instruction);
      if (ctx.dryRun) return { status: 'succeeded', code: null, message: `dry run: would run ${argv.join(' ')} (${why})`.slice(0, 4096), commands: [] };
      return runPlan({ steps: [{ argv }], done: `reboot requested (${why})`.slice(0, 4096) }, ctx);
    },
  };
}
