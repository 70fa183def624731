/**
 * The wire contract between agent and collector (../shared/DESIGN.md). Every message is
 * validated with these schemas at the boundary on both sides; inside, trust the types.
 * The JSON Schema in shared/inventory.schema.json is generated from here (`npm run schema`).
 */
import * as z from 'zod';
import { InstructionResultSchema, SignedInstructionSchema } from './instructions.ts';
import { noNul } from './text.ts';

/** A peer accepts any protocol version with the same major (`^major`). */
export const PROTOCOL_VERSION = '1.1.0';
export const INVENTORY_SCHEMA = 'patchwarden.inventory/1';

export { ARCH, ECOSYSTEM, HOSTNAME, LIMITS, PACKAGE_NAME, VERSION } from './grammar.ts';
import { ARCH, ECOSYSTEM, HOSTNAME, LIMITS, PACKAGE_NAME, VERSION } from './grammar.ts';

const text = z.string().max(LIMITS.text);
const shortText = z.string().max(LIMITS.name);
const packageName = z.string().max(LIMITS.name).regex(PACKAGE_NAME, 'not a valid package name');
const version = z.string().max(LIMITS.version).regex(VERSION, 'not a valid package version');
const isoDate = z.iso.datetime({ offset: true });
/** The agent's own version: the collector keeps it in a column of its own (agents.agent_version). */
const agentVersion = noNul(z.string().max(64));

export const PackageSchema = z.strictObject({
  name: packageName,
  version,
  arch: z.string().max(64).regex(ARCH, 'not a valid architecture'),
  /** deb: the `Source:` package; rpm: the source rpm's name; apk: the origin (`o:`). */
  source: packageName,
  sourceVersion: version,
});
export type Package = z.infer<typeof PackageSchema>;

export const PackageFormatSchema = z.enum(['deb', 'rpm', 'apk']);
export type PackageFormat = z.infer<typeof PackageFormatSchema>;

export const OsSchema = z.strictObject({
  id: shortText.nullable(),
  idLike: z.array(shortText).max(32),
  versionId: shortText.nullable(),
  codename: shortText.nullable(),
  prettyName: text.nullable(),
});
export type OsInfo = z.infer<typeof OsSchema>;

export const HardwareSchema = z.strictObject({
  cpu: text.nullable(),
  cores: z.number().int().nonnegative().nullable(),
  memoryBytes: z.number().int().nonnegative().nullable(),
  virtualization: shortText.nullable(),
  model: text.nullable(),
});
export type Hardware = z.infer<typeof HardwareSchema>;

export const HostSchema = z.strictObject({
  hostname: z.string().max(253).regex(HOSTNAME, 'not a valid host name'),
  machineId: z.string().regex(/^[0-9a-f]{32}$/).nullable(),
  bootId: z.string().regex(/^[0-9a-f-]{32,36}$/).nullable(),
  arch: z.string().max(64).regex(ARCH),
  uptimeSeconds: z.number().nonnegative().nullable(),
  os: OsSchema,
  ecosystem: z.string().max(128).regex(ECOSYSTEM).nullable(),
  hardware: HardwareSchema,
  /**
   * The minor release a RHEL-family host's package manager is held at (EUS, a rebuild's
   * LTS): it takes that release's stream of fixes, not mainline's. Absent: mainline.
   * Optional so older agents' reports stay valid.
   */
  releasePin: z.string().regex(/^\d{1,4}\.\d{1,4}$/).optional(),
});
export type Host = z.infer<typeof HostSchema>;

export const KernelPackageSchema = z.strictObject({
  name: packageName,
  source: packageName,
  version,
});
export type KernelPackage = z.infer<typeof KernelPackageSchema>;

export const InstalledKernelSchema = z.strictObject({
  /** null when the kernel is only in /boot or /lib/modules and no package owns it. */
  name: packageName.nullable(),
  version: version.nullable(),
  release: z.string().max(LIMITS.name).regex(VERSION),
});
export type InstalledKernel = z.infer<typeof InstalledKernelSchema>;

