/**
 * A rollout plan: which hosts, what to do to them, in which waves, inside which windows,
 * and when to stop by itself. Validated once at the boundary (the API, the CLI, a plan
 * read back from the store) and deep-frozen; inside the rollout code the types are trusted.
 *
 * Every free-text field has a grammar that excludes `;`, quotes, angle brackets and `$`,
 * so a plan name can reach a log line, the dashboard or an audit row without escaping
 * surprises; every list has a limit, so a plan cannot make the collector correlate or
 * sign without bound.
 */
import { Cron } from 'croner';
import * as z from 'zod';
import { RolloutPlanError } from '../../../shared/errors.ts';
import { ADVISORY_ID, PatchTargetSchema } from '../../../shared/instructions.ts';
import { ECOSYSTEM } from '../../../shared/protocol.ts';

/** Letters, digits, space and `._:()/+#@-`: enough for "openssl DSA-5764 week 48 (prod)". */
export const ROLLOUT_NAME = /^[A-Za-z0-9][A-Za-z0-9 ._:()/+#@-]{0,127}$/;
/** Host tags as operators write them (`env=prod`, `rack:4`, `db`). */
export const TAG = /^[A-Za-z0-9][A-Za-z0-9_.:=@/-]{0,63}$/;

export const PLAN_LIMITS = Object.freeze({
  /** Explicit agent ids; a bigger fleet is selected by tag or ecosystem. */
  agentIds: 10_000,
  selectors: 100,
  findings: 1_000,
  packages: 1_000,
  windows: 20,
  waves: 100,
  /** A week: longer is a plan nobody will remember approving. */
  waitMinutes: 7 * 24 * 60,
  windowMinutes: 7 * 24 * 60,
  /** 30 days, the compliance window itself. */
  ttlMinutes: 30 * 24 * 60,
  graceMinutes: 24 * 60,
});

/** A window whose cron never fires in this long is refused: it would hold a rollout forever. */
const WINDOW_HORIZON_MS = 366 * 24 * 3600_000;

const advisoryId = z.string().max(128).regex(ADVISORY_ID, 'not an advisory or CVE id');

const TargetSchema = z
  .strictObject({
    ecosystems: z.array(z.string().max(128).regex(ECOSYSTEM, 'not an OSV ecosystem name')).max(PLAN_LIMITS.selectors).default([]),
    tags: z.array(z.string().regex(TAG, 'not a tag')).max(PLAN_LIMITS.selectors).default([]),
    /** Hosts with an actionable finding (collector/domain/correlate/status.ts) for any of these advisory or CVE ids. */
    findings: z.array(advisoryId).max(PLAN_LIMITS.findings).default([]),
    agentIds: z.array(z.uuid()).max(PLAN_LIMITS.agentIds).default([]),
  })
  .refine((t) => t.ecosystems.length + t.tags.length + t.findings.length + t.agentIds.length > 0, {
    error: 'a target needs at least one of ecosystems, tags, findings, agentIds (a plan never means "every host" by omission)',
  });

const PatchActionSchema = z
  .strictObject({
    kind: z.literal('patch'),
    /** These packages (those installed on the host), to this version or, with null, the newest the host's repositories offer. */
    packages: z.array(PatchTargetSchema).min(1).max(PLAN_LIMITS.packages).optional(),
    /** Everything that fixes these advisories or CVEs, resolved per host from its findings when its wave starts. */
    advisories: z.array(advisoryId).min(1).max(PLAN_LIMITS.findings).optional(),
    /** `if-needed`: after a successful patch that leaves the host needing a reboot, send a reboot (only if still needed). */
    reboot: z.enum(['never', 'if-needed']).default('never'),
  })
  .refine((a) => (a.packages === undefined) !== (a.advisories === undefined), { error: 'a patch action has either packages or advisories, not both or neither' });

export const ActionSchema = z.union([
  PatchActionSchema,
  z.strictObject({ kind: z.literal('livepatch') }),
  z.strictObject({ kind: z.literal('reboot'), onlyIfNeeded: z.boolean().default(true) }),
  z.strictObject({ kind: z.literal('refresh') }),
]);

const WindowSchema = z
  .strictObject({
    /** croner syntax, 5 or 6 fields (seconds first), evaluated in `timezone`. */
    cron: z.string().min(1).max(128).regex(/^[A-Za-z0-9 *,/?#LW-]+$/, 'not a cron expression'),
    durationMinutes: z.number().int().min(1).max(PLAN_LIMITS.windowMinutes),
    /** IANA name (`Europe/Berlin`); the window follows its daylight-saving changes. */
    timezone: z.string().min(1).max(64).regex(/^[A-Za-z0-9_+\-/]+$/, 'not a time zone name').default('UTC'),
  })
  .superRefine((w, ctx) => {
    try {
      new Intl.DateTimeFormat('en', { timeZone: w.timezone });
    } catch {
      ctx.addIssue({ code: 'custom', path: ['timezone'], message: `unknown time zone ${w.timezone}` });
      return;
    }
    let next: Date | null;
    try {
      next = new Cron(w.cron, { timezone: w.timezone, paused: true }).nextRun();
    } catch (err) {
      ctx.addIssue({ code: 'custom', path: ['cron'], message: `cron expression refused: ${(err as Error).message.slice(0, 200)}` });
      return;
    }
    if (next === null || next.getTime() - Date.now() > WINDOW_HORIZON_MS) {
      ctx.addIssue({ code: 'custom', path: ['cron'], message: 'the cron expression does not fire within a year' });
    }
  });

const count = z.number().int().min(1).max(PLAN_LIMITS.agentIds);
const percent = z.number().gt(0).max(100);

export const PlanSchema = z.strictObject({
  name: z.string().regex(ROLLOUT_NAME, 'a name is 1-128 letters, digits, spaces and ._:()/+#@- starting with a letter or digit'),
  target: TargetSchema,
  action: ActionSchema,
  /** Kernel findings of a patch plan on a host with a live-patch tool: a livepatch instruction instead of a kernel upgrade and a reboot. */
  preferLivepatch: z.boolean().default(true),
  waves: z.strictObject({
    canary: z.union([z.strictObject({ hosts: count }), z.strictObject({ percent })]),
    /** `factor`: each wave this many times the last (1 = equal waves); `sizes`: the waves after the canary, the last size repeating. */
    growth: z.union([z.strictObject({ factor: z.number().min(1).max(100) }), z.strictObject({ sizes: z.array(count).min(1).max(PLAN_LIMITS.waves) })]).default({ factor: 2 }),
  }),
  /** After a wave has passed its gate, before the next one starts. */
  waitMinutes: z.number().int().min(0).max(PLAN_LIMITS.waitMinutes).default(60),
  gate: z
    .strictObject({
      /** A count of hosts, or a percentage of the hosts in the waves done so far; more than this halts the rollout. */
      maxFailedHosts: z.union([z.number().int().min(0).max(PLAN_LIMITS.agentIds), z.strictObject({ percent: z.number().min(0).max(100) })]).default(0),
      /** A host told to reboot must come back (a new boot id) within this long of the instruction's delivery. */
      rebootGraceMinutes: z.number().int().min(1).max(PLAN_LIMITS.graceMinutes).default(30),
    })
    .default({ maxFailedHosts: 0, rebootGraceMinutes: 30 }),
  /** Maintenance windows; empty: always open. */
  windows: z.array(WindowSchema).max(PLAN_LIMITS.windows).default([]),
  /** Each instruction expires this long after it is issued, or when its window closes if sooner. */
  instructionTtlMinutes: z.number().int().min(1).max(PLAN_LIMITS.ttlMinutes).default(24 * 60),
  requireApproval: z.boolean().default(false),
  /** The approver must be neither the creator nor the submitter. */
  fourEyes: z.boolean().default(false),
  /** Instructions carry dryRun: the package managers simulate, nothing on the hosts changes. */
  dryRun: z.boolean().default(false),
});

export type RolloutPlan = Readonly<z.infer<typeof PlanSchema>>;
export type PlanInput = z.input<typeof PlanSchema>;
export type RolloutAction = z.infer<typeof ActionSchema>;
export type MaintenanceWindow = z.infer<typeof WindowSchema>;

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Parses and freezes a plan; anything else is a RolloutPlanError naming each bad field (never echoing its value). */
export function parsePlan(input: unknown): RolloutPlan {
  const r = PlanSchema.safeParse(input);
  if (!r.success) {
    // Keys are input too: a hostile key names no markup or shell characters in the message.
    const clean = (x: string): string => x.replace(/[^A-Za-z0-9_.-]/g, '?').slice(0, 64);
    const issues = r.error.issues.slice(0, 10).map((i) => {
      const where = i.path.map((x) => clean(String(x))).join('.') || '(plan)';
      const what = i.code === 'unrecognized_keys' ? `unknown field ${i.keys.slice(0, 5).map(clean).join(', ')}` : i.message;
      return `${where}: ${what}`;
    });
    const more = r.error.issues.length > 10 ? ` | and ${r.error.issues.length - 10} more` : '';
    throw new RolloutPlanError(`rollout plan refused: ${issues.join(' | ')}${more}`.slice(0, 4096));
  }
  return deepFreeze(r.data);
}
