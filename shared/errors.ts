/**
 * One error base class with stable codes (the undici habit): callers and operators branch
 * on `code`, never on message text. Protocol errors also carry the WebSocket close code
 * to send (the ws receiver habit). Every code an operator can see is listed in
 * README.md's error table; keep the two in step (a test checks it).
 */
export class PatchwardenError extends Error {
  readonly code: string;
  /** WebSocket close code to send when the peer cannot be trusted any more. */
  readonly closeCode: number | undefined;

  constructor(message: string, code = 'PW_ERR', options?: { cause?: unknown; closeCode?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.closeCode = options?.closeCode;
  }
}

/** A file or command the inventory needs could not be read; the inventory goes on without it. */
export class SourceUnavailableError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_SOURCE_UNAVAILABLE', options);
  }
}

/** Input (a file, a message, a command's output) does not have the expected shape. */
export class MalformedInputError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown; closeCode?: number }) {
    super(message, 'PW_ERR_MALFORMED_INPUT', options);
  }
}

/** Input is larger than the limit set for it. */
export class InputTooLargeError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown; closeCode?: number }) {
    super(message, 'PW_ERR_INPUT_TOO_LARGE', { closeCode: 1009, ...options });
  }
}

/**
 * Compressed input that inflates past its total or ratio cap (collector/services/feeds/inflate.ts):
 * a gzip or zip bomb, refused before it costs more than a few MB and a few ms.
 */
export class InflateLimitError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_INFLATE_LIMIT', options);
  }
}

/**
 * An input path that is not a regular file (a FIFO, a device, a socket, a directory where a
 * file is expected): refused before a read could block on it (shared/regular-file.ts).
 */
export class NotRegularFileError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_NOT_REGULAR_FILE', options);
  }
}

/** A command we ran failed, timed out or printed more than allowed. */
export class CommandFailedError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_COMMAND_FAILED', options);
  }
}

/** A version string the scheme's own tool would reject. */
export class InvalidVersionError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_INVALID_VERSION', options);
  }
}

/** An advisory feed file or record does not have its format's shape (bad JSON, bad dates, a corrupt or hostile archive). */
export class FeedFormatError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_FEED_FORMAT', options);
  }
}

/**
 * An XML feed (OVAL) that is not well-formed, is cut short, or uses what the collector
 * never processes: a DOCTYPE, an entity declaration or an entity reference beyond the five
 * predefined ones (billion laughs, external entities). The whole file is refused.
 */
export class FeedXmlError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_FEED_XML', options);
  }
}

/**
 * Valid feed data that this collector cannot evaluate (OSV `SEMVER`/`GIT` ranges, `limit`
 * events, encrypted zip entries): skipped and counted, never read as "affected".
 */
export class FeedUnsupportedError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_FEED_UNSUPPORTED', options);
  }
}

/** Command-line usage or configuration that cannot be acted on. */
export class UsageError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_USAGE', options);
  }
}

/** A schema failure as operators read it: `path.to.field: message` for the first `max` issues (zod's error, by shape). */
export function issueText(error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] }, max = 1): string {
  const shown = error.issues.slice(0, max).map((i) => `${i.path.map(String).join('.') || '(top level)'}: ${i.message}`);
  return shown.length === 0 ? 'invalid' : shown.join('; ');
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}

/**
 * A peer broke the wire protocol. Carries the WebSocket close code to send (the ws
 * receiver habit): 4000 malformed or unexpected message, 4001 not authenticated,
 * 4003 agent revoked, 4004 enrollment token refused, 4005 protocol version not
 * accepted, 4008 handshake timeout, 1009 message too big.
 */
export class ProtocolError extends PatchwardenError {
  constructor(message: string, code: string, closeCode: number, options?: { cause?: unknown }) {
    super(message, code, { ...options, closeCode });
  }
}

export const CLOSE = Object.freeze({
  protocol: 4000,
  unauthenticated: 4001,
  revoked: 4003,
  tokenRefused: 4004,
  version: 4005,
  timeout: 4008,
  tooBig: 1009,
});

/**
 * Why the store refuses what an agent asks of it: an unknown agent, a revoked one, an
 * "unchanged since" naming an inventory the store does not hold for it (the agent must
 * send the full inventory), a public key enrolled already. The store knows nothing of the
 * wire: the gateway turns each reason into its close code (collector/gateway/gateway.ts,
 * asProtocolError); the code is the same wherever the refusal is shown.
 */
export type AgentRefusal = 'not-enrolled' | 'revoked' | 'inventory-unknown' | 'already-enrolled';

const AGENT_REFUSAL_CODES: Readonly<Record<AgentRefusal, string>> = Object.freeze({
  'not-enrolled': 'PW_ERR_UNAUTHENTICATED',
  revoked: 'PW_ERR_AGENT_REVOKED',
  'inventory-unknown': 'PW_ERR_INVENTORY_UNKNOWN',
  'already-enrolled': 'PW_ERR_ALREADY_ENROLLED',
});

export class AgentRefusedError extends PatchwardenError {
  readonly reason: AgentRefusal;

  constructor(reason: AgentRefusal, message: string, options?: { cause?: unknown }) {
    super(message, AGENT_REFUSAL_CODES[reason], options);
    this.reason = reason;
  }
}

/**
 * A report (an inventory) with more packages than one may hold: LIMITS.packages in
 * shared/grammar.ts, 50,000, five times the largest real hosts. The collector refuses it
 * whole (close 1009) before parsing more than it must, and stores nothing; the agent
 * refuses to make one.
 */
export class TooManyPackagesError extends ProtocolError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_TOO_MANY_PACKAGES', CLOSE.tooBig, options);
  }
}

/**
 * An instruction the agent will not run (issue 5): unsigned or wrongly signed, another
 * agent's, expired, replayed, an unknown kind, an unsafe package name. The code says which
 * (PW_ERR_INSTRUCTION_*, PW_ERR_UNSAFE_PACKAGE_NAME); the refusal is reported to the
 * collector as a result with that code, and nothing runs.
 */
export class InstructionRefusedError extends PatchwardenError {}

/**
 * The collector cannot build or sign one host's instruction (a field its schema refuses,
 * such as an advisory id over 128 characters, or a payload that cannot fit): that host's
 * rollout step fails alone with this code and counts against the gate; nothing is sent.
 */
export class InstructionBuildError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_INSTRUCTION_BUILD', options);
  }
}

/** A rollout plan that cannot be accepted (bad names, a cron that never fires, an unknown time zone, limits exceeded). */
export class RolloutPlanError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_ROLLOUT_PLAN', options);
  }
}

/** The rollout is not in a state that allows this step (approving a running rollout, resuming a cancelled one). */
export class RolloutStateError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_ROLLOUT_STATE', options);
  }
}

/** No rollout with this id. */
export class RolloutNotFoundError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_ROLLOUT_NOT_FOUND', options);
  }
}

/** A four-eyes rollout approved by the operator who created or submitted it. */
export class RolloutApprovalError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_ROLLOUT_APPROVAL', options);
  }
}
