/**
 * What every handler does once it knows its commands: run them in order, stop at the
 * first failure, and turn the runs into a HandlerOutcome with a stable code. The argv
 * lists are built by pure functions (`*Plan`) that the tests read without running anything.
 */
import type { HandlerContext, HandlerOutcome } from '../handler.ts';
import { type CommandRun, runCommand, type RunOptions } from './run.ts';

/** The codes a handler's outcome can carry (README "Patch handlers" explains each). */
export const HANDLER_CODES = Object.freeze({
  unsafePackageName: 'PW_ERR_UNSAFE_PACKAGE_NAME',
  noPackageManager: 'PW_ERR_NO_PACKAGE_MANAGER',
  noLivepatchProvider: 'PW_ERR_NO_LIVEPATCH_PROVIDER',
  commandNotFound: 'PW_ERR_COMMAND_NOT_FOUND',
  commandTimeout: 'PW_ERR_COMMAND_TIMEOUT',
  commandFailed: 'PW_ERR_COMMAND_FAILED',
  aborted: 'PW_ERR_ABORTED',
});

export interface Step {
  argv: string[];
  /** Whether this run counts as success; default: exit status 0. */
  ok?: (run: CommandRun) => boolean;
}

export type Plan = { steps: Step[]; done: string } | { refused: HandlerOutcome };

export function refused(code: string, message: string): { refused: HandlerOutcome } {
  return { refused: { status: 'refused', code, message, commands: [] } };
}

function failure(run: CommandRun): { code: string; why: string } {
  const argv0 = run.record.argv[run.record.argv[0] === 'chroot' ? 2 : 0] ?? '';
  if (run.notFound) return { code: HANDLER_CODES.commandNotFound, why: `${argv0} is not installed` };
  if (run.aborted) return { code: HANDLER_CODES.aborted, why: `${argv0} was stopped: the agent is shutting down` };
  if (run.timedOut) return { code: HANDLER_CODES.commandTimeout, why: `${argv0} timed out after ${Math.round(run.record.durationMs)} ms` };
  const how = run.record.signal !== null ? `was killed by ${run.record.signal}` : `exited with status ${run.record.exitCode ?? 'unknown'}`;
  return { code: HANDLER_CODES.commandFailed, why: `${argv0} ${how}` };
}

/** Runs a plan's steps in order; the first failing step ends it with `failed`. */
export async function runPlan(plan: Plan, ctx: HandlerContext, options: RunOptions = {}): Promise<HandlerOutcome> {
  if ('refused' in plan) return plan.refused;
  const commands: HandlerOutcome['commands'] = [];
  for (const step of plan.steps) {
    const run = await runCommand(step.argv, ctx, options);
    commands.push(run.record);
    const ok = !run.notFound && !run.timedOut && !run.aborted && (step.ok ?? exitZero)(run);
    if (!ok) {
      const { code, why } = failure(run);
      return { status: 'failed', code, message: `${why}: ${run.record.argv.join(' ')}`.slice(0, 4096), commands };
    }
  }
  return { status: 'succeeded', code: null, message: plan.done, commands };
}

export function exitZero(run: CommandRun): boolean {
  return run.record.exitCode === 0;
}
