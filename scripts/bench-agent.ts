/**
 * The agent's inventory cost on this machine, each figure beside a baseline measured in
 * the same run (the machines are shared and noisy; ratios are what we compare):
 * - in-process inventory vs `dpkg-query -W`
 * - `node dist/agent.js inventory --json` as a whole process vs a bare `node -e 0` plus
 *   `dpkg-query -W`
 * - the agent's peak RSS vs a bare `node -e 0`
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collectInventory } from '../agent/inventory/inventory.ts';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

function timeRun(cmd: string, args: string[], runs: number): number {
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 256 * 1024 * 1024 });
    ms.push(performance.now() - t);
    if (r.status !== 0 && r.status !== 3) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal ?? '?'}: ${r.stderr.toString()}`);
  }
  return median(ms);
}

function peakRssKb(args: string[], probe: string): number {
  const r = spawnSync(process.execPath, ['--require', probe, ...args], { stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
  const m = /PW_MAXRSS_KB (\d+)/.exec(r.stderr.toString());
  return m ? Number(m[1]) : NaN;
}

export interface AgentBench {
  packages: number;
  inProcessMs: number;
  dpkgQueryMs: number;
  processMs: number;
  bareNodePlusDpkgQueryMs: number;
  agentPeakRssMb: number;
  bareNodePeakRssMb: number;
}

export async function benchAgent(agentJs: string, runs = 9): Promise<AgentBench> {
  await collectInventory(); // warm the page cache and the module graph
  const inproc: number[] = [];
  let packages = 0;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const inv = await collectInventory();
    inproc.push(performance.now() - t);
    packages = inv.packages.length;
  }
  const dpkgQueryMs = timeRun('dpkg-query', ['-W', '-f=${Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t${source:Version}\\n'], runs);
  const bareNodeMs = timeRun(process.execPath, ['-e', '0'], runs);
  const processMs = timeRun(process.execPath, [agentJs, 'inventory', '--json'], runs);
  const dir = mkdtempSync(join(tmpdir(), 'pw-bench-'));
  const probe = join(dir, 'rss-probe.cjs');
  writeFileSync(probe, "process.on('exit', () => require('fs').writeSync(2, 'PW_MAXRSS_KB ' + process.resourceUsage().maxRSS + '\\n'));\n");
  const agentRss = peakRssKb([agentJs, 'inventory', '--json'], probe);
  const bareRss = peakRssKb(['-e', '0'], probe);
  rmSync(dir, { recursive: true, force: true });
  return {
    packages,
    inProcessMs: median(inproc),
    dpkgQueryMs,
    processMs,
    bareNodePlusDpkgQueryMs: bareNodeMs + dpkgQueryMs,
    agentPeakRssMb: agentRss / 1024,
    bareNodePeakRssMb: bareRss / 1024,
  };
}
