/**
 * The agent's inventory cost on this machine, each figure beside a baseline measured in
 * the same run (the machines are shared and noisy; ratios are what we compare):
 * - in-process inventory vs `dpkg-query -W`
 * - `node dist/agent.js inventory --json` as a whole process vs a bare `node -e 0` plus
 *   `dpkg-query -W`
 * - the agent's peak RSS vs a bare `node -e 0`
 *
 * Everything is timed in interleaved rounds (in-process inventory, dpkg-query, bare node,
 * agent process, then again), so a burst of load from the other users of the machine falls on both sides of a
 * ratio instead of on one of them.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collectInventory } from '../agent/inventory/inventory.ts';

/** The agent's own exit code for an inventory with warnings (agent/commands/inventory.ts). */
const EXIT_PARTIAL = 3;
const TIMEOUT_MS = 60_000;
const MAX_BUFFER = 256 * 1024 * 1024;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

interface Run {
  ms: number;
  status: number;
  stdout: string;
  stderr: string;
}

/** One run; exits other than `okStatus` throw, so a crashing agent is never timed as a fast one. */
function run(cmd: string, args: readonly string[], okStatus: readonly number[], captureStdout = false): Run {
  const t = performance.now();
  const r = spawnSync(cmd, args, {
    stdio: ['ignore', captureStdout ? 'pipe' : 'ignore', 'pipe'],
    encoding: 'utf8',
    timeout: TIMEOUT_MS,
    maxBuffer: MAX_BUFFER,
  });
  const ms = performance.now() - t;
  if (r.error !== undefined) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status === null || !okStatus.includes(r.status)) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal ?? '?'}: ${r.stderr.slice(0, 2000)}`);
  }
  return { ms, status: r.status, stdout: typeof r.stdout === 'string' ? r.stdout : '', stderr: r.stderr };
}

export interface AgentBench {
  /** Packages in the in-process inventory. */
  packages: number;
  /** Rows `dpkg-query -W` printed (every package dpkg knows, `rc` leftovers included). */
  dpkgQueryRows: number;
  /** The agent process's exit code: 0, or 3 for an inventory with warnings. */
  agentExitCode: number;
  inProcessMs: number;
  dpkgQueryMs: number;
  processMs: number;
  bareNodeMs: number;
  bareNodePlusDpkgQueryMs: number;
  agentPeakRssMb: number;
  bareNodePeakRssMb: number;
  runs: number;
}

const DPKG_QUERY_ARGS = ['-W', '-f=${Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t${source:Version}\\n'];

export async function benchAgent(agentJs: string, runs = 9): Promise<AgentBench> {
  const agentArgs = [agentJs, 'inventory', '--json'];
  // One untimed run of each first: the module graph, the JIT and the page cache are as
  // warm for the agent as for dpkg-query.
  await collectInventory();
  const dpkgRows = run('dpkg-query', DPKG_QUERY_ARGS, [0], true).stdout.split('\n').filter((l) => l !== '').length;
  const agentExitCode = run(process.execPath, agentArgs, [0, EXIT_PARTIAL]).status;
  const inproc: number[] = [];
  const bare: number[] = [];
  const dpkg: number[] = [];
  const agent: number[] = [];
  let packages = 0;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const inv = await collectInventory();
    inproc.push(performance.now() - t);
    packages = inv.packages.length;
    dpkg.push(run('dpkg-query', DPKG_QUERY_ARGS, [0]).ms);
    bare.push(run(process.execPath, ['-e', '0'], [0]).ms);
    agent.push(run(process.execPath, agentArgs, [0, EXIT_PARTIAL]).ms);
  }

  // Peak RSS as the kernel counts it (getrusage ru_maxrss, KiB), printed by a preload at exit.
  const dir = mkdtempSync(join(tmpdir(), 'pw-bench-'));
  const agentRss: number[] = [];
  const bareRss: number[] = [];
  try {
    const probe = join(dir, 'rss-probe.cjs');
    writeFileSync(probe, "process.on('exit', () => require('fs').writeSync(2, 'PW_MAXRSS_KB ' + process.resourceUsage().maxRSS + '\\n'));\n");
    const rssKb = (args: readonly string[], ok: readonly number[]): number => {
      const r = run(process.execPath, ['--require', probe, ...args], ok);
      const m = /PW_MAXRSS_KB (\d+)/.exec(r.stderr);
      if (m === null) throw new Error(`no peak RSS from node ${args.join(' ')}: ${r.stderr.slice(0, 2000)}`);
      return Number(m[1]);
    };
    for (let i = 0; i < 3; i++) {
      bareRss.push(rssKb(['-e', '0'], [0]));
      agentRss.push(rssKb(agentArgs, [0, EXIT_PARTIAL]));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const dpkgQueryMs = median(dpkg);
  const bareNodeMs = median(bare);
  return {
    packages,
    dpkgQueryRows: dpkgRows,
    agentExitCode,
    inProcessMs: median(inproc),
    dpkgQueryMs,
    processMs: median(agent),
    bareNodeMs,
    bareNodePlusDpkgQueryMs: bareNodeMs + dpkgQueryMs,
    agentPeakRssMb: median(agentRss) / 1024,
    bareNodePeakRssMb: median(bareRss) / 1024,
    runs,
  };
}
