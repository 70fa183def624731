/**
 * The pre-authentication frame flood of `npm run bench` (issue 10, defect 3): 64
 * unauthenticated connections each send one 32 MiB text frame right after their challenge,
 * against dist/collector.js serve in its own process (127.0.0.1:0, a temporary SQLite
 * file), whose RSS is read from /proc every 20 ms. Before the fix each frame was buffered,
 * decoded and parsed (a collector went from 487 to 1,954 MiB); now each is refused at its
 * frame header (error PW_ERR_INPUT_TOO_LARGE, close 1009).
 *
 * Baselines from the same run, on the same collector: its RSS idle (after one enroll and
 * one hello), and its peak under the same 64 connections sending a 1 KiB frame each (what
 * 64 strangers cost at least). Afterwards an enrolled agent must still get its welcome and
 * /healthz must answer, or the figures are marked invalid.
 *
 * PW_BENCH_PREAUTH_COLLECTOR=FILE runs that collector build instead of dist/collector.js
 * (not rebuilt), to measure another version (an older one: before the fix) the same way.
 */
import { ensureBuilt } from './dist-fresh.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newKeys, TestAgent } from '../shared/testing/fake-agent.ts';
import { preAuthFrameFlood, type PreAuthFlood, rssMiB, serveInChild } from '../shared/testing/collector-process.ts';
import { openDatabase } from '../collector/store/db.ts';
import { storeOn } from '../collector/store/store.ts';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../shared/protocol.ts';

const ROOT = join(import.meta.dirname, '..');

export const PREAUTH = { connections: 64, frameBytes: DEFAULT_MAX_MESSAGE_BYTES, smallFrameBytes: 1024, aimGrowthMb: 50 } as const;

/** bench.ts's figure(), passed in (bench.ts runs its main on import). */
export type MakeFigure<F> = (
  section: 'preauth',
  name: string,
  value: number,
  unit: 'MB' | 'ms',
  baseline: { name: string; value: number } | null,
  options?: { aim?: (value: number, ratio: number | null) => { text: string; met: boolean }; note?: string; invalid?: string | null },
) => F;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Median of `n` RSS samples `everyMs` apart: one sample can land on a GC. */
async function steadyRss(pid: number, n = 10, everyMs = 100): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    xs.push(rssMiB(pid));
    await sleep(everyMs);
  }
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)] ?? NaN;
}

/** `64x PW_ERR_INPUT_TOO_LARGE/1009`: how the flood's connections were refused. */
function refusalSummary(flood: PreAuthFlood): string {
  const counts = new Map<string, number>();
  for (const r of flood.refusals) {
    const key = `${r.code ?? 'no error'}/${r.closeCode}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${n}x ${k}`).join(', ');
}

function refusalProblems(flood: PreAuthFlood, want: { code: string; closeCode: number }): string[] {
  const off = flood.refusals.filter((r) => r.code !== want.code || r.closeCode !== want.closeCode);
  return off.length === 0 ? [] : [`${off.length} of ${flood.refusals.length} connections were not refused with ${want.code}/${want.closeCode} (first: ${JSON.stringify(off[0])})`];
}

