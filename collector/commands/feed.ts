/**
 * `feed import [--db FILE] [--name NAME] [--trust=KEY]... PATH...`, `feed sync [--db FILE] [--config FILE]`,
 * `feed list [--db FILE] [--json]`, `feed export [--db FILE] --out FILE [--feed NAME]...`,
 * `feed remove [--db FILE] NAME`.
 *
 * A PATH that is a signed feed bundle (`feed export` on another collector) is imported as
 * one, checked against the keys named with --trust; any other PATH is an upstream feed.
 */
import { SingleBar } from 'cli-progress';
import { basename } from 'node:path';
import { writeFileAtomic } from '../../shared/atomic-write.ts';
import { PatchwardenError, UsageError, errorMessage } from '../../shared/errors.ts';
import { isSignedFile } from '../../shared/signed-file.ts';
import { loadConfig } from '../config.ts';
import { createLogger } from '../logger.ts';
import { openCollector } from '../open-collector.ts';
import { FeedAudit } from '../services/feeds/feed-audit.ts';
import type { BundleImportResult, FeedImportResult, FeedRow } from '../services/feeds/library.ts';
import { cliActor } from './actor.ts';
import { parse } from './args.ts';

export const DEFAULT_DB = 'patchwarden.db';

type Io = { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream & { isTTY?: boolean } };

/** `almalinux9: osv: 1783 added, 0 updated, 0 unchanged`; a KEV catalog's counts are its entries. */
export function importSummary(r: FeedImportResult): string {
  const parts: string[] = [];
  const a = r.advisories;
  if (r.epss !== null) parts.push(`EPSS ${r.epss.unchanged ? `${r.parsed.epss?.entries.length ?? 0} scores unchanged` : `${r.epss.stored} scores stored, ${r.epss.replaced} replaced`} (model ${r.epss.modelVersion}, scores of ${r.epss.scoreDate.slice(0, 10)})`);
  else if (r.parsed.advisories.length > 0 || r.parsed.kev.length === 0) parts.push(`${a.added} added, ${a.updated} updated, ${a.unchanged} unchanged`);
  if (r.parsed.kev.length > 0) parts.push(`KEV ${r.kev.added} added, ${r.kev.updated} updated, ${r.kev.unchanged} unchanged`);
  // Warnings are not all skipped records: one can be a single bad CVE id in a kept record.
  if (r.warnings > 0) parts.push(`${r.warnings} warning${r.warnings === 1 ? '' : 's'}`);
  return `${r.source}: ${r.formats.join('+')}: ${parts.join('; ')}`;
}

const MAX_WARNINGS_SHOWN = 10;

function writeWarnings(r: FeedImportResult, io: Io): void {
  for (const w of r.parsed.report.warnings.slice(0, MAX_WARNINGS_SHOWN)) io.stderr.write(`warning: ${w.source}: ${w.message} (${w.code})\n`);
  if (r.warnings > MAX_WARNINGS_SHOWN) io.stderr.write(`warning: ${r.source}: ${r.warnings - MAX_WARNINGS_SHOWN} more not shown\n`);
}

function bundleSummary(path: string, r: BundleImportResult): string {
  const feeds = r.feeds.map(
    (f) =>
      `${f.source}: ${f.advisories.added} added, ${f.advisories.updated} updated, ${f.advisories.unchanged} unchanged${f.kev.added + f.kev.updated + f.kev.unchanged > 0 ? `; KEV ${f.kev.added} added, ${f.kev.updated} updated, ${f.kev.unchanged} unchanged` : ''}${f.epss === null ? '' : f.epss.unchanged ? '; EPSS unchanged' : `; EPSS ${f.epss.stored} scores stored, ${f.epss.replaced} replaced`}`,
  );
  return `${path}: feed bundle made ${r.createdAt} by ${r.signer}\n${feeds.map((f) => `  ${f}`).join('\n')}`;
}

const RAW_KEY = /^[A-Za-z0-9_-]{43}$/;

