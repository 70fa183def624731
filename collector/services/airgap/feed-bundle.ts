/**
 * Feed bundles: an online collector's advisories and KEV entries, carried to an offline
 * collector as one signed file (`feed export` -> `feed import`, DESIGN "Air-gapped mode").
 *
 * The body is gzip'd JSON lines: a `{"feed": {source, kind}}` line, then that feed's
 * `{"advisory": …}` and `{"kev": …}` lines, for each feed; a feed holding the EPSS score set
 * adds `{"epssSet": {modelVersion, scoreDate}}` and one `{"epss": [cve, score, percentile]}`
 * line per score, replacing the offline collector's set whole. It is signed with the exporting
 * collector's key; the importing side names the keys it trusts (`--trust=KEY`), since an
 * offline collector has no other way to know who made the file. Every line is checked
 * with the schemas a feed parser's output is held to, and the whole bundle is stored in
 * one transaction or not at all. A bundle older than the last one imported for any of its
 * feeds is refused: it would roll the advisories back (a withdrawal, a corrected range).
 */
import { basename } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as z from 'zod';
import { InflateLimitError, MalformedInputError, PatchwardenError, UsageError, errorMessage, issueText } from '../../../shared/errors.ts';
import { encodeSignedFile, readSignedFile } from '../../../shared/signed-file.ts';
import type { Correlator } from '../../domain/correlate/correlator.ts';
import { checkFeedName, FeedNameSchema } from '../../domain/feeds/feed-name.ts';
import { InflateBudget, inflateWhole } from '../feeds/inflate.ts';
import type { EpssSet } from '../../domain/feeds/epss.ts';
import { type Advisory, AdvisorySchema, CVE_ID, type KevEntry, KevEntrySchema } from '../../domain/feeds/types.ts';
import type { FeedInfo, ImportResult, KevCounts } from '../../store/advisories.ts';
import type { EpssImport } from '../../store/epss.ts';
import type { AsyncStore } from '../../store/store.ts';

/** A bundle of every feed a collector holds is tens of MB gzip'd; this bounds a hostile one. */
export const MAX_BUNDLE_BYTES = 1024 * 1024 * 1024;
/** Inflated, the body is held and split into lines: the feed reader's total (inflate.ts), and its ratio. */
const MAX_UNPACKED_BYTES = 2 * 1024 * 1024 * 1024;

/** The signer id of a collector's bundles: its public key's first 16 characters, so an importer trusting several keys knows which to check. */
export function feedSigner(publicKey: string): string {
  return `collector-${publicKey.slice(0, 16)}`;
}

const LineSchema = z.union([
  z.strictObject({ feed: z.strictObject({ source: FeedNameSchema, kind: z.string().min(1).max(64).regex(/^[a-z0-9+-]+$/, 'not a feed kind') }) }),
  z.strictObject({ advisory: AdvisorySchema }),
  z.strictObject({ kev: KevEntrySchema }),
  z.strictObject({ epssSet: z.strictObject({ modelVersion: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'not a model version'), scoreDate: z.iso.datetime() }) }),
  z.strictObject({ epss: z.tuple([z.string().max(32).regex(CVE_ID, 'not a CVE id'), z.number().min(0).max(1), z.number().min(0).max(1)]) }),
]);

export interface BundledFeed {
  feed: FeedInfo;
  advisories: Advisory[];
  kev: KevEntry[];
  epss?: EpssSet;
}

export async function exportFeedBundle(
  store: AsyncStore['advisories'],
  opts: { sources?: readonly string[]; key: string; publicKey: string; now?: Date },
): Promise<{ bytes: Buffer; feeds: { source: string; advisories: number; kev: number; epss: number }[] }> {
  const held = await store.feeds();
  for (const s of opts.sources ?? []) if (!held.some((f) => f.source === s)) throw new UsageError(`no feed named ${s} (see feed list)`);
  const chosen = held.filter((f) => (opts.sources === undefined || opts.sources.includes(f.source)) && f.lastError === null);
  if (chosen.length === 0) throw new UsageError('there is no feed to export: import or sync feeds first');
  // A name stored before the rule was one (feed-name.ts) would make every importer refuse the whole bundle.
  for (const f of chosen) checkFeedName(f.source, 'stored before feed names had one rule: import the feed again with --name');
  const lines: string[] = [];
  const feeds: { source: string; advisories: number; kev: number; epss: number }[] = [];
  for (const f of chosen) {
    lines.push(JSON.stringify({ feed: { source: f.source, kind: f.kind } }));
    const counts = { source: f.source, advisories: 0, kev: 0, epss: 0 };
    for await (const r of store.feedRecords(f.source)) {
      lines.push(JSON.stringify(r));
      if ('advisory' in r) counts.advisories++;
      else counts.kev++;
    }
    const set = await store.epssSetOf(f.source);
    if (set !== null) {
      lines.push(JSON.stringify({ epssSet: { modelVersion: set.modelVersion, scoreDate: set.scoreDate } }));
      for (const e of set.entries) lines.push(JSON.stringify({ epss: [e.cve, e.score, e.percentile] }));
      counts.epss = set.entries.length;
    }
    feeds.push(counts);
  }
  const body = gzipSync(Buffer.from(lines.join('\n') + '\n', 'utf8'));
  return { bytes: encodeSignedFile({ kind: 'feeds', signer: feedSigner(opts.publicKey), createdAt: opts.now ?? new Date(), body, key: opts.key }), feeds };
}

