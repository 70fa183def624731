/**
 * Assembles the `patchwarden.inventory/1` document from the sources, in parallel where
 * they do not depend on each other. The result is validated against the wire schema
 * before it leaves the agent, so a collector never has to guess what a field means.
 */
import { INVENTORY_SCHEMA, type Inventory, InventorySchema, LIMITS } from '../../shared/protocol.ts';

const InventoryShellSchema = InventorySchema.omit({ packages: true });
import { MalformedInputError, TooManyPackagesError } from '../../shared/errors.ts';
import { AGENT_VERSION } from '../../shared/version.ts';
import { type CommandRunner, createContext } from './context.ts';
import { readHardware } from './hardware.ts';
import { readHost } from './host.ts';
import { readKernel } from './kernel.ts';
import { readLivepatch } from './livepatch.ts';
import { readReleasePin } from './release-pin.ts';
import { readOsRelease } from './os-release.ts';
import { readPackages } from './packages.ts';
import { readReboot } from './reboot.ts';

export interface InventoryOptions {
  /** Root file system to inventory; `/` for this machine. */
  root?: string;
  /** The running kernel, for a mounted root (whose kernel is not the one running here). */
  running?: { release: string; version: string };
  run?: CommandRunner;
  now?: () => Date;
}

function displayRoot(root: string | undefined): string {
  return root === undefined || root === '/' ? 'this host' : root;
}

export async function collectInventory(options: InventoryOptions = {}): Promise<Inventory> {
  const ctx = createContext(options.root ?? '/', options.run === undefined ? {} : { run: options.run });
  const [osr, host, hardware, pkgs, livepatch] = await Promise.all([
    readOsRelease(ctx),
    readHost(ctx),
    readHardware(ctx),
    readPackages(ctx),
    readLivepatch(ctx),
  ]);
  if (pkgs.packages.length > LIMITS.packages) {
    // Said here, on the host, rather than as a refusal the agent would resend forever.
    throw new TooManyPackagesError(
      `${displayRoot(options.root)} has ${pkgs.packages.length} installed packages, and a report holds at most ${LIMITS.packages}: no inventory is made, as the collector would refuse it`,
    );
  }
  const releasePin = await readReleasePin(ctx, osr.os);
  const kernelBase = await readKernel(ctx, pkgs.packages, pkgs.format, options.running);
  const kernel = { ...kernelBase, livepatch };
  const reboot = await readReboot(ctx, kernel);
  const inventory: Inventory = {
    schema: INVENTORY_SCHEMA,
    collectedAt: (options.now?.() ?? new Date()).toISOString(),
    agentVersion: AGENT_VERSION,
    host: { ...host, os: osr.os, ecosystem: osr.ecosystem, hardware, ...(releasePin === null ? {} : { releasePin }) },
    packageFormat: pkgs.format,
    packages: pkgs.packages,
    kernel,
    reboot,
    warnings: ctx.warnings,
  };
  // Packages were each checked against PackageSchema by their reader (the boundary with
  // the package database); the rest is checked here, before anything leaves the agent.
  const { packages: _checkedByReaders, ...shell } = inventory;
  const checked = InventoryShellSchema.safeParse(shell);
  if (!checked.success) {
    const first = checked.error.issues.slice(0, 5).map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new MalformedInputError(`the inventory does not match ${INVENTORY_SCHEMA}: ${first.join('; ')}`);
  }
  return inventory;
}