async function importCmd(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, name: { type: 'string' }, trust: { type: 'string', multiple: true } }, true);
  if (positionals.length === 0) throw new UsageError('feed import needs at least one PATH');
  if (values.name !== undefined && positionals.length > 1) throw new UsageError('--name names one PATH only');
  const trusted = values.trust ?? [];
  for (const k of trusted) if (!RAW_KEY.test(k)) throw new UsageError(`--trust ${k} is not an ed25519 public key (43 base64url characters, as feed export prints it)`);
  const collector = await openCollector({ store: { kind: 'sqlite', path: values.db } });
  let failed = 0;
  try {
    const feeds = collector.feeds;
    const audit = new FeedAudit(collector.store.audit, cliActor());
    for (const path of positionals) {
      try {
        if (await isSignedFile(path)) {
          const b = await feeds.importBundle(path, { trusted });
          await audit.bundle(path, b);
          io.stdout.write(bundleSummary(path, b) + '\n');
          continue;
        }
        const r = await feeds.importPath(path, values.name === undefined ? {} : { name: values.name });
        await audit.imported(path, r);
        io.stdout.write(importSummary(r) + '\n');
        writeWarnings(r, io);
      } catch (err) {
        failed++;
        await audit.refused(path, err);
        io.stderr.write(`${path}: refused, nothing stored: ${errorMessage(err)}\n`);
      }
    }
  } finally {
    await collector.close();
  }
  return failed > 0 ? 1 : 0;
}

async function exportCmd(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, out: { type: 'string' }, feed: { type: 'string', multiple: true } });
  if (values.out === undefined) throw new UsageError('feed export needs --out FILE');
  // A collector that only mirrors feeds may never have served: it gets its key here, the one `serve` would make.
  // The key is had before the database is opened (read-only: nothing else is written).
  const collector = await openCollector({
    store: { kind: 'sqlite', path: values.db, readonly: true },
    key: 'create',
    logger: createLogger({ level: 'warn', destination: { write: (l: string) => io.stderr.write(l) } }),
  });
  let exported;
  let publicKey: string;
  try {
    const { privateKeyPem: key, made, ...pub } = collector.key();
    publicKey = pub.publicKey;
    if (made) io.stderr.write(`made the collector key ${collector.keyPath()} (keep it: bundles are trusted by its public key)\n`);
    exported = await collector.feeds.exportBundle({ ...(values.feed === undefined ? {} : { sources: values.feed }), key, publicKey });
  } finally {
    await collector.close();
  }
  try {
    // 0600 whatever the umask, as every file the collector writes; the operator carrying it owns it.
    await writeFileAtomic(values.out, exported.bytes, 0o600);
  } catch (err) {
    throw new PatchwardenError(`cannot write ${values.out}: ${errorMessage(err)}`, 'PW_ERR_SOURCE_UNAVAILABLE', { cause: err });
  }
  for (const f of exported.feeds) io.stdout.write(`${f.source}: ${f.advisories} advisories, ${f.kev} KEV entries${f.epss > 0 ? `, ${f.epss} EPSS scores` : ''}\n`);
  io.stdout.write(`wrote ${values.out} (${exported.bytes.length} bytes), signed by this collector's key ${publicKey}\n`);
  io.stdout.write(`on the offline collector: patchwarden-collector feed import --trust=${publicKey} ${basename(values.out)}\n`);
  return 0;
}

