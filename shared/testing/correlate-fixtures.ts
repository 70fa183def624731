/**
 * Test helpers for correlation: real inventories built from ../shared/data and an
 * independent version oracle (the real librpm through python3-rpm). Tests only.
 */
import { execFileSync } from 'node:child_process';
import { packagesFromRpmManifest } from './rpm-manifest.ts';
import { INVENTORY_SCHEMA, type Inventory, type Package } from '../protocol.ts';
import { dataPath, readData } from './data.ts';
import type { Advisory } from '../../collector/domain/feeds/types.ts';
import { FeedReport } from '../../collector/domain/feeds/types.ts';
import { readFeedFile } from '../../collector/services/feeds/reader.ts';
import { parseOsv } from '../../collector/domain/feeds/osv.ts';
import { parseFeedPath } from '../../collector/services/feeds/import.ts';

export function inventoryOf(ecosystem: string, format: Inventory['packageFormat'], packages: Package[], kernel?: Partial<Inventory['kernel']>): Inventory {
  return {
    schema: INVENTORY_SCHEMA,
    collectedAt: '2026-11-26T18:00:00.000Z',
    agentVersion: '0.1.0',
    host: {
      hostname: 'test-1',
      machineId: null,
      bootId: null,
      arch: 'x86_64',
      uptimeSeconds: 1,
      os: { id: null, idLike: [], versionId: null, codename: null, prettyName: null },
      ecosystem,
      hardware: { cpu: null, cores: null, memoryBytes: null, virtualization: null, model: null },
    },
    packageFormat: format,
    packages,
    kernel: {
      release: '6.18.44-custom',
      version: '#1 SMP',
      package: null,
      installed: [],
      livepatch: { provider: 'none', active: false, effectiveVersion: null, fixedCves: [], modules: [] },
      ...kernel,
    },
    reboot: { required: false, reasons: [], services: [] },
    warnings: [],
  };
}

/** The real RHEL 9.5 httpd image's 243 rpms. */
export function rhel95Packages(): Package[] {
  return packagesFromRpmManifest(JSON.parse(readData('host-inventory', 'rhel9.5-httpd-24.rpm-manifest.claircore-fixture.json.gz')));
}

export async function loadOsv(path: string): Promise<Advisory[]> {
  const report = new FeedReport();
  const out: Advisory[] = [];
  for await (const { name, record } of readFeedFile(path, { report })) out.push(parseOsv(record, report, name));
  return out;
}

/** librpm's own labelCompare over many pairs in one process: -1, 0 or 1 per pair. */
export function rpmOracle(pairs: readonly (readonly [string, string])[]): number[] {
  const script = `
import sys, rpm
def evr(s):
    e, _, rest = s.rpartition(':') if ':' in s else ('0', '', s)
    v, _, r = rest.rpartition('-') if '-' in rest else (rest, '', '')
    return (e or '0', v, r)
out = []
for line in sys.stdin.read().splitlines():
    a, b = line.split('\\t')
    out.append(str(rpm.labelCompare(evr(a), evr(b))))
print('\\n'.join(out))
`;
  const input = pairs.map(([a, b]) => `${a}\t${b}`).join('\n');
  const stdout = execFileSync('/usr/bin/python3', ['-c', script], { input, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: 120_000 });
  return stdout.trim() === '' ? [] : stdout.trim().split('\n').map(Number);
}

/** libapt's own version_compare (python3-apt) over many pairs in one process. */
export function dpkgOracle(pairs: readonly (readonly [string, string])[]): number[] {
  const script = `
import sys, apt_pkg
apt_pkg.init()
out = []
for line in sys.stdin.read().splitlines():
    a, b = line.split('\\t')
    c = apt_pkg.version_compare(a, b)
    out.append(str((c > 0) - (c < 0)))
print('\\n'.join(out))
`;
  const input = pairs.map(([a, b]) => `${a}\t${b}`).join('\n');
  const stdout = execFileSync('/usr/bin/python3', ['-c', script], { input, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: 120_000 });
  return stdout.trim() === '' ? [] : stdout.trim().split('\n').map(Number);
}

