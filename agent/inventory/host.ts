/**
 * Host identity: hostname, machine-id, boot id, architecture and uptime. For a mounted
 * root, identity comes from the image's own files and the live-only facts (boot id,
 * uptime) are null.
 */
import os from 'node:os';
import { errorMessage } from '../../shared/errors.ts';
import { type InventoryContext, readRootFile } from './context.ts';

export interface HostIdentity {
  hostname: string;
  machineId: string | null;
  bootId: string | null;
  arch: string;
  uptimeSeconds: number | null;
}

async function readSmall(ctx: InventoryContext, path: string, root = ctx.root): Promise<string | null> {
  try {
    const buf = await readRootFile({ ...ctx, root }, path, 4096);
    return buf === null ? null : buf.toString('utf8').trim();
  } catch (err) {
    ctx.warn({ source: 'host', code: 'PW_WARN_HOST_FILE_UNREADABLE', message: errorMessage(err) });
    return null;
  }
}

export async function readHost(ctx: InventoryContext): Promise<HostIdentity> {
  const live = ctx.root === '/';
  const machineIdRaw = await readSmall(ctx, '/etc/machine-id');
  const machineId = machineIdRaw !== null && /^[0-9a-f]{32}$/.test(machineIdRaw) ? machineIdRaw : null;
  let hostname = live ? os.hostname() : ((await readSmall(ctx, '/etc/hostname'))?.split('\n')[0]?.trim() ?? '');
  if (hostname === '') hostname = 'localhost';
  const bootIdRaw = live ? await readSmall(ctx, '/proc/sys/kernel/random/boot_id', '/') : null;
  const bootId = bootIdRaw !== null && /^[0-9a-f-]{32,36}$/.test(bootIdRaw) ? bootIdRaw : null;
  return {
    hostname,
    machineId,
    bootId,
    arch: os.machine(),
    uptimeSeconds: live ? Math.round(os.uptime()) : null,
  };
}
