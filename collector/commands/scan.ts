/**
 * `patchwarden-collector scan --inventory FILE [--feed PATH...] [--db FILE [--record]]
 * [--json|--csv] [--sort package|fix-first] [--policy FILE] [--now ISO]`: one-shot correlation of one inventory, for
 * CI pipelines and spot checks. With `--db`, the host's finding history (first seen,
 * resolved) and accepted risks apply; `--record` also writes this scan into the history.
 *
 * Advisories come from `--feed` paths (parsed in memory, nothing stored) and/or the
 * database a collector keeps (`--db`). Exit: 0 no open finding is overdue, 1 one is,
 * 2 errors (unreadable inventory, a feed that fails to parse, bad usage), 3 the host was
 * not assessed: no given feed has advisories for its ecosystem (correlate/coverage.ts),
 * so no findings means nobody looked, never "clean".
 */
import { open, readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { InputTooLargeError, MalformedInputError, PatchwardenError, UsageError, errorMessage } from '../../shared/errors.ts';
import { type Findings, InventorySchema } from '../../shared/protocol.ts';
import { Correlator, type FeedState } from '../domain/correlate/correlator.ts';
import { CoverageView, inventoryReadable, type FeedCoverage } from '../domain/correlate/coverage.ts';
import { DuePolicySchema, type DuePolicy } from '../domain/correlate/policy.ts';
import type { Advisory } from '../domain/feeds/types.ts';
import { type EpssScore, type KevInfo } from '../domain/correlate/findings.ts';
import { FINDING_SORTS, sortFindings, type FindingSort } from '../domain/correlate/fix-order.ts';
import { parseFeedPath } from '../services/feeds/import.ts';
import { openCollector } from '../open-collector.ts';
import { cliActor } from './actor.ts';
import { parse } from './args.ts';
import { findingsCsv } from './findings-csv.ts';

/** 200k packages (the schema's limit) at ~150 bytes each is 30 MB; twice that is no inventory. */
export const MAX_INVENTORY_BYTES = 64 * 1024 * 1024;
const READ_CHUNK = 1024 * 1024;
/** Stored advisories handed to the correlator at once. */
const ADVISORY_PAGE = 1000;

/** scan's exit codes: 3 is its own so a pipeline can tell "nobody looked" from "clean" (0) and "overdue" (1). */
export const SCAN_EXIT = Object.freeze({ clean: 0, overdue: 1, error: 2, notAssessed: 3 });

/**
 * Reads at most `max` bytes: the size is checked before reading, and again while reading,
 * since a FIFO or /dev/stdin has no size up front and /dev/zero never ends.
 */
async function readBounded(path: string, max: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    if (size > max) throw new InputTooLargeError(`inventory ${path} is ${size} bytes, over the ${max}-byte limit`);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, max + 1 - total));
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      chunks.push(buf.subarray(0, bytesRead));
      total += bytesRead;
      if (total > max) throw new InputTooLargeError(`inventory ${path} is over the ${max}-byte limit`);
    }
    return Buffer.concat(chunks, total);
  } finally {
    await fh.close();
  }
}