/** Every advisory of the real Debian DSA and DLA lists (Debian:N ecosystems). */
export async function loadDebianLists(): Promise<Advisory[]> {
  const out: Advisory[] = [];
  for (const file of ['DSA-list.gz', 'DLA-list.gz']) for (const a of (await parseFeedPath(dataPath('debian', file))).advisories) out.push(a);
  return out;
}

/**
 * `count` deb binaries spread evenly over `sources` (binary i of source i mod n), at one
 * version per source unless `version` says otherwise: the shape of a hostile inventory.
 */
export function manyBinaries(count: number, sources: readonly string[], version: (i: number) => string = () => '0.1-1'): Package[] {
  return Array.from({ length: count }, (_, i) => {
    const source = sources[i % sources.length] as string;
    const v = version(i);
    return { name: `${source}-bin${i}`, version: v, arch: 'amd64', source, sourceVersion: v };
  });
}

/** The module name Canonical Livepatch loads for the `linux` (generic) kernel 6.8.0-31, at a patch level. */
export function nobleLivepatchModule(level: number): string {
  return `lkp_Ubuntu_6_8_0_31_31_linux_${level}`;
}

/**
 * An Ubuntu 24.04 LTS host (as agent/inventory/os-release.ts names it) running
 * 6.8.0-31-generic, Ubuntu's real binaries of that kernel (linux-image-* built by
 * linux-signed, linux-modules-* by linux, at 6.8.0-31.31), OpenSSL 3.0.13-0ubuntu3
 * (libssl3t64, openssl; the noble release) and curl 8.5.0-2ubuntu10.1 (curl, libcurl4t64). With `livepatchLevel`, Canonical
 * Livepatch is active with its module loaded at that level and no CVE list reported
 * (what sysfs alone gives), so only the LSN OVAL can say what it fixes.
 */
export function ubuntuNobleInventory(options: { livepatchLevel?: number; release?: string } = {}): Inventory {
  const abi = options.release ?? '6.8.0-31-generic';
  const kv = '6.8.0-31.31';
  const deb = (name: string, version: string, source: string, sourceVersion = version): Package => ({ name, version, arch: 'amd64', source, sourceVersion });
  const inv = inventoryOf(
    'Ubuntu:24.04:LTS',
    'deb',
    [
      deb(`linux-image-${abi}`, kv, 'linux-signed'),
      deb(`linux-modules-${abi}`, kv, 'linux'),
      deb('libssl3t64', '3.0.13-0ubuntu3', 'openssl'),
      deb('openssl', '3.0.13-0ubuntu3', 'openssl'),
      deb('bash', '5.2.21-2ubuntu4', 'bash'),
      deb('curl', '8.5.0-2ubuntu10.1', 'curl'),
      deb('libcurl4t64', '8.5.0-2ubuntu10.1', 'curl'),
    ],
    {
      release: abi,
      version: '#31-Ubuntu SMP PREEMPT_DYNAMIC',
      package: { name: `linux-image-${abi}`, source: 'linux-signed', version: kv },
      installed: [{ name: `linux-image-${abi}`, version: kv, release: abi }],
      livepatch:
        options.livepatchLevel === undefined
          ? { provider: 'none', active: false, effectiveVersion: null, fixedCves: [], modules: [] }
          : { provider: 'canonical-livepatch', active: true, effectiveVersion: `${options.livepatchLevel}.1`, fixedCves: [], modules: [nobleLivepatchModule(options.livepatchLevel)] },
    },
  );
  inv.host.os = { id: 'ubuntu', idLike: ['debian'], versionId: '24.04', codename: 'noble', prettyName: 'Ubuntu 24.04.1 LTS' };
  return inv;
}
