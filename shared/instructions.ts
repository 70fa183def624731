/**
 * Instructions: what the collector asks an agent to do (issue 5), and what the agent says
 * it did. An instruction travels as the exact JSON text the collector signed (`payload`)
 * beside its ed25519 signature; the agent verifies the signature over those bytes before
 * it parses anything, so no re-serialisation can make a signed instruction mean something
 * else. The signature covers a domain tag too: a hello signature never passes as one.
 *
 *   collector -> agent: instruction {payload, signature}
 *   agent -> collector: result {instructionId, status, ...}
 */
import * as z from 'zod';
import { InstructionBuildError, issueText } from './errors.ts';
import { LIMITS, PACKAGE_NAME, VERSION } from './grammar.ts';
import { signBytes, verifyBytes } from './signing.ts';
import { noNul } from './text.ts';

export const INSTRUCTION_SCHEMA = 'patchwarden.instruction/1';
export const INSTRUCTION_KINDS = ['patch', 'livepatch', 'reboot', 'refresh'] as const;
export type InstructionKind = (typeof INSTRUCTION_KINDS)[number];
export const LIVEPATCH_PROVIDERS = ['kernelcare', 'canonical-livepatch', 'kpatch'] as const;
/** The providers an instruction can drive (the inventory also knows "livepatch", a bare /sys/kernel/livepatch with no tool to update it). */
export type LivepatchTool = (typeof LIVEPATCH_PROVIDERS)[number];

/** An instruction's signed text is small; anything bigger is refused before it is parsed. */
export const MAX_INSTRUCTION_BYTES = 256 * 1024;
/** Output kept from a command, from its end (where apt-get and dnf say what went wrong). */
export const OUTPUT_TAIL_BYTES = 16 * 1024;

const isoDate = z.iso.datetime({ offset: true });
/** Advisory and CVE ids as the feeds spell them (CVE-2024-1234, DSA-5800-1, ALSA-2024:1234, GHSA-…, and the tracker importer's DEBIAN-CVE-2024-1234/openssl). */
export const ADVISORY_ID = /^[A-Za-z][A-Za-z0-9]*-[A-Za-z0-9:._/-]+$/;
/** Longest advisory id an instruction carries (the feeds keep ids up to 256: a longer one makes its host's patch fail with PW_ERR_INSTRUCTION_BUILD). */
export const ADVISORY_ID_MAX = 128;

// Package names are checked twice: here against the union grammar (no space, quote, `;`,
// `$`, and never a leading `-`, so a name can never be read as an option), and again by
// the handler against its own package manager's stricter grammar.
const packageName = z.string().max(LIMITS.name).regex(PACKAGE_NAME, 'not a valid package name');
const version = z.string().max(LIMITS.version).regex(VERSION, 'not a valid package version');

export const PatchTargetSchema = z.strictObject({
  name: packageName,
  /** null: the newest version the host's configured repositories offer. */
  version: version.nullable(),
});
export type PatchTarget = z.infer<typeof PatchTargetSchema>;

const common = {
  schema: z.literal(INSTRUCTION_SCHEMA),
  id: z.uuid(),
  /** The one agent that may run it. */
  agentId: z.uuid(),
  issuedAt: isoDate,
  /** Not run before this time (a reboot "at or after"). */
  notBefore: isoDate,
  /** Refused after this time: an agent offline for a week does not patch on an old plan. */
  expiresAt: isoDate,
  /** The rollout that issued it, or null for one sent by hand. */
  rolloutId: z.string().max(64).regex(/^[A-Za-z0-9_-]+$/).nullable(),
  /** Simulate only: the package manager's own dry run; nothing on the host changes. */
  dryRun: z.boolean(),
};

export const PatchInstructionSchema = z.strictObject({
  ...common,
  kind: z.literal('patch'),
  /** What to upgrade. The collector resolves "everything that fixes these advisories" into this list before signing. */
  packages: z.array(PatchTargetSchema).min(1).max(LIMITS.list),
  /** The advisories this patch is meant to fix, for the record; the agent does not read feeds. */
  advisories: z.array(z.string().max(ADVISORY_ID_MAX).regex(ADVISORY_ID, 'not an advisory id')).max(LIMITS.list),
});
export const LivepatchInstructionSchema = z.strictObject({
  ...common,
  kind: z.literal('livepatch'),
  /** null: whichever provider the host has (the inventory's kernel.livepatch.provider). */
  provider: z.enum(LIVEPATCH_PROVIDERS).nullable(),
});
export const RebootInstructionSchema = z.strictObject({
  ...common,
  kind: z.literal('reboot'),
  /** true: reboot only if the host still needs it when the instruction runs (the usual case). */
  onlyIfNeeded: z.boolean(),
});
export const RefreshInstructionSchema = z.strictObject({ ...common, kind: z.literal('refresh') });

export const InstructionSchema = z.discriminatedUnion('kind', [PatchInstructionSchema, LivepatchInstructionSchema, RebootInstructionSchema, RefreshInstructionSchema]);
export type Instruction = z.infer<typeof InstructionSchema>;
export type PatchInstruction = z.infer<typeof PatchInstructionSchema>;
export type LivepatchInstruction = z.infer<typeof LivepatchInstructionSchema>;
export type RebootInstruction = z.infer<typeof RebootInstructionSchema>;