export async function readInventoryFile(path: string, maxBytes = MAX_INVENTORY_BYTES) {
  let text: string;
  try {
    text = (await readBounded(path, maxBytes)).toString('utf8');
  } catch (err) {
    if (err instanceof PatchwardenError) throw err;
    throw new MalformedInputError(`cannot read inventory ${path}: ${(err as Error).message}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new MalformedInputError(`inventory ${path} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  const r = InventorySchema.safeParse(json);
  if (!r.success) {
    const issues = r.error.issues.slice(0, 3).map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new MalformedInputError(`inventory ${path} is not a patchwarden.inventory/1 document: ${issues.join('; ')}`);
  }
  return r.data;
}

export async function readPolicyFile(path: string | undefined): Promise<DuePolicy> {
  if (path === undefined) return DuePolicySchema.parse({});
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`cannot read policy ${path}: ${errorMessage(err)}`);
  }
  const r = DuePolicySchema.safeParse(json);
  if (!r.success) throw new UsageError(`policy ${path}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return Object.freeze(r.data);
}

export async function scanCommand(argv: string[], io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream }): Promise<number> {
  const { values } = parse(argv, {
    inventory: { type: 'string' },
    feed: { type: 'string', multiple: true },
    db: { type: 'string' },
    json: { type: 'boolean', default: false },
    csv: { type: 'boolean', default: false },
    policy: { type: 'string' },
    now: { type: 'string' },
    record: { type: 'boolean', default: false },
    sort: { type: 'string', default: 'package' },
  });
  if (!(FINDING_SORTS as readonly string[]).includes(values.sort)) throw new UsageError(`--sort must be one of ${FINDING_SORTS.join(', ')}`);
  const sort = values.sort as FindingSort;
  if (values.record && values.db === undefined) throw new UsageError('--record needs --db FILE');
  if (values.inventory === undefined) throw new UsageError('--inventory FILE is required');
  if (values.json && values.csv) throw new UsageError('--json and --csv exclude each other');
  const feeds = values.feed ?? [];
  if (feeds.length === 0 && values.db === undefined) throw new UsageError('give advisories with --feed PATH or --db FILE');
  const now = values.now === undefined ? new Date() : new Date(values.now);
  if (Number.isNaN(now.getTime())) throw new UsageError(`--now ${values.now ?? ''} is not a date`);
  const policy = await readPolicyFile(values.policy);
  const inventory = await readInventoryFile(values.inventory);

  const correlator = new Correlator();
  const kev = new Map<string, KevInfo>();
  const epss = new Map<string, EpssScore>();
  const feedStates: FeedState[] = [];
  const coverage: FeedCoverage[] = [];
  const hostKey = inventory.host.machineId ?? inventory.host.hostname;
  for (const path of feeds) {
    const parsed = await parseFeedPath(path);
    for (const w of parsed.report.warnings.slice(0, 20)) io.stderr.write(`warning: ${w.source}: ${w.message} (${w.code})\n`);
    correlator.apply(parsed.advisories);
    for (const k of parsed.kev) kev.set(k.cve, { dueDate: k.dueDate });
    for (const e of parsed.epss?.entries ?? []) epss.set(e.cve, { score: e.score, percentile: e.percentile });
    // Files given on the command line are as fresh as the operator says they are.
    feedStates.push({ source: path, newest: parsed.newest, importedAt: now.toISOString() });
    const ecosystems = new Set<string>();
    for (const a of parsed.advisories) for (const e of a.affected) ecosystems.add(e.ecosystem);
    coverage.push({ source: path, checkedAt: now.toISOString(), ecosystems: [...ecosystems] });
  }

  // The feeds above may fail; the database is opened only once they have parsed.
  const opened = values.db === undefined ? undefined : await openCollector({ store: { kind: 'sqlite', path: values.db, readonly: !values.record } });
  const scans = opened?.recordedScans;
  let doc: Findings;
  const feedErrors: string[] = [];
  try {
    if (scans !== undefined) {
      const stored = await scans.evidence();
      // In pages, so the stored advisories are never all in memory at once besides the index.
      let page: Advisory[] = [];
      for await (const a of stored.advisories) {
        page.push(a);
        if (page.length === ADVISORY_PAGE) {
          correlator.apply(page);
          page = [];
        }
      }
      correlator.apply(page);
      for (const [cve, k] of stored.kev) kev.set(cve, k);
      // An EPSS file given with --feed is the operator's newer set: it wins over the stored one.
      if (epss.size === 0) for (const [cve, s] of stored.epss) epss.set(cve, s);
      coverage.push(...stored.coverage);
      feedStates.push(...stored.feeds);
      // The data is the last good import, but the operator must know the feed is failing.
      feedErrors.push(...stored.feedErrors);
    }
    doc = correlator.findings(inventory, {
      policy,
      now,
      kev,
      epss,
      feeds: feedStates,
      ...(scans === undefined ? {} : await scans.historyOf(hostKey, now)),
    });
    doc.warnings.push(...feedErrors);
    const assessment = new CoverageView(coverage, now, policy.staleFeedHours).assess({ ecosystem: inventory.host.ecosystem, inventoryReadable: inventoryReadable({ packageCount: inventory.packages.length }) });
    doc.assessment = { state: assessment.state, reason: assessment.reason };
    if (assessment.state !== 'assessed') doc.warnings.unshift(`${assessment.state}: ${assessment.reason}`);
    // First-seen and resolved times set due dates: a recorded scan changes what the collector believes, so it is audited.
    if (values.record && scans !== undefined) await scans.record(hostKey, doc.findings, now, cliActor(), resolve(values.inventory));
  } finally {
    await opened?.close();
  }
  doc.findings = sortFindings(doc.findings, sort);
  if (values.json) io.stdout.write(JSON.stringify(doc, null, 2) + '\n');
  else if (values.csv) io.stdout.write(findingsCsv(doc));
  else io.stdout.write(findingsText(doc));
  if (doc.findings.some((f) => f.overdue)) return SCAN_EXIT.overdue;
  return doc.assessment.state === 'not-assessed' ? SCAN_EXIT.notAssessed : SCAN_EXIT.clean;
}

function findingsText(doc: Findings): string {
  const lines = [`${doc.host} [${doc.ecosystem ?? 'no ecosystem'}] kernel ${doc.kernel.release}${doc.kernel.managed ? '' : ' (unmanaged)'}`];
  if (doc.assessment !== undefined) lines.push(`assessment: ${doc.assessment.state}`);
  for (const w of doc.warnings) lines.push(`warning: ${w}`);
  const counts = new Map<string, number>();
  for (const f of doc.findings) counts.set(f.status, (counts.get(f.status) ?? 0) + 1);
  const overdue = doc.findings.filter((f) => f.overdue).length;
  lines.push(`${doc.findings.length} findings (${[...counts].map(([s, n]) => `${n} ${s}`).join(', ') || 'none'}), ${overdue} overdue`);
  for (const f of doc.findings) {
    const flags = [f.kev ? 'KEV' : '', f.overdue ? 'OVERDUE' : '', f.epss == null ? '' : `EPSS ${(f.epss.score * 100).toFixed(2)}%`].filter((s) => s !== '').join(' ');
    lines.push(`${f.advisory.padEnd(18)} ${f.severity.padEnd(8)} ${f.status.padEnd(20)} due ${f.due ?? '-'.padEnd(10)} ${f.package} ${f.installed} -> ${f.fixed ?? '(no fix)'} ${flags}`.trimEnd());
  }
  return lines.join('\n') + '\n';
}