export async function preauthSection<F>(figure: MakeFigure<F>, progress: (line: string) => void): Promise<{ figures: F[]; raw: unknown }> {
  const other = process.env.PW_BENCH_PREAUTH_COLLECTOR;
  const built = other === undefined || other === '' ? ensureBuilt('collector') : { path: other, built: null };
  const dir = mkdtempSync(join(tmpdir(), 'pw-bench-preauth-'));
  const problems = { small: [] as string[], big: [] as string[] };
  try {
    const dbPath = join(dir, 'collector.db');
    const db = openDatabase(dbPath);
    const { token } = await storeOn(db).async.tokens.create({ uses: 1, ttlMs: 3600_000, createdBy: 'bench' });
    db.close();
    const child = await serveInChild([built.path], ['--db', dbPath, '--listen', '127.0.0.1:0'], { cwd: ROOT });
    try {
      progress('preauth: warming the collector (one enroll, one hello)');
      const keys = newKeys();
      const first = await TestAgent.connect(child.agentUrl);
      const { agentId } = await first.enroll(token, keys);
      await first.close();
      const second = await TestAgent.connect(child.agentUrl);
      await second.hello(agentId, keys);
      await second.close();
      await sleep(500);
      const idleMb = await steadyRss(child.pid);

      progress(`preauth: ${PREAUTH.connections} unauthenticated connections, one ${PREAUTH.smallFrameBytes}-byte frame each`);
      const small = await preAuthFrameFlood(child, { connections: PREAUTH.connections, frameBytes: PREAUTH.smallFrameBytes });
      problems.small.push(...refusalProblems(small, { code: 'PW_ERR_PROTOCOL', closeCode: 4000 }));
      await sleep(1000);

      progress(`preauth: ${PREAUTH.connections} unauthenticated connections, one ${PREAUTH.frameBytes / 1024 / 1024} MiB frame each`);
      const big = await preAuthFrameFlood(child, { connections: PREAUTH.connections, frameBytes: PREAUTH.frameBytes });
      problems.big.push(...refusalProblems(big, { code: 'PW_ERR_INPUT_TOO_LARGE', closeCode: 1009 }));

      let healthMs = NaN;
      try {
        const again = await TestAgent.connect(child.agentUrl);
        await again.hello(agentId, keys);
        await again.close();
        const t = performance.now();
        const res = await fetch(`${child.url}/healthz`, { signal: AbortSignal.timeout(10_000) });
        healthMs = performance.now() - t;
        if (res.status !== 200) problems.big.push(`/healthz answered ${res.status} after the flood`);
      } catch (err) {
        problems.big.push(`after the flood: ${(err as Error).message}`);
      }
      const invalid = (list: readonly string[]): string | null => (list.length === 0 ? null : list.join('; '));
      const idle = { name: 'the same collector idle (after one enroll and one hello)', value: idleMb };
      const growth = big.peakMiB - big.startMiB;
      const mib = PREAUTH.frameBytes / 1024 / 1024;
      const figures = [
        figure('preauth', `collector peak RSS, ${PREAUTH.connections} unauthenticated ${PREAUTH.smallFrameBytes}-byte frames`, small.peakMiB, 'MB', idle, {
          note: `from ${small.startMiB.toFixed(0)} MB at its start; refused (not a hello): ${refusalSummary(small)}, all closed in ${small.ms.toFixed(0)} ms`,
          invalid: invalid(problems.small),
        }),
        figure('preauth', `collector peak RSS, ${PREAUTH.connections} unauthenticated ${mib} MiB frames`, big.peakMiB, 'MB', idle, {
          aim: () => ({ text: `< start + ${PREAUTH.aimGrowthMb} MB`, met: growth < PREAUTH.aimGrowthMb }),
          note: `from ${big.startMiB.toFixed(0)} MB at its start (+${growth.toFixed(0)} MB); refused: ${refusalSummary(big)} (want PW_ERR_INPUT_TOO_LARGE/1009, at the frame header), all closed in ${big.ms.toFixed(0)} ms; then /healthz answered in ${healthMs.toFixed(1)} ms`,
          invalid: invalid(problems.big),
        }),
      ];
      const intro =
        `${PREAUTH.connections} connections from this process to ${built.path.replace(`${ROOT}/`, '')} serve in its own process${built.built === null ? '' : ` (${built.built})`}, ` +
        `each sending one text frame (masking key 0, one shared buffer) after its challenge, all at once; RSS from /proc every 20 ms until the last connection closed`;
      return { figures, raw: { intro, idleMb, small: { ...small, refusals: undefined }, big: { ...big, refusals: undefined }, healthMs, problems } };
    } finally {
      await child.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
