/**
 * Hardware facts through systeminformation (cpu, memory, system model, virtualization
 * only: os, kernel and packages are read directly, as DESIGN.md chose). For a mounted
 * root (`--root`) the hardware is the inspecting machine's, not the image's, so it is
 * reported as unknown.
 */
import si from 'systeminformation';
import type { Hardware } from '../../shared/protocol.ts';
import { errorMessage } from '../../shared/errors.ts';
import type { InventoryContext } from './context.ts';

const UNKNOWN: Hardware = { cpu: null, cores: null, memoryBytes: null, virtualization: null, model: null };

function text(s: string | undefined): string | null {
  const v = (s ?? '').trim();
  return v === '' ? null : v.slice(0, 4096);
}

export async function readHardware(ctx: InventoryContext): Promise<Hardware> {
  if (ctx.root !== '/') return UNKNOWN;
  try {
    const [cpu, mem, system] = await Promise.all([si.cpu(), si.mem(), si.system()]);
    const model = [text(system.manufacturer), text(system.model)].filter((s) => s !== null).join(' ');
    return {
      cpu: text([cpu.manufacturer, cpu.brand].filter((s) => s !== '').join(' ')),
      cores: Number.isInteger(cpu.cores) && cpu.cores > 0 ? cpu.cores : null,
      memoryBytes: Number.isSafeInteger(mem.total) && mem.total > 0 ? mem.total : null,
      virtualization: system.virtual ? (text(system.virtualHost)?.toLowerCase() ?? 'unknown') : 'none',
      model: text(model),
    };
  } catch (err) {
    ctx.warn({ source: 'hardware', code: 'PW_WARN_HARDWARE_UNAVAILABLE', message: errorMessage(err) });
    return UNKNOWN;
  }
}
