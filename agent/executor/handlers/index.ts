/**
 * Which handler runs an instruction on this host: the package manager found in the root
 * (its database tool and its front end both), the live-patch provider, or systemctl.
 * Looking at files only, nothing is spawned to decide. `refresh` has no handler: the
 * executor answers it with a fresh inventory.
 */
import type { Instruction, PatchInstruction } from '../../../shared/instructions.ts';
import type { Handler, HandlerContext, HandlerOutcome, HandlerResolver } from '../handler.ts';
import { apkHandler } from './apk.ts';
import { aptHandler } from './apt.ts';
import { dnfHandler } from './dnf.ts';
import { resolveLivepatch } from './livepatch.ts';
import { rebootHandler } from './reboot.ts';
import { findProgram } from './run.ts';
import { HANDLER_CODES } from './steps.ts';
import { zypperHandler } from './zypper.ts';

/** In this order: the first whose programs are all present wins (SUSE has rpm and zypper, not dnf). */
const PACKAGE_MANAGERS: readonly { programs: string[]; handler: Handler<PatchInstruction> }[] = [
  { programs: ['dpkg', 'apt-get'], handler: aptHandler },
  { programs: ['rpm', 'zypper'], handler: zypperHandler },
  { programs: ['rpm', 'dnf'], handler: dnfHandler('dnf') },
  { programs: ['rpm', 'yum'], handler: dnfHandler('yum') },
  { programs: ['apk'], handler: apkHandler },
];

export async function packageHandler(root: string): Promise<Handler<PatchInstruction> | HandlerOutcome> {
  for (const pm of PACKAGE_MANAGERS) {
    const found = await Promise.all(pm.programs.map((p) => findProgram(root, p)));
    if (found.every((f) => f !== null)) return pm.handler;
  }
  return {
    status: 'refused',
    code: HANDLER_CODES.noPackageManager,
    message: `no supported package manager in ${root} (looked for ${PACKAGE_MANAGERS.map((p) => p.programs.join('+')).join(', ')})`,
    commands: [],
  };
}

export const resolveHandler: HandlerResolver = async (instruction: Instruction, ctx: HandlerContext) => {
  switch (instruction.kind) {
    // Each handler is typed for its own kind; the executor passes it the instruction it was resolved for.
    case 'patch':
      return packageHandler(ctx.root);
    case 'livepatch':
      return resolveLivepatch(instruction, ctx);
    case 'reboot':
      return rebootHandler();
    case 'refresh':
      return { status: 'refused', code: 'PW_ERR_INSTRUCTION_KIND', message: 'refresh has no handler: the executor answers it with a fresh inventory', commands: [] };
  }
};