export const LivepatchProviderSchema = z.enum(['none', 'kernelcare', 'canonical-livepatch', 'kpatch', 'livepatch']);
export type LivepatchProvider = z.infer<typeof LivepatchProviderSchema>;

export const LivepatchSchema = z.strictObject({
  provider: LivepatchProviderSchema,
  active: z.boolean(),
  /** KernelCare's effective kernel version, Canonical Livepatch's patch version. */
  effectiveVersion: shortText.nullable(),
  fixedCves: z.array(z.string().regex(/^CVE-\d{4}-\d{4,}$/)).max(LIMITS.list),
  /** Loaded live-patch modules (/sys/kernel/livepatch, kpatch list): Ubuntu's LSN OVAL matches these. */
  modules: z.array(shortText).max(LIMITS.list),
});
export type Livepatch = z.infer<typeof LivepatchSchema>;

export const KernelSchema = z.strictObject({
  /** `uname -r`; the host's row keeps it in a column of its own (hosts.kernel_release). */
  release: noNul(z.string().max(LIMITS.name)),
  version: text,
  /** null: no package provides the running kernel (a custom build, a VM's own kernel). */
  package: KernelPackageSchema.nullable(),
  installed: z.array(InstalledKernelSchema).max(1000),
  livepatch: LivepatchSchema,
});
export type Kernel = z.infer<typeof KernelSchema>;

export const RebootReasonKindSchema = z.enum([
  'reboot-required-file',
  'kernel-update',
  'needs-restarting',
  'init-deleted-libraries',
]);
export type RebootReasonKind = z.infer<typeof RebootReasonKindSchema>;

export const RebootSchema = z.strictObject({
  required: z.boolean(),
  reasons: z.array(z.strictObject({ kind: RebootReasonKindSchema, detail: text })).max(100),
  /** Processes that map deleted files: a service restart, not a reboot, clears them. */
  services: z
    .array(
      z.strictObject({
        unit: shortText.nullable(),
        pids: z.array(z.number().int().positive()).max(LIMITS.list),
        command: shortText.nullable(),
        files: z.array(z.string().max(LIMITS.path)).max(1000),
      }),
    )
    .max(LIMITS.list),
});
export type Reboot = z.infer<typeof RebootSchema>;

/** Why the inventory is partial: a source that could not be read, stanzas skipped. */
export const WarningSchema = z.strictObject({
  source: shortText,
  code: shortText,
  message: text,
});
export type InventoryWarning = z.infer<typeof WarningSchema>;

export const InventorySchema = z.strictObject({
  schema: z.literal(INVENTORY_SCHEMA),
  collectedAt: isoDate,
  agentVersion,
  host: HostSchema,
  packageFormat: PackageFormatSchema.nullable(),
  /** At most LIMITS.packages: the gateway refuses more with PW_ERR_TOO_MANY_PACKAGES before this schema runs. */
  packages: z.array(PackageSchema).max(LIMITS.packages, `at most ${LIMITS.packages} packages in one inventory`),
  kernel: KernelSchema,
  reboot: RebootSchema,
  warnings: z.array(WarningSchema).max(1000),
});
export type Inventory = z.infer<typeof InventorySchema>;

export const FINDINGS_SCHEMA = 'patchwarden.findings/1';

export const SeveritySchema = z.enum(['critical', 'high', 'medium', 'low', 'unknown']);
export type Severity = z.infer<typeof SeveritySchema>;

export const FindingStatusSchema = z.enum(['open', 'fixed-pending-reboot', 'mitigated-livepatch', 'unfixed', 'accepted', 'resolved']);
export type FindingStatus = z.infer<typeof FindingStatusSchema>;

const day = z.iso.date();

