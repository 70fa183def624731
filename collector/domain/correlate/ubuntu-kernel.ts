/**
 * How Ubuntu's OVAL names kernels, shared by its parser and the correlator.
 *
 * A kernel USN's OVAL test is about the running kernel's `uname -r` (`6.8.0-31-generic`),
 * not a package: a flavour pattern (`6.8.0-\d+(-generic|-generic-64k)`) and the ABI
 * version (`6.8.0-31`) less than the fix (`0:6.8.0-35`). So its advisories are keyed by
 * what the release says: `uname_<base>-<flavour>` (`uname_6.8.0-generic`), and the
 * correlator gives a managed running kernel one more kernel unit under that name, at its
 * ABI version. Keying them by source package instead (linux, linux-aws, linux-hwe-6.11)
 * would need a hand-written flavour -> source table that the data does not carry and that
 * goes stale with every new HWE or cloud kernel. The underscore keeps the name from ever
 * being a real source package (Debian source names have none). A fix compares the same
 * way against the installed kernels' package versions (`6.8.0-35.35` >= `6.8.0-35`), so
 * fixed-pending-reboot still works.
 */

export interface UbuntuKernelRelease {
  /** `6.8.0` */
  base: string;
  /** `6.8.0-31`: the OVAL's own `regex_capture` of the release, what its fixes are compared with. */
  abiVersion: string;
  /** `generic`, `aws`, `generic-64k` */
  flavour: string;
}

const RELEASE = /^(\d{1,5}(?:\.\d{1,5}){1,3})-(\d{1,9})-([a-z0-9][a-z0-9-]{0,63})$/;

export function ubuntuKernelRelease(release: string): UbuntuKernelRelease | null {
  const m = RELEASE.exec(release);
  if (m === null) return null;
  const [, base, abi, flavour] = m as unknown as [string, string, string, string];
  return { base, abiVersion: `${base}-${abi}`, flavour };
}

export function unameUnitName(base: string, flavour: string): string {
  return `uname_${base}-${flavour}`;
}
