/**
 * Live patching with the host's own provider, as each vendor documents it:
 * - KernelCare: `kcarectl --update` fetches and applies the newest patch set;
 *   `kcarectl --check` (dry run) only asks whether one is available.
 * - Canonical Livepatch: `canonical-livepatch refresh`; no check-only command exists, so
 *   the dry run reads `canonical-livepatch status --format json`.
 * - kpatch (RHEL "Applying patches with kernel live patching"): patches ship as
 *   kpatch-patch packages that provide `kpatch-patch = <kernel release>`; installing one
 *   loads it. So: the package manager upgrades that capability for the running kernel,
 *   then `kpatch list` records what is loaded. Dry run: the same upgrade with `--assumeno`.
 * The instruction's provider null means whichever the host has, in the order above.
 */
import { release } from 'node:os';
import { LIVEPATCH_PROVIDERS, type LivepatchInstruction, type LivepatchTool } from '../../../shared/instructions.ts';
import type { Handler, HandlerContext, HandlerOutcome } from '../handler.ts';
import { declinedOk } from './dnf.ts';
import { findProgram } from './run.ts';
import { HANDLER_CODES, type Plan, refused, runPlan } from './steps.ts';

export const LIVEPATCH_PROGRAMS: Readonly<Record<LivepatchTool, string>> = Object.freeze({
  kernelcare: 'kcarectl',
  'canonical-livepatch': 'canonical-livepatch',
  kpatch: 'kpatch',
});

/** `uname -r` as Red Hat kernels spell it (5.14.0-503.11.1.el9_5.x86_64); anything else is not passed to dnf. */
const KERNEL_RELEASE = /^[0-9][A-Za-z0-9._+~-]*$/;

export interface LivepatchHost {
  /** The running kernel's release (`uname -r`). */
  kernelRelease: string;
  /** For kpatch: the package manager that installs kpatch-patch packages. */
  rpmTool: 'dnf' | 'yum' | null;
}

export function livepatchPlan(tool: LivepatchTool, host: LivepatchHost, dryRun: boolean): Plan {
  switch (tool) {
    case 'kernelcare':
      return { steps: [{ argv: ['kcarectl', dryRun ? '--check' : '--update'] }], done: dryRun ? 'checked for a KernelCare patch' : 'applied the newest KernelCare patch' };
    case 'canonical-livepatch':
      return {
        steps: [{ argv: dryRun ? ['canonical-livepatch', 'status', '--format', 'json'] : ['canonical-livepatch', 'refresh'] }],
        done: dryRun ? 'read the Canonical Livepatch status (it has no dry run)' : 'refreshed Canonical Livepatch',
      };
    case 'kpatch': {
      if (host.rpmTool === null) return refused(HANDLER_CODES.noPackageManager, 'kpatch patches are installed with dnf or yum, and neither is here');
      if (!KERNEL_RELEASE.test(host.kernelRelease) || host.kernelRelease.length > 256) {
        return refused(HANDLER_CODES.noLivepatchProvider, `the running kernel's release ${JSON.stringify(host.kernelRelease.slice(0, 200))} is not one kpatch-patch packages are built for`);
      }
      const capability = `kpatch-patch = ${host.kernelRelease}`;
      return {
        steps: [
          { argv: [host.rpmTool, dryRun ? '--assumeno' : '-y', 'upgrade', '--', capability], ...(dryRun ? { ok: declinedOk } : {}) },
          { argv: ['kpatch', 'list'] },
        ],
        done: `${dryRun ? 'simulated the upgrade of' : 'upgraded'} ${capability} and listed the loaded patches`,
      };
    }
  }
}

/** The provider to use on this root, or a refusal when the one asked for (or any) is absent. */
export async function pickProvider(root: string, wanted: LivepatchTool | null): Promise<LivepatchTool | HandlerOutcome> {
  const candidates = wanted === null ? LIVEPATCH_PROVIDERS : [wanted];
  for (const tool of candidates) if ((await findProgram(root, LIVEPATCH_PROGRAMS[tool])) !== null) return tool;
  const what = wanted === null ? `no live-patch tool (${Object.values(LIVEPATCH_PROGRAMS).join(', ')})` : `${LIVEPATCH_PROGRAMS[wanted]} (${wanted}) is not`;
  return { status: 'refused', code: HANDLER_CODES.noLivepatchProvider, message: `${what} installed on this host`, commands: [] };
}

export function livepatchHandler(tool: LivepatchTool, host: LivepatchHost): Handler<LivepatchInstruction> {
  return {
    name: LIVEPATCH_PROGRAMS[tool],
    run(_instruction: LivepatchInstruction, ctx: HandlerContext): Promise<HandlerOutcome> {
      return runPlan(livepatchPlan(tool, host, ctx.dryRun), ctx);
    },
  };
}

/** The handler for this root's provider; the kernel is this machine's (a chroot shares it). */
export async function resolveLivepatch(instruction: LivepatchInstruction, ctx: Pick<HandlerContext, 'root'>): Promise<Handler<LivepatchInstruction> | HandlerOutcome> {
  const tool = await pickProvider(ctx.root, instruction.provider);
  if (typeof tool !== 'string') return tool;
  const rpmTool = (await findProgram(ctx.root, 'dnf')) !== null ? 'dnf' : (await findProgram(ctx.root, 'yum')) !== null ? 'yum' : null;
  return livepatchHandler(tool, { kernelRelease: release(), rpmTool });
}
