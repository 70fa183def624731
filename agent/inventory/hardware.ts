/**
 * Hardware facts: cpu model, cores, memory, system model and virtualization, read from
 * /proc/cpuinfo, /sys/class/dmi/id and `systemd-detect-virt`.
 *
 * Departure from DESIGN.md, which chose systeminformation for these: its cpu() and
 * system() run `lscpu`, `dmidecode` and other commands through a shell (execSync), which
 * the house rules forbid, and cost about 45 ms of the agent's 50 ms inventory budget.
 * The same facts are four small file reads and one execFile here.
 *
 * For a mounted root (`--root`) the hardware is the inspecting machine's, not the
 * image's, so it is reported as unknown.
 */
import os from 'node:os';
import type { Hardware } from '../../shared/protocol.ts';
import { type InventoryContext, readRootFile } from './context.ts';

const UNKNOWN: Hardware = { cpu: null, cores: null, memoryBytes: null, virtualization: null, model: null };
const SMALL = 1 << 20;

async function readText(ctx: InventoryContext, path: string): Promise<string | null> {
  try {
    return (await readRootFile(ctx, path, SMALL))?.toString('utf8') ?? null;
  } catch {
    return null;
  }
}

function clean(s: string | null | undefined): string | null {
  // DMI fields of cheap boards say "To Be Filled By O.E.M." or "System Product Name".
  const v = (s ?? '').replace(/\0/g, '').trim();
  if (v === '' || /^(to be filled|default string|system product name|not specified|none)/i.test(v)) return null;
  return v.slice(0, 4096);
}

/** The cpu model from /proc/cpuinfo: `model name` on x86, `Model`/`Hardware`/`cpu model` elsewhere. */
export function cpuModel(cpuinfo: string): string | null {
  for (const key of ['model name', 'Model', 'Hardware', 'cpu model', 'cpu']) {
    const m = new RegExp(`^${key}\\s*:\\s*(.+)$`, 'm').exec(cpuinfo);
    if (m?.[1] !== undefined) return clean(m[1]);
  }
  return null;
}

async function detectVirt(ctx: InventoryContext, cpuinfo: string | null): Promise<string | null> {
  try {
    // Exit 1 with "none" on bare metal; the word is the answer either way.
    const r = await ctx.run('systemd-detect-virt', [], { timeoutMs: 5000, maxBuffer: 4096 });
    const word = r?.stdout.trim() ?? '';
    if (/^[a-z0-9_-]{1,64}$/.test(word)) return word;
  } catch {
    // fall through to the cpu flag
  }
  if (cpuinfo === null) return null;
  // Without systemd: the `hypervisor` cpu flag says "a VM" but not which.
  return /^flags\s*:.*\bhypervisor\b/m.test(cpuinfo) ? 'vm' : 'none';
}

export async function readHardware(ctx: InventoryContext): Promise<Hardware> {
  if (ctx.root !== '/') return UNKNOWN;
  const [cpuinfo, vendor, product, dtModel] = await Promise.all([
    readText(ctx, '/proc/cpuinfo'),
    readText(ctx, '/sys/class/dmi/id/sys_vendor'),
    readText(ctx, '/sys/class/dmi/id/product_name'),
    readText(ctx, '/proc/device-tree/model'),
  ]);
  const virtualization = await detectVirt(ctx, cpuinfo);
  const cores = os.cpus().length;
  const memoryBytes = os.totalmem();
  const model = [clean(vendor), clean(product)].filter((s) => s !== null).join(' ') || clean(dtModel);
  return {
    cpu: cpuinfo === null ? null : cpuModel(cpuinfo),
    cores: cores > 0 ? cores : null,
    memoryBytes: Number.isSafeInteger(memoryBytes) && memoryBytes > 0 ? memoryBytes : null,
    virtualization,
    model: model === '' ? null : model,
  };
}
