/**
 * The root's installed packages from whichever package database it has. A host has one
 * in practice; a second one (rpm with a populated database on Debian, apk-tools on a
 * Debian image) is reported, not merged: advisories are matched per ecosystem, and the
 * OS's own manager is the one that patches it.
 */
import type { Package, PackageFormat } from '../../shared/protocol.ts';
import { findApkDatabase, readApkPackages } from './apk.ts';
import { displayPath, type InventoryContext } from './context.ts';
import { hasDpkgDatabase, readDpkgPackages } from './dpkg.ts';
import { findRpmDatabase, readRpmPackages } from './rpm.ts';

export type PackagesResult = { format: PackageFormat; packages: Package[] } | { format: null; packages: [] };

interface Reader {
  format: PackageFormat;
  tool: string;
  read: (ctx: InventoryContext) => Promise<Package[] | null>;
  present: (ctx: InventoryContext) => Promise<boolean>;
}

/** In this order: the first database found wins. */
const READERS: readonly Reader[] = [
  { format: 'deb', tool: 'dpkg', read: readDpkgPackages, present: hasDpkgDatabase },
  { format: 'rpm', tool: 'rpm', read: readRpmPackages, present: async (ctx) => (await findRpmDatabase(ctx)) !== null },
  { format: 'apk', tool: 'apk', read: readApkPackages, present: async (ctx) => (await findApkDatabase(ctx)) !== null },
];

export async function readPackages(ctx: InventoryContext): Promise<PackagesResult> {
  for (const [index, reader] of READERS.entries()) {
    const packages = await reader.read(ctx);
    if (packages === null) continue;
    const others: string[] = [];
    for (const other of READERS.slice(index + 1)) if (await other.present(ctx)) others.push(other.tool);
    if (others.length > 0) {
      ctx.warn({
        source: 'packages',
        code: 'PW_WARN_MULTIPLE_PACKAGE_DBS',
        message: `${displayPath(ctx, '/')} has ${reader.tool} and ${others.join(' and ')} package databases; reporting the ${reader.tool} packages only`,
      });
    }
    return { format: reader.format, packages };
  }
  // A database whose reader is missing (rpm not installed) has warned already.
  const unread: string[] = [];
  for (const reader of READERS) if (await reader.present(ctx)) unread.push(reader.tool);
  if (unread.length === 0) {
    ctx.warn({
      source: 'packages',
      code: 'PW_WARN_NO_PACKAGE_DB',
      message: `no dpkg, rpm or apk package database in ${displayPath(ctx, '/')}: the inventory lists no packages`,
    });
  }
  return { format: null, packages: [] };
}
