/**
 * Correlation at scale for `npm run bench` (issue 10, defect 1): inventories of 10,000,
 * 100,000 and 200,000 binaries spread over 10 source packages (the shape that made
 * correlation quadratic: 200,000 took 110 s), labelled Debian:11 and matched against the
 * real DSA and DLA lists. Each is timed beside JSON.parse of the same inventory in the
 * same run, and the cost per package at the largest size is compared with the smallest:
 * linear growth keeps it within 2x. 200,000 is over the per-report limit (50,000): the
 * gateway refuses such a report, and correlation must still be linear for what is stored.
 *
 * PW_BENCH_CORRELATE_SIZES=1000,5000 measures other sizes (a quick check of the section).
 */
import { join } from 'node:path';
import { Correlator } from '../collector/domain/correlate/correlator.ts';
import { DEFAULT_POLICY } from '../collector/domain/correlate/policy.ts';
import { inventoryOf, manyBinaries } from '../shared/testing/correlate-fixtures.ts';
import { parseFeedPath } from '../collector/services/feeds/import.ts';
import type { Advisory } from '../collector/domain/feeds/types.ts';

const DEFAULT_SIZES = [10_000, 100_000, 200_000];
/** Debian:11 sources with the most DSA/DLA entries in the real lists. */
const SOURCES = ['chromium', 'firefox-esr', 'thunderbird', 'webkit2gtk', 'openssl', 'curl', 'ghostscript', 'tiff', 'imagemagick', 'xen'];
const NOW = new Date('2026-11-26T18:00:00.000Z');
/** The largest size's cost per package may be this many times the smallest's. */
const LINEAR_WITHIN = 2;

/** bench.ts's figure(), passed in (bench.ts runs its main on import). */
export type MakeFigure<F> = (
  section: 'correlate-scale',
  name: string,
  value: number,
  unit: 'ms',
  baseline: { name: string; value: number } | null,
  options?: { aim?: (value: number, ratio: number | null) => { text: string; met: boolean }; note?: string; invalid?: string | null },
) => F;

function sizesFromEnv(): number[] {
  const text = process.env.PW_BENCH_CORRELATE_SIZES;
  if (text === undefined || text === '') return DEFAULT_SIZES;
  const sizes = text.split(',').map((s) => Number(s.trim()));
  if (sizes.length === 0 || sizes.some((n) => !Number.isInteger(n) || n < 10)) throw new Error(`PW_BENCH_CORRELATE_SIZES=${text}: expected whole numbers from 10, comma-separated`);
  return sizes;
}

function best(runs: number, fn: () => void): number {
  let ms = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    fn();
    ms = Math.min(ms, performance.now() - t);
  }
  return ms;
}

export async function correlateScaleSection<F>(figure: MakeFigure<F>, progress: (line: string) => void, dataDir: string): Promise<{ figures: F[]; raw: unknown }> {
  const sizes = sizesFromEnv();
  progress('correlate-scale: loading the Debian DSA and DLA lists');
  const advisories: Advisory[] = [];
  for (const file of ['DSA-list.gz', 'DLA-list.gz']) for (const a of (await parseFeedPath(join(dataDir, 'debian', file))).advisories) advisories.push(a);
  const rows: { packages: number; ms: number; parseMs: number; findings: number; frameMb: number }[] = [];
  for (const n of sizes) {
    progress(`correlate-scale: ${n} binaries of ${SOURCES.length} source packages`);
    const inv = inventoryOf('Debian:11', 'deb', manyBinaries(n, SOURCES));
    const text = JSON.stringify(inv);
    const parseMs = best(3, () => {
      JSON.parse(text);
    });
    let ms = Infinity;
    let findings = 0;
    // A new Correlator per run (its index built outside the clock), so each run matches the whole inventory.
    for (let i = 0; i < 2; i++) {
      const c = new Correlator();
      c.apply(advisories);
      const t = performance.now();
      findings = c.findings(inv, { policy: DEFAULT_POLICY, now: NOW, kev: new Map() }).findings.length;
      ms = Math.min(ms, performance.now() - t);
    }
    rows.push({ packages: n, ms, parseMs, findings, frameMb: Buffer.byteLength(text) / 1e6 });
  }
  const first = rows[0];
  const figures = rows.map((r, i) =>
    figure('correlate-scale', `findings() of ${r.packages} binaries over ${SOURCES.length} source packages`, r.ms, 'ms', { name: `JSON.parse of it (${r.frameMb.toFixed(1)} MB)`, value: r.parseMs }, {
      note: `${r.findings} findings; ${((r.ms * 1000) / r.packages).toFixed(2)} us per package`,
      ...(i === rows.length - 1 && first !== undefined && rows.length > 1
        ? {
            aim: (value: number) => {
              const growth = value / r.packages / (first.ms / first.packages);
              return { text: `per package <= ${LINEAR_WITHIN}x the ${first.packages}-package run's (${growth.toFixed(2)}x)`, met: growth <= LINEAR_WITHIN };
            },
          }
        : {}),
    }),
  );
  const intro = `inventories of N binaries spread evenly over ${SOURCES.length} Debian:11 source packages, each at 0.1-1 (affected by every advisory of its source), matched against the real DSA and DLA lists (${advisories.length} advisories); a new Correlator per run, best of 2; baseline JSON.parse of the same inventory, best of 3`;
  return { figures, raw: { intro, sources: SOURCES, advisories: advisories.length, rows } };
}