async function syncCmd(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, config: { type: 'string' } });
  // No config: the catalogue's entries for the enrolled hosts' ecosystems, and KEV.
  const config = await loadConfig(values.config);
  const collector = await openCollector({ store: { kind: 'sqlite', path: values.db } });
  let failed = 0;
  const tty = io.stderr.isTTY ?? false;
  try {
    const feeds = collector.feeds;
    const sources = await feeds.sources(config);
    if (sources.length === 0) throw new UsageError(`${values.config ?? 'the catalogue'}: nothing to sync (the config lists no feeds and disables the catalogue)`);
    const bars = new Map<string, { bar: SingleBar; started: boolean }>();
    await feeds.sync(sources, new FeedAudit(collector.store.audit, cliActor()), {
      onProgress: (name, received, total) => {
        if (!tty || total === null) return;
        let b = bars.get(name);
        if (b === undefined) {
          b = { bar: new SingleBar({ format: `${name} [{bar}] {percentage}% {value}/{total} bytes`, stream: io.stderr }), started: false };
          bars.set(name, b);
        }
        if (!b.started) {
          b.bar.start(total, 0);
          b.started = true;
        }
        b.bar.update(received);
      },
      onOutcome: (src, outcome) => {
        const b = bars.get(src.name);
        if (b?.started === true) b.bar.stop();
        if (outcome.status === 'imported') {
          io.stdout.write(importSummary(outcome.result) + '\n');
          writeWarnings(outcome.result, io);
        } else if (outcome.status === 'not-modified') {
          io.stdout.write(`${src.name}: not modified\n`);
        } else {
          failed++;
          io.stderr.write(`${src.name}: failed, keeping the last good data: ${outcome.error} (${outcome.code})\n`);
        }
      },
    });
  } finally {
    await collector.close();
  }
  return failed > 0 ? 1 : 0;
}

function age(iso: string | null, now: Date): string {
  if (iso === null) return 'never';
  const h = (now.getTime() - Date.parse(iso)) / 3600_000;
  return h < 48 ? `${h.toFixed(1)}h` : `${(h / 24).toFixed(1)}d`;
}

export function feedListText(rows: readonly FeedRow[], now: Date): string {
  const w = Math.max(6, ...rows.map((r) => r.source.length)) + 2;
  const k = Math.max(4, ...rows.map((r) => r.kind.length)) + 2;
  const lines = ['source'.padEnd(w) + 'kind'.padEnd(k) + 'records'.padStart(8) + '  newest      checked   status'];
  for (const r of rows) {
    lines.push(
      r.source.padEnd(w) +
        r.kind.padEnd(k) +
        String(r.records).padStart(8) +
        `  ${(r.newest ?? '-').slice(0, 10).padEnd(10)}` +
        `  ${age(r.checkedAt, now).padEnd(8)}` +
        `  ${r.lastError === null ? 'ok' : `last attempt failed: ${r.lastError}`}`,
    );
  }
  return lines.join('\n') + '\n';
}

async function listCmd(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, json: { type: 'boolean', default: false } });
  const collector = await openCollector({ store: { kind: 'sqlite', path: values.db, readonly: true } });
  try {
    const rows = await collector.feeds.list();
    io.stdout.write(values.json ? JSON.stringify(rows, null, 2) + '\n' : feedListText(rows, new Date()));
  } finally {
    await collector.close();
  }
  return 0;
}

/** `feed remove NAME`: a serving collector on this database re-judges the hosts at its next tick. */
async function removeCmd(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { db: { type: 'string', default: DEFAULT_DB } }, true);
  if (positionals.length !== 1) throw new UsageError('feed remove needs one feed NAME (feed list shows them)');
  const name = positionals[0] as string;
  const collector = await openCollector({ store: { kind: 'sqlite', path: values.db } });
  try {
    const r = await collector.feeds.remove(name, cliActor());
    io.stdout.write(`${name}: removed, with ${r.advisories} advisories and ${r.kev} KEV entries\n`);
  } finally {
    await collector.close();
  }
  return 0;
}

export async function feedCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'import':
      return importCmd(rest, io);
    case 'sync':
      return syncCmd(rest, io);
    case 'list':
      return listCmd(rest, io);
    case 'export':
      return exportCmd(rest, io);
    case 'remove':
      return removeCmd(rest, io);
    default:
      throw new UsageError(`feed ${sub ?? ''}: expected import, sync, list, export or remove`);
  }
}
