/**
 * The contract between the executor (verify, queue, ledger, result) and the handlers that
 * drive one package manager or live-patch provider each (agent/executor/handlers/). A
 * handler is only ever given an instruction that passed every check in verify.ts, one at
 * a time; it still checks package names against its own manager's grammar, since the
 * shared schema's grammar is the union of all of them.
 */
import type { Instruction, InstructionResult } from '../../shared/instructions.ts';

export type CommandRecord = InstructionResult['commands'][number];

export interface HandlerContext {
  /** '/' normally; a directory = run every command inside it with `chroot DIR` (tests, image builds). */
  root: string;
  dryRun: boolean;
  /** Per command; the handler passes it to its runner. */
  timeoutMs: number;
  /** Aborted when the agent shuts down. */
  signal: AbortSignal;
}

export interface HandlerOutcome {
  status: 'succeeded' | 'failed' | 'refused';
  /** PW_ERR_* for failed/refused, else null. */
  code: string | null;
  message: string;
  commands: CommandRecord[];
}

export interface Handler<I extends Instruction = Instruction> {
  /** e.g. 'apt-get', 'dnf', 'kcarectl'. */
  readonly name: string;
  run(instruction: I, ctx: HandlerContext): Promise<HandlerOutcome>;
}

/** Picks the handler for an instruction on this host, or a refusal outcome (no package manager / provider). */
export type HandlerResolver = (instruction: Instruction, ctx: HandlerContext) => Promise<Handler | HandlerOutcome>;

/** Tells a resolver's two answers apart. */
export function isHandlerOutcome(value: Handler | HandlerOutcome): value is HandlerOutcome {
  return 'status' in value;
}
