/**
 * The collector's configuration file (JSON), validated once at start-up and frozen
 * (the fastify habit): inside the program the types are trusted.
 */
import { readFile } from 'node:fs/promises';
import * as z from 'zod';
import { UsageError, errorMessage } from '../shared/errors.ts';
import { DuePolicySchema } from './correlate/policy.ts';
import { FeedNameSchema } from './feeds/feed-name.ts';

const FeedSourceSchema = z.strictObject({
  /** The feed's name in `feed list` and in reports. */
  name: FeedNameSchema,
  url: z.url({ protocol: /^https?$/ }),
  /** The whole download, every attempt and wait included (collector/feeds/sync.ts); default 30 minutes. */
  deadlineSeconds: z.number().int().min(1).max(86_400).optional(),
});

export const CollectorConfigSchema = z.strictObject({
  feeds: z.array(FeedSourceSchema).max(1000).default([]),
  policy: DuePolicySchema.default(DuePolicySchema.parse({})),
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
  }
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
