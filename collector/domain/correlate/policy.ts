/**
 * The compliance policy: how long each severity may stay open. SOC2/SOX/PCI DSS auditors
 * ask for "mitigated within 30 days", so 30 days for every severity is the default; KEV
 * entries are due by CISA's due date when that is sooner.
 */
import * as z from 'zod';

const days = z.number().int().positive().max(3650);

export const DuePolicySchema = z.strictObject({
  days: z
    .strictObject({ critical: days, high: days, medium: days, low: days, unknown: days })
    .default({ critical: 30, high: 30, medium: 30, low: 30, unknown: 30 }),
  /** `published`: the advisory's publication date; `first-seen`: when this host first had it. */
  clockStart: z.enum(['published', 'first-seen']).default('published'),
  /** Use CISA KEV's due date for known-exploited CVEs when it is sooner. */
  kevDueDates: z.boolean().default(true),
  /**
   * Off by default (EPSS orders what to fix first and changes no due date): when set, a
   * finding whose highest EPSS score is at least `threshold` is due within `days` of the
   * clock start when that is sooner than its severity's deadline.
   */
  epssDueDays: z.strictObject({ threshold: z.number().min(0).max(1), days }).optional(),
  /** A feed not imported for this many hours is flagged stale in every report. */
  staleFeedHours: z.number().positive().default(48),
});
export type DuePolicy = z.infer<typeof DuePolicySchema>;

export const DEFAULT_POLICY: DuePolicy = Object.freeze(DuePolicySchema.parse({}));

/** Due dates already worked out: a fleet's findings share a few publication days and policies. */
const dueDays = new Map<string, string>();
const DUE_DAYS_KEPT = 10_000;

export function addDays(isoDay: string, n: number): string {
  const day = isoDay.slice(0, 10);
  const key = `${day}+${String(n)}`;
  let due = dueDays.get(key);
  if (due === undefined) {
    const d = new Date(`${day}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() + n);
    due = d.toISOString().slice(0, 10);
    if (dueDays.size >= DUE_DAYS_KEPT) dueDays.clear();
    dueDays.set(key, due);
  }
  return due;
}
