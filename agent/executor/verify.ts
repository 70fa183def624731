/**
 * Everything an instruction must pass before the agent runs it, in an order where nothing
 * from the message is trusted before the signature holds: the envelope's shape and size,
 * the ed25519 signature over the exact payload bytes with the key PINNED at enrollment
 * (never a key the message names), then the payload's JSON and schema, the target agent,
 * the time window and the ledger of ids already run.
 *
 * Not-yet-due is not a refusal: the executor holds the instruction until notBefore.
 */
import {
  type Instruction,
  INSTRUCTION_KINDS,
  InstructionSchema,
  instructionSignatureValid,
  MAX_INSTRUCTION_BYTES,
  SignedInstructionSchema,
} from '../../shared/instructions.ts';
import { issueText } from '../../shared/errors.ts';
import type { Ledger } from './ledger.ts';

export const REFUSAL_CODES = Object.freeze({
  malformed: 'PW_ERR_INSTRUCTION_MALFORMED',
  tooLarge: 'PW_ERR_INSTRUCTION_TOO_LARGE',
  signature: 'PW_ERR_INSTRUCTION_SIGNATURE',
  kind: 'PW_ERR_INSTRUCTION_KIND',
  target: 'PW_ERR_INSTRUCTION_TARGET',
  expired: 'PW_ERR_INSTRUCTION_EXPIRED',
  replayed: 'PW_ERR_INSTRUCTION_REPLAYED',
  unsafeName: 'PW_ERR_UNSAFE_PACKAGE_NAME',
});
export type RefusalCode = (typeof REFUSAL_CODES)[keyof typeof REFUSAL_CODES];

/** The collector's clock and ours may differ this much before an instruction counts as expired. */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 60_000;
/**
 * A wire frame or file holding the envelope: the payload is JSON inside a JSON string, so
 * its escaping can about double it; anything larger is not an instruction.
 */
export const MAX_ENVELOPE_BYTES = 2 * MAX_INSTRUCTION_BYTES + 4096;

export interface VerifyOptions {
  /** The collector's raw ed25519 public key (base64url) from the agent's config. */
  collectorPublicKey: string;
  agentId: string;
  now: Date;
  ledger: Pick<Ledger, 'has'>;
  maxClockSkewMs?: number;
}

export type VerifyResult =
  | { ok: true; instruction: Instruction }
  | { ok: false; code: RefusalCode; message: string; instructionId: string | null };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// The characters a POSIX shell, apt's option parser or a glob would read as more than a
