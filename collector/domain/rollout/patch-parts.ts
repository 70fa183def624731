/**
 * A host's patch as instructions the agent accepts: at most LIMITS.list packages and
 * MAX_INSTRUCTION_BYTES of signed text each. A host whose patch is larger (a source package
 * with thousands of binaries, a plan pinning a thousand long names) gets several patch
 * instructions, one after the other, instead of one its agent would refuse or the
 * collector could not sign. Pure: the engine sends the first part, the preview counts them.
 */
import { InstructionBuildError } from '../../../shared/errors.ts';
import { LIMITS } from '../../../shared/grammar.ts';
import { MAX_INSTRUCTION_BYTES, type PatchInstruction, type PatchTarget } from '../../../shared/instructions.ts';

/** Room left for JSON escaping differences and the key order zod gives the signed text. */
const SLACK_BYTES = 1024;

/**
 * The packages of each instruction, in order. `instruction` is the patch with every field
 * but `packages` final (its advisories count against each part's bytes). Throws
 * InstructionBuildError when not even one package fits beside the rest of the instruction.
 */
export function patchParts(instruction: Omit<PatchInstruction, 'packages'>, packages: readonly PatchTarget[], maxBytes = MAX_INSTRUCTION_BYTES): PatchTarget[][] {
  // Names and versions are ASCII by their grammar, so string length is the byte count.
  const fixed = JSON.stringify({ ...instruction, packages: [] }).length + SLACK_BYTES;
  const budget = maxBytes - fixed;
  const parts: PatchTarget[][] = [];
  let part: PatchTarget[] = [];
  let used = 0;
  for (const p of packages) {
    const cost = JSON.stringify(p).length + 1;
    if (cost > budget) {
      throw new InstructionBuildError(`the patch for agent ${instruction.agentId} cannot fit one package beside its ${instruction.advisories.length} advisory ids in ${maxBytes} bytes`);
    }
    if (part.length >= LIMITS.list || used + cost > budget) {
      parts.push(part);
      part = [];
      used = 0;
    }
    part.push(p);
    used += cost;
  }
  if (part.length > 0) parts.push(part);
  return parts;
}