/** The feeds in a checked body; any line that does not hold refuses the bundle, since a signed bundle with a bad line is not one to trust in part. */
async function parseBody(body: Buffer): Promise<BundledFeed[]> {
  let data: Buffer;
  try {
    data = await inflateWhole(body, 'the bundle', new InflateBudget({ maxInflatedBytes: MAX_UNPACKED_BYTES }), MAX_UNPACKED_BYTES, () => new InflateLimitError(`the bundle inflates past ${MAX_UNPACKED_BYTES} bytes`));
  } catch (err) {
    if (err instanceof PatchwardenError) throw err;
    throw new MalformedInputError(`the signed body is not gzip: ${errorMessage(err)}`, { cause: err });
  }
  const feeds: BundledFeed[] = [];
  let lineNo = 0;
  // Line by line from the buffer: one string of the whole body could pass V8's string limit.
  for (let start = 0; start < data.length; ) {
    let end = data.indexOf(10, start);
    if (end === -1) end = data.length;
    const line = data.toString('utf8', start, end);
    start = end + 1;
    lineNo++;
    if (line === '') continue;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw new MalformedInputError(`line ${lineNo} of the bundle is not JSON`);
    }
    const parsed = LineSchema.safeParse(json);
    if (!parsed.success) throw new MalformedInputError(`line ${lineNo} of the bundle is not a feed, advisory or KEV entry (or EPSS score): ${issueText(parsed.error)}`);
    const v = parsed.data;
    if ('feed' in v) {
      if (feeds.some((f) => f.feed.source === v.feed.source)) throw new MalformedInputError(`line ${lineNo}: feed ${v.feed.source} is in the bundle twice`);
      feeds.push({ feed: { source: v.feed.source, kind: v.feed.kind, location: null }, advisories: [], kev: [] });
      continue;
    }
    const current = feeds[feeds.length - 1];
    if (current === undefined) throw new MalformedInputError(`line ${lineNo}: a record before any feed line`);
    if ('advisory' in v) current.advisories.push(v.advisory);
    else if ('kev' in v) current.kev.push(v.kev);
    else if ('epssSet' in v) {
      if (current.epss !== undefined) throw new MalformedInputError(`line ${lineNo}: feed ${current.feed.source} has two EPSS sets`);
      current.epss = { ...v.epssSet, entries: [] };
    } else {
      if (current.epss === undefined) throw new MalformedInputError(`line ${lineNo}: an EPSS score before its feed's epssSet line`);
      const [cve, score, percentile] = v.epss;
      current.epss.entries.push({ cve, score, percentile });
    }
  }
  // The store takes each set whole: a CVE twice would be refused half-way by the table's key.
  for (const f of feeds) {
    if (f.epss !== undefined && new Set(f.epss.entries.map((e) => e.cve)).size !== f.epss.entries.length) throw new MalformedInputError(`feed ${f.feed.source}: a CVE has two EPSS scores`);
  }
  if (feeds.filter((f) => f.epss !== undefined).length > 1) throw new MalformedInputError('the bundle holds two EPSS sets; a collector keeps one');
  if (feeds.length === 0) throw new MalformedInputError('the bundle holds no feed');
  return feeds;
}

export interface BundleImportResult {
  createdAt: string;
  signer: string;
  feeds: { source: string; advisories: Omit<ImportResult, 'changed'>; kev: KevCounts; epss: EpssImport | null }[];
}

export async function importFeedBundle(
  store: AsyncStore['advisories'],
  file: string,
  opts: { trusted: readonly string[]; correlator?: Correlator; now?: Date },
): Promise<BundleImportResult> {
  let checked;
  try {
    checked = await readSignedFile(file, 'the bundle', {
      kind: 'feeds',
      maxBodyBytes: MAX_BUNDLE_BYTES,
      keyOf: (signer) => opts.trusted.find((k) => feedSigner(k) === signer),
    });
  } catch (err) {
    if (err instanceof PatchwardenError && err.code === 'PW_ERR_FILE_FOREIGN' && opts.trusted.length === 0) {
      throw new PatchwardenError(`${err.message}: name the exporting collector's public key with --trust=KEY (feed export prints it)`, err.code, { cause: err });
    }
    throw err;
  }
  const { header, body } = checked;
  const feeds = await parseBody(body);
  for (const f of feeds) {
    const last = await store.bundleCreatedAt(f.feed.source);
    if (last !== null && last > header.createdAt) {
      throw new PatchwardenError(`the bundle was made at ${header.createdAt}, but feed ${f.feed.source} holds a newer bundle (${last}): importing it would roll the feed back`, 'PW_ERR_FILE_STALE');
    }
  }
  const location = `bundle ${basename(file)} (${header.createdAt})`;
  const results = await store.importBundle(
    feeds.map((f) => ({ ...f, feed: { ...f.feed, location } })),
    header.createdAt,
    opts.now,
  );
  for (const r of results) opts.correlator?.apply(r.advisories.changed);
  return {
    createdAt: header.createdAt,
    signer: header.signer,
    feeds: results.map((r, i) => ({
      source: feeds[i]?.feed.source ?? '',
      advisories: { added: r.advisories.added, updated: r.advisories.updated, unchanged: r.advisories.unchanged },
      kev: r.kev,
      epss: r.epss,
    })),
  };
}