// name. The schema's grammar refuses them too; this second look names the problem.
// eslint-disable-next-line no-control-regex
const SHELL_META = /[\s;&|`$<>()\\'"*?[\]{}!#~=,\u0000-\u001f\u007f]/;

/** Why a package name must never reach a command line, or null when it is safe to pass as one argument. */
export function unsafePackageName(name: string): string | null {
  if (name === '') return 'an empty name';
  if (name.startsWith('-')) return `'${printable(name)}' starts with '-' and would be read as an option`;
  const m = SHELL_META.exec(name);
  if (m !== null) return `'${printable(name)}' contains ${JSON.stringify(m[0])}`;
  return null;
}

function printable(s: string): string {
  const cut = s.length > 80 ? `${s.slice(0, 80)}…` : s;
  return JSON.stringify(cut).slice(1, -1);
}

function refuse(code: RefusalCode, message: string, instructionId: string | null = null): VerifyResult {
  return { ok: false, code, message, instructionId };
}

/**
 * The id a payload claims, to label its refusal; read only when the payload is JSON. It is
 * a claim, not a fact, until the signature holds: the collector matches it against what it
 * sent and must not take a refusal of an unsigned message as the fate of its own.
 */
function claimedId(parsed: unknown): string | null {
  if (typeof parsed !== 'object' || parsed === null) return null;
  const id = (parsed as { id?: unknown }).id;
  return typeof id === 'string' && UUID.test(id) ? id.toLowerCase() : null;
}

function tryJson(text: string): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

export function verifyInstruction(signed: unknown, opts: VerifyOptions): VerifyResult {
  // 1. Envelope: an object, or the JSON text of one (a wire frame, a file).
  let envelope = signed;
  if (typeof envelope === 'string' || Buffer.isBuffer(envelope)) {
    const bytes = typeof envelope === 'string' ? Buffer.byteLength(envelope, 'utf8') : envelope.length;
    if (bytes > MAX_ENVELOPE_BYTES) return refuse(REFUSAL_CODES.tooLarge, `the signed instruction is ${bytes} bytes, over the ${MAX_ENVELOPE_BYTES}-byte limit`);
    const parsed = tryJson(envelope.toString());
    if (!parsed.ok) return refuse(REFUSAL_CODES.malformed, `the signed instruction is not JSON: ${parsed.error}`);
    envelope = parsed.value;
  }
  if (typeof envelope !== 'object' || envelope === null || Array.isArray(envelope)) {
    return refuse(REFUSAL_CODES.malformed, 'the signed instruction is not an object {payload, signature}');
  }
  const { payload, signature } = envelope as { payload?: unknown; signature?: unknown };
  if (typeof payload !== 'string') {
    // A bare instruction with no envelope is the likeliest case: name it as unsigned.
    const bare = 'kind' in envelope || 'agentId' in envelope;
    return bare
      ? refuse(REFUSAL_CODES.signature, 'the instruction is unsigned: expected {payload, signature}', claimedId(envelope))
      : refuse(REFUSAL_CODES.malformed, 'the signed instruction has no payload text');
  }
  // 2. Size, before any parse or signature work on the payload.
  const payloadBytes = Buffer.byteLength(payload, 'utf8');
  if (payloadBytes > MAX_INSTRUCTION_BYTES) {
    return refuse(REFUSAL_CODES.tooLarge, `the instruction payload is ${payloadBytes} bytes, over the ${MAX_INSTRUCTION_BYTES}-byte limit`);
  }
  const peek = tryJson(payload);
  const id = peek.ok ? claimedId(peek.value) : null;
  if (signature === undefined || signature === null || signature === '') return refuse(REFUSAL_CODES.signature, 'the instruction is unsigned', id);
  const shape = SignedInstructionSchema.safeParse(envelope);
  if (!shape.success) {
    const onSignature = shape.error.issues.some((i) => i.path[0] === 'signature');
    const first = shape.error.issues[0];
    const detail = first === undefined ? '' : `${first.path.join('.') || '(top level)'}: ${first.message}`;
    return onSignature
      ? refuse(REFUSAL_CODES.signature, `the instruction's signature is not an ed25519 signature (${detail})`, id)
      : refuse(REFUSAL_CODES.malformed, `the signed instruction is malformed: ${detail}`, id);
  }
  // 3. The signature, with the pinned key only.
  if (!instructionSignatureValid(shape.data, opts.collectorPublicKey)) {
    return refuse(REFUSAL_CODES.signature, "the instruction's signature does not verify with the collector key pinned at enrollment", id);
  }
  // 4. The payload: JSON, a known kind, safe names, the schema.
  if (!peek.ok) return refuse(REFUSAL_CODES.malformed, `the instruction payload is not JSON: ${peek.error}`);
  const raw = peek.value;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return refuse(REFUSAL_CODES.malformed, 'the instruction payload is not an object', id);
  const kind = (raw as { kind?: unknown }).kind;
  if (typeof kind !== 'string' || !(INSTRUCTION_KINDS as readonly string[]).includes(kind)) {
    const shown = typeof kind === 'string' ? `'${printable(kind)}'` : String(kind);
    return refuse(REFUSAL_CODES.kind, `unknown instruction kind ${shown} (this agent runs ${INSTRUCTION_KINDS.join(', ')})`, id);
  }
  const packages = (raw as { packages?: unknown }).packages;
  if (Array.isArray(packages)) {
    for (const p of packages) {
      const name = typeof p === 'object' && p !== null ? (p as { name?: unknown }).name : undefined;
      if (typeof name !== 'string') continue;
      const why = unsafePackageName(name);
      if (why !== null) return refuse(REFUSAL_CODES.unsafeName, `unsafe package name: ${why}`, id);
    }
  }
  const parsed = InstructionSchema.safeParse(raw);
  if (!parsed.success) {
    return refuse(REFUSAL_CODES.malformed, `the instruction does not match its schema: ${issueText(parsed.error, 3)}`, id);
  }
  const instruction = parsed.data;
  const instructionId = instruction.id.toLowerCase();
  // 5. Ours.
  if (instruction.agentId.toLowerCase() !== opts.agentId.toLowerCase()) {
    return refuse(REFUSAL_CODES.target, `the instruction is for agent ${instruction.agentId}, not this agent (${opts.agentId})`, instructionId);
  }
  // 6. Its time window.
  const skew = opts.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS;
  const notBefore = Date.parse(instruction.notBefore);
  const expiresAt = Date.parse(instruction.expiresAt);
  if (notBefore > expiresAt) {
    return refuse(REFUSAL_CODES.expired, `the instruction can never run: notBefore ${instruction.notBefore} is after expiresAt ${instruction.expiresAt}`, instructionId);
  }
  if (opts.now.getTime() > expiresAt + skew) {
    return refuse(REFUSAL_CODES.expired, `the instruction expired at ${instruction.expiresAt} (now ${opts.now.toISOString()})`, instructionId);
  }
  // 7. Never run before.
  if (opts.ledger.has(instructionId)) {
    return refuse(REFUSAL_CODES.replayed, `instruction ${instructionId} was accepted before; an instruction runs once`, instructionId);
  }
  return { ok: true, instruction };
}