/** The wire envelope: the signed JSON text and its signature. */
export const SignedInstructionSchema = z.strictObject({
  payload: z.string().min(2).max(MAX_INSTRUCTION_BYTES),
  /** ed25519 over instructionSigningBytes(payload), base64url. */
  signature: z.string().length(86).regex(/^[A-Za-z0-9_-]+$/, 'not base64url'),
});
export type SignedInstruction = z.infer<typeof SignedInstructionSchema>;

/** What the signature covers: a domain tag and the exact payload bytes. */
export function instructionSigningBytes(payload: string): Buffer {
  return Buffer.concat([Buffer.from('patchwarden-instruction/1\n', 'utf8'), Buffer.from(payload, 'utf8')]);
}

/**
 * What the agent would refuse, found before signing: a field its schema refuses, or a
 * payload over MAX_INSTRUCTION_BYTES. Returns the exact text to sign; throws
 * InstructionBuildError (PW_ERR_INSTRUCTION_BUILD) naming the fields, never their values.
 */
export function instructionPayload(instruction: Instruction): string {
  const r = InstructionSchema.safeParse(instruction);
  if (!r.success) throw new InstructionBuildError(`the ${instruction.kind.slice(0, 16)} instruction for agent ${instruction.agentId.slice(0, 36)} breaks the instruction schema: ${issueText(r.error, 3)}`);
  const payload = JSON.stringify(r.data);
  const bytes = Buffer.byteLength(payload, 'utf8');
  if (bytes > MAX_INSTRUCTION_BYTES) {
    throw new InstructionBuildError(`the ${instruction.kind} instruction for agent ${instruction.agentId} is ${bytes} bytes; an instruction is at most ${MAX_INSTRUCTION_BYTES}`);
  }
  return payload;
}

/** The collector's side: serialise once (checked as the agent will check it), sign those bytes. */
export function signInstruction(instruction: Instruction, collectorPrivateKeyPem: string): SignedInstruction {
  const payload = instructionPayload(instruction);
  return { payload, signature: signBytes(collectorPrivateKeyPem, instructionSigningBytes(payload)) };
}

/** Signature check only; the agent's verifier adds target, time and replay checks. */
export function instructionSignatureValid(signed: SignedInstruction, collectorPublicKey: string): boolean {
  return verifyBytes(collectorPublicKey, instructionSigningBytes(signed.payload), signed.signature);
}

/**
 * How an instruction ended on the agent.
 *   succeeded: ran, exit 0 (or nothing to do: the reboot was no longer needed)
 *   failed:    ran, and the command failed or timed out
 *   refused:   never ran: bad signature, another agent's, expired, replayed, unsafe name, unknown kind, no such provider
 */
export const RESULT_STATUSES = ['succeeded', 'failed', 'refused'] as const;
export type ResultStatus = (typeof RESULT_STATUSES)[number];

export const PackageChangeSchema = z.strictObject({
  name: packageName,
  /** null: not installed before (a new dependency) or after (removed). */
  before: version.nullable(),
  after: version.nullable(),
});
export type PackageChange = z.infer<typeof PackageChangeSchema>;

export const InstructionResultSchema = z.strictObject({
  /** The instruction's id; null when the payload was too broken to read one. */
  instructionId: z.uuid().nullable(),
  status: z.enum(RESULT_STATUSES),
  /** A stable PW_ERR_* code for refused and failed results, else null. */
  code: z.string().max(64).regex(/^PW_[A-Z0-9_]+$/).nullable(),
  /** The rollout's host row keeps the start of it in a column of its own (rollout_hosts.detail). */
  message: noNul(z.string().max(LIMITS.text)),
  dryRun: z.boolean(),
  startedAt: isoDate,
  finishedAt: isoDate,
  /** The commands run, in order, as argument arrays (for the audit trail). */
  commands: z
    .array(
      z.strictObject({
        argv: z.array(z.string().max(LIMITS.text)).min(1).max(LIMITS.list),
        exitCode: z.number().int().nullable(),
        /** The signal that ended it (a timeout sends SIGTERM), else null. */
        signal: z.string().max(32).nullable(),
        durationMs: z.number().nonnegative(),
        /** The last OUTPUT_TAIL_BYTES of stdout and stderr, interleaved as they arrived. */
        outputTail: z.string().max(OUTPUT_TAIL_BYTES * 2),
      }),
    )
    .max(64),
  /** Installed versions that differ between before and after the instruction (patch), with the targets' own versions. */
  changes: z.array(PackageChangeSchema).max(LIMITS.packages),
  /** Whether the host needs a reboot after it ran (the reboot state read afresh), null if unknown. */
  rebootRequired: z.boolean().nullable(),
});
export type InstructionResult = z.infer<typeof InstructionResultSchema>;

/** The body of an `instructions` file (shared/signed-file.ts): `collector instructions export` -> `agent apply`. */
export const InstructionBundleSchema = z.strictObject({
  agentId: z.uuid(),
  instructions: z.array(SignedInstructionSchema).min(1).max(LIMITS.list),
});
export type InstructionBundle = z.infer<typeof InstructionBundleSchema>;

/** The body of a `results` file: what `agent apply` ran (or refused) -> `collector reports import`. */
export const ResultBundleSchema = z.strictObject({
  agentId: z.uuid(),
  results: z.array(InstructionResultSchema).min(1).max(LIMITS.list),
});
export type ResultBundle = z.infer<typeof ResultBundleSchema>;
