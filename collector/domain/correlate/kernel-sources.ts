/**
 * Which packages are built from a kernel source. DESIGN.md's kernel truth: those never
 * raise findings of their own (headers, linux-libc-dev, linux-kbuild, perf, tools, the
 * images of kernels that are not running); the kernel's CVEs are judged once, against
 * the running kernel's package.
 */
import type { Package } from '../../../shared/protocol.ts';
import type { VersionScheme } from '../../../shared/ecosystem.ts';

// Debian's `linux` builds linux-image-*, linux-headers-*, linux-kbuild-*, linux-libc-dev,
// linux-perf, bpftool, usbip, hyperv-daemons, libcpupower1 ...; Ubuntu's linux-* flavours
// build linux-image-*, linux-modules-*, linux-tools-*, linux-cloud-tools-*, linux-buildinfo-*.
const DEB_KERNEL_BINARY = /^linux-(image|headers|modules|libc-dev|kbuild|perf|tools|cloud-tools|buildinfo|cpupower|compiler|source|support|config|doc|bpf-dev|lib-rust)(-|$)/;

/** Debian signs kernels in `linux-signed-amd64`; the advisories name `linux`. Ubuntu: `linux-signed-hwe-6.8` -> `linux-hwe-6.8`. */
export function unsignedKernelSource(source: string): string {
  return source.replace(/^linux-signed(-(amd64|arm64|i386|armhf|ppc64el|s390x|riscv64))?(?=-|$)/, 'linux');
}

/** Source-level names (as the scheme keys advisories) of every kernel source on the host. */
export function kernelSources(scheme: VersionScheme, packages: readonly Package[]): Set<string> {
  const out = new Set<string>();
  for (const p of packages) {
    if (scheme === 'deb') {
      if (DEB_KERNEL_BINARY.test(p.name)) out.add(p.source);
    } else if (scheme === 'rpm') {
      if (/^kernel(-rt|-uek|-64k|-alt)?$/.test(p.source)) out.add(p.source);
    } else if (/^linux-(lts|virt|edge|rpi|stable)/.test(p.source)) {
      out.add(p.source);
    }
  }
  return out;
}
