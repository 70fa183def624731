/**
 * What an OSV ecosystem name implies for correlation: which version rules apply and
 * which package name advisories are keyed by.
 */
import type { Package, PackageFormat } from './protocol.ts';

export type VersionScheme = PackageFormat;

/** `Debian:12` -> `Debian`, `Rocky Linux:9` -> `Rocky Linux`. */
export function ecosystemFamily(ecosystem: string): string {
  const i = ecosystem.indexOf(':');
  return i < 0 ? ecosystem : ecosystem.slice(0, i);
}

const SCHEMES: Readonly<Record<string, VersionScheme>> = {
  Debian: 'deb',
  Ubuntu: 'deb',
  AlmaLinux: 'rpm',
  'Rocky Linux': 'rpm',
  'Red Hat': 'rpm',
  SUSE: 'rpm',
  openSUSE: 'rpm',
  Alpine: 'apk',
};

export function schemeForEcosystem(ecosystem: string): VersionScheme | null {
  return SCHEMES[ecosystemFamily(ecosystem)] ?? null;
}

/**
 * The name and version an advisory for this ecosystem is keyed by. Debian and Ubuntu
 * advisories name SOURCE packages (openssl, not libssl3); the RHEL family's OSV data
 * names binary rpms; Alpine's secdb names the origin (aports directory).
 */
export function advisoryKey(scheme: VersionScheme, pkg: Package): { name: string; version: string } {
  switch (scheme) {
    case 'deb':
      return { name: pkg.source, version: pkg.sourceVersion };
    case 'rpm':
      return { name: pkg.name, version: pkg.version };
    case 'apk':
      return { name: pkg.source, version: pkg.version };
  }
}