export const FindingSchema = z.strictObject({
  advisory: z.string().max(LIMITS.name),
  /** Which feed said so (`osv`, `alpine-secdb`, `debian-tracker`, ...). */
  source: z.string().max(LIMITS.name),
  cves: z.array(z.string().max(64)).max(LIMITS.list),
  /** The name the advisory is keyed by: the source package on Debian/Ubuntu, the rpm on the RHEL family, the origin on Alpine. */
  package: packageName,
  binaries: z.array(packageName).max(LIMITS.list),
  installed: version,
  /** null: no fixed version is published yet (`unfixed`). */
  fixed: version.nullable(),
  status: FindingStatusSchema,
  severity: SeveritySchema,
  kev: z.boolean(),
  /**
   * FIRST EPSS of the finding's likeliest CVE (its score and percentile, 0..1), used to
   * order what to fix first; null when no loaded score covers its CVEs. Absent in findings
   * stored before EPSS was read.
   */
  epss: z.strictObject({ cve: z.string().max(64), score: z.number().min(0).max(1), percentile: z.number().min(0).max(1) }).nullable().optional(),
  published: day.nullable(),
  firstSeen: isoDate,
  /** null for statuses with no deadline (`resolved`, `accepted` until it expires). */
  due: day.nullable(),
  overdue: z.boolean(),
  resolvedAt: isoDate.nullable(),
  why: text,
});
export type Finding = z.infer<typeof FindingSchema>;

export const FindingsSchema = z.strictObject({
  schema: z.literal(FINDINGS_SCHEMA),
  host: z.string().max(253),
  ecosystem: z.string().max(128).nullable(),
  generatedAt: isoDate,
  kernel: z.strictObject({
    release: z.string().max(LIMITS.name),
    /** false: no package provides the running kernel, so no kernel findings can be raised. */
    managed: z.boolean(),
  }),
  /** Feeds behind these findings; a stale feed means findings may be missing. */
  feeds: z.array(z.strictObject({ source: z.string(), newest: z.string().nullable(), importedAt: z.string().nullable(), stale: z.boolean() })),
  /**
   * Whether a loaded feed covers the host's ecosystem (collector/domain/correlate/coverage.ts):
   * `not-assessed` means no findings because nobody looked, never "clean".
   */
  assessment: z.strictObject({ state: z.enum(['assessed', 'stale', 'not-assessed']), reason: text }).optional(),
  warnings: z.array(text),
  findings: z.array(FindingSchema),
});
export type Findings = z.infer<typeof FindingsSchema>;

// ---------------------------------------------------------------------------------------
// Messages between agent and collector (WebSocket text frames, one JSON object each).
//
//   collector -> agent: challenge {nonce}
//   agent -> collector: enroll {token, publicKey, ...}  -> enrolled {agentId, collectorPublicKey}
//                    or hello {agentId, signature}      -> welcome {heartbeatSeconds, inventoryHash}
//   agent -> collector: report {id, hash, inventory|null} -> ack {id, status}
//                    or report {id, hash, packageSet, inventory without packages} -> ack {id, status}
//                       (status packages-unknown: send it again with its packages)
//   collector -> agent: instruction {payload, signature}  (any time after welcome)
//   agent -> collector: result {id, result}               -> ack {id, status}
//   either way: error {code, message} before a close with a 4xxx code
// Heartbeats are WebSocket ping/pong frames.

/**
 * Frames over this are refused by ws itself at the frame header (close 1009), never
 * buffered; also the largest report or result file body. It follows the package limit: a
 * report of LIMITS.packages (50,000) packages is about 6 MB with real names and 13 MB with
 * the longest real ones (about 260 bytes of JSON each); a result's 50,000 changes and 64
 * command outputs stay under 13 MB. The 21.7 MB frame of 200,000 packages in issue 10 is
 * refused here; a denser one under this size by the package count (report-limit.ts).
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

const b64url = (min: number, max: number) => z.string().min(min).max(max).regex(/^[A-Za-z0-9_-]+$/, 'not base64url');
const semverString = z.string().max(64).regex(/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/, 'not a semver version');
const agentId = z.uuid();
/** sha256 of the inventory's canonical JSON, hex. */
const contentHash = z.string().regex(/^[0-9a-f]{64}$/, 'not a sha256 hex digest');

