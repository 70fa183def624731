/**
 * The collector's configuration file (JSON), validated once at start-up and frozen
 * (the fastify habit): inside the program the types are trusted.
 */
import { readFile } from 'node:fs/promises';
import * as z from 'zod';
import { UsageError, errorMessage } from '../shared/errors.ts';
import { DuePolicySchema } from './domain/correlate/policy.ts';
import { checkFeedUrl } from './services/feeds/catalogue.ts';
import { FeedNameSchema } from './domain/feeds/feed-name.ts';

const FeedSourceSchema = z.strictObject({
  /** The feed's name in `feed list` and in reports. */
  name: FeedNameSchema,
  url: z.url({ protocol: /^https?$/ }),
  /** The whole download, every attempt and wait included (collector/services/feeds/sync.ts); default 30 minutes. */
  deadlineSeconds: z.number().int().min(1).max(86_400).optional(),
  /** An internal mirror: the only kind of source that may be plain http (collector/services/feeds/catalogue.ts). */
  mirror: z.boolean().optional(),
});

const UrlOverrideSchema = z.strictObject({ url: z.url({ protocol: /^https?$/ }), mirror: z.boolean().optional() });

/** The built-in feed catalogue (collector/services/feeds/catalogue.ts): its upstreams' bases, and per entry a mirror URL or `disabled`. */
const CatalogueSchema = z.strictObject({
  enabled: z.boolean().default(true),
  bases: z.strictObject({ osv: UrlOverrideSchema, debianTracker: UrlOverrideSchema, alpineSecdb: UrlOverrideSchema, kev: UrlOverrideSchema, epss: UrlOverrideSchema }).partial().optional(),
  sources: z
    .record(FeedNameSchema, z.strictObject({ url: z.url({ protocol: /^https?$/ }).optional(), mirror: z.boolean().optional(), disabled: z.boolean().optional() }))
    .optional(),
});

/**
 * Where the collector keeps its store (issue 12): the embedded SQLite file (default, and
 * `serve --db`), or a PostgreSQL database that several collector processes share. A
 * PostgreSQL collector names its signing key's file (`keyFile`): there is no database file to
 * keep it beside, and every replica must sign with the same key the agents pinned.
 */
const StoreSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('sqlite'), path: z.string().min(1).max(4096) }),
  z.strictObject({
    kind: z.literal('postgres'),
    url: z
      .string()
      .max(4096)
      .refine((u) => /^postgres(ql)?:\/\//.test(u), 'expected a postgres:// or postgresql:// URL'),
    /** Connections in this process's pool. */
    maxConnections: z.number().int().min(1).max(1000).optional(),
  }),
]);
export type StoreConfig = z.infer<typeof StoreSchema>;

/**
 * Several collectors on one PostgreSQL store (services/replicas/duties.ts); not read on SQLite,
 * where the one process holds every duty.
 */
const ReplicasSchema = z.strictObject({
  /**
   * A duty's lease (rollout-tick, feed-sync, recorrelate, housekeeping) without renewal: how
   * long a crashed collector's duties wait before another takes them. Renewed every third of
   * it, so below a few seconds a collector that stalls (a long GC pause, an overloaded
   * database) hands its duties on needlessly.
   */
  leaseSeconds: z.number().int().min(1).max(300).default(15),
});

export const CollectorConfigSchema = z.strictObject({
  store: StoreSchema.optional(),
  /** The collector signing key's file; default `collector.key` beside the SQLite file. Needed with a PostgreSQL store. */
  keyFile: z.string().min(1).max(4096).optional(),
  feeds: z.array(FeedSourceSchema).max(1000).default([]),
  catalogue: CatalogueSchema.default({ enabled: true }),
  /** false: `serve` never syncs feeds itself (an offline collector, fed with bundles). */
  feedSync: z.boolean().default(true),
  policy: DuePolicySchema.default(DuePolicySchema.parse({})),
  replicas: ReplicasSchema.default({ leaseSeconds: 15 }),
});
export type CollectorConfig = z.infer<typeof CollectorConfigSchema>;

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

export function parseConfig(json: unknown, where = 'config'): CollectorConfig {
  const r = CollectorConfigSchema.safeParse(json);
  if (!r.success) throw new UsageError(`${where}: ${r.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')}`);
  const names = new Set<string>();
  for (const f of r.data.feeds) {
    if (names.has(f.name)) throw new UsageError(`${where}: feed name ${f.name} is used twice`);
    names.add(f.name);
    checkFeedUrl(f.url, f.mirror ?? false, `${where}: feed ${f.name}`);
  }
  for (const [upstream, b] of Object.entries(r.data.catalogue.bases ?? {})) checkFeedUrl(b.url, b.mirror ?? false, `${where}: catalogue base ${upstream}`);
  for (const [name, src] of Object.entries(r.data.catalogue.sources ?? {})) if (src.url !== undefined) checkFeedUrl(src.url, src.mirror ?? false, `${where}: catalogue entry ${name}`);
  return deepFreeze(r.data);
}

export async function loadConfig(path: string | undefined): Promise<CollectorConfig> {
  if (path === undefined) return parseConfig({});
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`cannot read config ${path}: ${errorMessage(err)}`);
  }
  return parseConfig(json, path);
}
