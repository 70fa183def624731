/**
 * Feed parsing cost against its floor: the three real AlmaLinux OSV exports through
 * readFeedFile + parseOsv, versus only gunzip + JSON.parse of each line. Run directly
 * (`node --import tsx scripts/bench-feeds.ts [DATA_DIR]`) or from the bench runner.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parseOsv } from '../collector/domain/feeds/osv.ts';
import { readFeedFile } from '../collector/services/feeds/reader.ts';
import { FeedReport } from '../collector/domain/feeds/types.ts';

const FILES = ['almalinux8.osv.jsonl.gz', 'almalinux9.osv.jsonl.gz', 'almalinux10.osv.jsonl.gz'];

async function baseline(paths: readonly string[]): Promise<number> {
  let n = 0;
  for (const p of paths) {
    const text = gunzipSync(await readFile(p)).toString('utf8');
    for (const line of text.split('\n')) {
      if (line !== '') {
        JSON.parse(line);
        n++;
      }
    }
  }
  return n;
}

async function parse(paths: readonly string[]): Promise<number> {
  let n = 0;
  const report = new FeedReport();
  for (const p of paths) {
    for await (const { name, record } of readFeedFile(p, { report })) {
      parseOsv(record, report, name);
      n++;
    }
  }
  return n;
}

/** `dataDir` is the shared data folder (the one holding `osv/`). Each side runs 3 times; the best run counts. */
export async function benchFeedParse(dataDir: string): Promise<{ parseMs: number; baselineMs: number; advisories: number }> {
  const paths = FILES.map((f) => join(dataDir, 'osv', f));
  let parseMs = Infinity;
  let baselineMs = Infinity;
  let advisories = 0;
  for (let i = 0; i < 3; i++) {
    let t = performance.now();
    const lines = await baseline(paths);
    baselineMs = Math.min(baselineMs, performance.now() - t);
    t = performance.now();
    advisories = await parse(paths);
    parseMs = Math.min(parseMs, performance.now() - t);
    if (lines !== advisories) throw new Error(`baseline saw ${lines} lines, the parser ${advisories} advisories`);
  }
  return { parseMs: Math.round(parseMs), baselineMs: Math.round(baselineMs), advisories };
}

if (import.meta.url === `file://${process.argv[1] ?? ''}`) {
  const dir = process.argv[2] ?? join(import.meta.dirname, '../../shared/data');
  const r = await benchFeedParse(dir);
  process.stdout.write(`${JSON.stringify({ ...r, ratio: Math.round((r.parseMs / r.baselineMs) * 100) / 100 })}\n`);
}