export const ChallengeMessageSchema = z.strictObject({ type: z.literal('challenge'), protocol: semverString, nonce: b64url(43, 43) });
export const EnrollMessageSchema = z.strictObject({
  type: z.literal('enroll'),
  protocol: semverString,
  agentVersion,
  token: z.string().min(16).max(256).regex(/^[A-Za-z0-9_.-]+$/, 'not an enrollment token'),
  /** ed25519 public key, raw 32 bytes, base64url. */
  publicKey: b64url(43, 43),
  hostname: z.string().max(253).regex(HOSTNAME, 'not a valid host name'),
  machineId: z.string().regex(/^[0-9a-f]{32}$/).nullable(),
});
export const EnrolledMessageSchema = z.strictObject({ type: z.literal('enrolled'), agentId, collectorPublicKey: b64url(43, 43) });
export const HelloMessageSchema = z.strictObject({
  type: z.literal('hello'),
  protocol: semverString,
  agentVersion,
  agentId,
  /** ed25519 over helloPayload(nonce, agentId), base64url. */
  signature: b64url(86, 86),
});
export const WelcomeMessageSchema = z.strictObject({
  type: z.literal('welcome'),
  agentId,
  heartbeatSeconds: z.number().int().positive().max(3600),
  /** The hash of the last inventory the collector stored for this agent, so an unchanged one is not sent again. */
  inventoryHash: contentHash.nullable(),
});
export const ReportMessageSchema = z.strictObject({
  type: z.literal('report'),
  /** Unique per report: the ack names it, and a re-sent report is recognised. */
  id: z.uuid(),
  hash: contentHash,
  /** null: unchanged since the inventory with this hash (the collector must have it). */
  inventory: InventorySchema.nullable(),
  /**
   * Packages by reference: the packageSetHash of a package set the collector may hold
   * already (another host with the same image, or this host before). The inventory's
   * `packages` is then empty; a collector without the set acks `packages-unknown`.
   */
  packageSet: contentHash.optional(),
});
export const AckMessageSchema = z.strictObject({
  type: z.literal('ack'),
  id: z.uuid(),
  /**
   * stored: committed; unchanged: the hash was already known; duplicate: this id was stored before;
   * packages-unknown: nothing stored, the report named a package set the collector does not hold.
   */
  status: z.enum(['stored', 'unchanged', 'duplicate', 'packages-unknown']),
});
/** An instruction for this agent: the collector's signed payload (shared/instructions.ts). */
export const InstructionMessageSchema = SignedInstructionSchema.extend({ type: z.literal('instruction') });
/** How an instruction ended on the agent; acked (stored or duplicate) once committed. */
export const ResultMessageSchema = z.strictObject({ type: z.literal('result'), id: z.uuid(), result: InstructionResultSchema });
export const ErrorMessageSchema = z.strictObject({ type: z.literal('error'), code: z.string().max(64), message: z.string().max(LIMITS.text) });

export const AgentMessageSchema = z.discriminatedUnion('type', [EnrollMessageSchema, HelloMessageSchema, ReportMessageSchema, ResultMessageSchema]);
export const CollectorMessageSchema = z.discriminatedUnion('type', [ChallengeMessageSchema, EnrolledMessageSchema, WelcomeMessageSchema, AckMessageSchema, InstructionMessageSchema, ErrorMessageSchema]);
export type AgentMessage = z.infer<typeof AgentMessageSchema>;
export type CollectorMessage = z.infer<typeof CollectorMessageSchema>;
export type ReportMessage = z.infer<typeof ReportMessageSchema>;
export type ResultMessage = z.infer<typeof ResultMessageSchema>;
