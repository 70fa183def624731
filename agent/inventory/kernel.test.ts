import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { release as osRelease, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { type InstalledKernel, KernelSchema, type Package } from '../../shared/protocol.ts';
import { createContext, runCommand } from './context.ts';
import { readDpkgPackages } from './dpkg.ts';
import { compareInstalledKernels, kernelSourceName, readKernel } from './kernel.ts';
import { readReboot } from './reboot.ts';
import { packagesFromRpmManifest } from '../../shared/testing/rpm-manifest.ts';

const data = join(import.meta.dirname, '..', '..', '..', 'shared', 'data');
const NO_LIVEPATCH = { provider: 'none', active: false, effectiveVersion: null, fixedCves: [], modules: [] } as const;

async function tempRoot(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'pw-kernel-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  return root;
}

async function put(root: string, path: string, content: string | Buffer = ''): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), content);
}

/** One stanza of the real bookworm-security apt index (../shared/data/host-inventory). */
async function indexStanza(pkg: string): Promise<string> {
  const text = gunzipSync(await readFile(join(data, 'host-inventory', 'bookworm-security_main_amd64_Packages.gz'))).toString('utf8');
  const stanza = text.split('\n\n').find((s) => s.startsWith(`Package: ${pkg}\n`));
  if (stanza === undefined) throw new Error(`${pkg} is not in the bookworm-security index`);
  return stanza;
}

/** An apt index stanza as dpkg records it once installed: a Status line, no download fields. */
function asInstalled(stanza: string): string {
  const lines = stanza.split('\n').filter((l) => !/^(Filename|Size|SHA256|MD5sum|Description-md5):/.test(l));
  lines.splice(1, 0, 'Status: install ok installed');
  return `${lines.join('\n')}\n`;
}

describe('kernelSourceName', () => {
  const table: [Parameters<typeof kernelSourceName>[0], string, string][] = [
    // bookworm-security: linux-image-6.1.0-56-amd64 has Source: linux-signed-amd64 and
    // Built-Using: linux (= 6.1.192-2); the tracker and DSAs name `linux`.
    ['deb', 'linux-signed-amd64', 'linux'],
    ['deb', 'linux-signed-arm64', 'linux'],
    // linux-image-6.1.0-56-amd64-unsigned is built by `linux` itself.
    ['deb', 'linux', 'linux'],
    // Ubuntu: linux-signed builds linux's images, linux-signed-hwe-6.8 linux-hwe-6.8's.
    ['deb', 'linux-signed', 'linux'],
    ['deb', 'linux-signed-hwe-6.8', 'linux-hwe-6.8'],
    ['rpm', 'kernel', 'kernel'],
    ['apk', 'linux-lts', 'linux-lts'],
  ];
  for (const [format, source, want] of table) {
    it(`${format ?? 'null'} ${source} -> ${want}`, () => {
      assert.equal(kernelSourceName(format, source), want);
    });
  }
});

describe('compareInstalledKernels', () => {
  const k = (release: string, version: string | null = null): InstalledKernel => ({ name: version === null ? null : 'x', version, release });
  const table: [Parameters<typeof compareInstalledKernels>[0], InstalledKernel, InstalledKernel, -1 | 0 | 1][] = [
    ['deb', k('6.1.0-18-amd64', '6.1.76-1'), k('6.1.0-56-amd64', '6.1.192-2'), -1],
    // 6.1.0-9 vs 6.1.0-18: a string sort would get this wrong.
    ['deb', k('6.1.0-9-amd64'), k('6.1.0-18-amd64'), -1],
    ['rpm', k('5.14.0-427.42.1.el9_4.x86_64', '5.14.0-427.42.1.el9_4'), k('5.14.0-427.13.1.el9_4.x86_64', '5.14.0-427.13.1.el9_4'), 1],
    ['rpm', k('5.14.0-427.13.1.el9_4.x86_64'), k('5.14.0-427.13.1.el9_4.x86_64'), 0],
    ['apk', k('6.6.13-1-lts', '6.6.13-r1'), k('6.1.27-3-lts', '6.1.27-r3'), 1],
    // Alpine releases are no apk versions; dpkg's order sorts them.
    ['apk', k('6.6.13-1-lts'), k('6.1.27-3-lts'), 1],
  ];
  for (const [format, a, b, want] of table) {
    it(`${format ?? 'null'}: ${a.release} vs ${b.release} -> ${want}`, () => {
      assert.equal(compareInstalledKernels(format, a, b), want);
    });
  }
});

describe('readKernel: Debian root with two kernels (dpkg status + /boot + /lib/modules)', () => {
  it('finds the running package, both kernels newest first, and a pending kernel update', async (t) => {
    const root = await tempRoot(t);
    // This host's real dpkg status (no kernel: it is a VM) plus the two kernel images as dpkg
    // records them. linux-image-6.1.0-56-amd64 is the real stanza of the bookworm-security
    // index (6.1.192-2); linux-image-6.1.0-18-amd64 (6.1.76-1, DESIGN.md's example) left the
    // index long ago, so its stanza is the 6.1.0-56 one with Debian's ABI/version scheme applied.
    const hostStatus = gunzipSync(await readFile(join(data, 'host-inventory', 'debian12-host.dpkg-status.gz'))).toString('utf8');
    const image56 = asInstalled(await indexStanza('linux-image-6.1.0-56-amd64'));
    const image18 = image56.replaceAll('6.1.0-56', '6.1.0-18').replaceAll('6.1.192-2', '6.1.76-1').replaceAll('6.1.192+2', '6.1.76+1');
    const meta = asInstalled(await indexStanza('linux-image-amd64'));
    await put(root, 'var/lib/dpkg/status', `${hostStatus.trimEnd()}\n\n${image18}\n${image56}\n${meta}\n`);
    for (const rel of ['6.1.0-18-amd64', '6.1.0-56-amd64']) {
      await put(root, `boot/vmlinuz-${rel}`);
      await put(root, `boot/config-${rel}`);
      await put(root, `lib/modules/${rel}/modules.order`);
    }
    const ctx = createContext(root);
    const packages = await readDpkgPackages(ctx);
    assert.ok(packages !== null);
    const running = { release: '6.1.0-18-amd64', version: '#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)' };
    const kernel = await readKernel(ctx, packages, 'deb', running);
    assert.deepEqual(kernel, {
      release: '6.1.0-18-amd64',
      version: '#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)',
      package: { name: 'linux-image-6.1.0-18-amd64', source: 'linux', version: '6.1.76-1' },
      installed: [
        { name: 'linux-image-6.1.0-56-amd64', version: '6.1.192-2', release: '6.1.0-56-amd64' },
        { name: 'linux-image-6.1.0-18-amd64', version: '6.1.76-1', release: '6.1.0-18-amd64' },
      ],
    });
    assert.deepEqual(ctx.warnings, []);
    KernelSchema.parse({ ...kernel, livepatch: NO_LIVEPATCH });

    const reboot = await readReboot(ctx, kernel);
    assert.deepEqual(reboot.reasons, [{ kind: 'kernel-update', detail: 'running 6.1.0-18-amd64, newest installed 6.1.0-56-amd64' }]);
    assert.equal(reboot.required, true);
  });

  it('running the newest kernel: package set, no kernel update', async (t) => {
    const root = await tempRoot(t);
    await put(root, 'var/lib/dpkg/status', asInstalled(await indexStanza('linux-image-6.1.0-56-amd64-unsigned')));
    await put(root, 'boot/vmlinuz-6.1.0-56-amd64');
    const ctx = createContext(root);
    const kernel = await readKernel(ctx, (await readDpkgPackages(ctx)) ?? [], 'deb', { release: '6.1.0-56-amd64', version: '#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2' });
    assert.deepEqual(kernel.package, { name: 'linux-image-6.1.0-56-amd64-unsigned', source: 'linux', version: '6.1.192-2' });
    assert.deepEqual((await readReboot(ctx, kernel)).reasons, []);
  });
});

describe('readKernel: kernels only on disk', () => {
  it('merges /boot, /lib/modules and /usr/lib/modules by release; leftovers and rescue images are not kernels', async (t) => {
    const root = await tempRoot(t);
    await put(root, 'boot/vmlinuz-6.1.0-55-amd64');
    await put(root, 'boot/vmlinuz-0-rescue-0123456789abcdef0123456789abcdef');
    await put(root, 'boot/vmlinuz.old');
    await put(root, 'lib/modules/6.1.0-55-amd64/modules.builtin');
    await put(root, 'usr/lib/modules/6.1.0-56-amd64/kernel/fs/ext4/ext4.ko');
    // What removing a kernel leaves when DKMS had built a module for it.
    await put(root, 'lib/modules/6.1.0-9-amd64/updates/dkms/zfs.ko');
    const ctx = createContext(root);
    const kernel = await readKernel(ctx, [], 'deb', { release: '6.1.0-55-amd64', version: '#1 SMP' });
    assert.deepEqual(kernel.installed, [
      { name: null, version: null, release: '6.1.0-56-amd64' },
      { name: null, version: null, release: '6.1.0-55-amd64' },
    ]);
    assert.equal(kernel.package, null);
    assert.deepEqual(ctx.warnings, []);
  });

  it('garbage names in /boot and /lib/modules are not kernels', async (t) => {
    const root = await tempRoot(t);
    await put(root, 'boot/vmlinuz-6.1.0 evil');
    await put(root, 'boot/vmlinuz-6.1.0-55-amd64\nevil');
    await put(root, 'boot/vmlinuz-\u00ff\u0001');
    await put(root, 'boot/vmlinuz-');
    await put(root, 'lib/modules/..hidden/modules.order');
    await put(root, 'lib/modules/not-a-release/modules.order');
    await put(root, 'lib/modules/6.1.0-55-amd64');
    const ctx = createContext(root);
    const kernel = await readKernel(ctx, [], 'deb', { release: '6.1.0-55-amd64', version: '' });
    assert.deepEqual(kernel.installed, []);
    assert.deepEqual(ctx.warnings, []);
  });

  it('a mounted root without --kernel-release warns instead of borrowing the host kernel', async (t) => {
    const root = await tempRoot(t);
    const ctx = createContext(root);
    const kernel = await readKernel(ctx, [], 'deb');
    assert.equal(kernel.release, '');
    assert.equal(kernel.package, null);
    assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_KERNEL_NOT_RUNNING']);
  });

  it('a /boot that is a file, not a directory, yields no kernels and no crash', async (t) => {
    const root = await tempRoot(t);
    await put(root, 'boot/x');
    await rm(join(root, 'boot'), { recursive: true });
    await writeFile(join(root, 'boot'), 'not a directory');
    const ctx = createContext(root);
    const kernel = await readKernel(ctx, [], 'deb', { release: '6.1.0-55-amd64', version: '' });
    assert.deepEqual(kernel.installed, []);
    assert.deepEqual(ctx.warnings, []);
  });
});

describe('readKernel: Red Hat family (real RHEL 9.5 manifest + AlmaLinux 9 kernel-core versions)', () => {
  async function almaFixed(advisory: string, pkg: string): Promise<string> {
    const lines = gunzipSync(await readFile(join(data, 'osv', 'almalinux9.osv.jsonl.gz'))).toString('utf8').split('\n');
    const line = lines.find((l) => l.includes(`"id":"${advisory}"`));
    if (line === undefined) throw new Error(`${advisory} is not in almalinux9.osv.jsonl.gz`);
    const doc = JSON.parse(line) as { affected: { package: { name: string; ecosystem: string }; ranges: { events: { fixed?: string }[] }[] }[] };
    const hit = doc.affected.find((a) => a.package.name === pkg && a.package.ecosystem === 'AlmaLinux:9');
    const fixed = hit?.ranges.flatMap((r) => r.events).find((e) => e.fixed !== undefined)?.fixed;
    if (fixed === undefined) throw new Error(`${advisory} has no fixed ${pkg}`);
    return fixed;
  }
  const rpm = (name: string, version: string): Package => ({ name, version, arch: 'x86_64', source: 'kernel', sourceVersion: version });

  it('matches kernel-core by version-release.arch, prefers it over the kernel meta package, sorts by rpm rules', async (t) => {
    const manifest = JSON.parse(gunzipSync(await readFile(join(data, 'host-inventory', 'rhel9.5-httpd-24.rpm-manifest.claircore-fixture.json.gz'))).toString('utf8')) as unknown;
    const base = packagesFromRpmManifest(manifest);
    assert.equal(base.some((p) => p.name.startsWith('kernel')), false, 'the container manifest has no kernel');
    const older = await almaFixed('ALSA-2024:2394', 'kernel-core'); // 5.14.0-427.13.1.el9_4
    const newer = await almaFixed('ALSA-2024:8617', 'kernel-core'); // 5.14.0-427.42.1.el9_4
    const rt = await almaFixed('ALSA-2024:2394', 'kernel-rt-core');
    const packages = [...base, rpm('kernel', older), rpm('kernel-core', older), rpm('kernel', newer), rpm('kernel-core', newer), rpm('kernel-rt-core', rt)];

    const root = await tempRoot(t);
    for (const v of [older, newer]) {
      // RHEL 9 keeps the image in /lib/modules/<release>/vmlinuz and copies it to /boot.
      await put(root, `boot/vmlinuz-${v}.x86_64`);
      await put(root, `usr/lib/modules/${v}.x86_64/vmlinuz`);
    }
    await put(root, 'boot/vmlinuz-0-rescue-0123456789abcdef0123456789abcdef');
    const ctx = createContext(root);
    const kernel = await readKernel(ctx, packages, 'rpm', { release: `${older}.x86_64`, version: '#1 SMP PREEMPT_DYNAMIC Wed Apr 10 09:27:41 EDT 2024' });
    assert.deepEqual(kernel.package, { name: 'kernel-core', source: 'kernel', version: '5.14.0-427.13.1.el9_4' });
    assert.deepEqual(
      kernel.installed.map((k) => [k.name, k.release]),
      [
        ['kernel-core', '5.14.0-427.42.1.el9_4.x86_64'],
        ['kernel-rt-core', '5.14.0-427.13.1.el9_4.x86_64+rt'],
        ['kernel-core', '5.14.0-427.13.1.el9_4.x86_64'],
      ],
    );
    assert.deepEqual(ctx.warnings, []);
    assert.deepEqual((await readReboot(ctx, kernel)).reasons, [
      { kind: 'kernel-update', detail: 'running 5.14.0-427.13.1.el9_4.x86_64, newest installed 5.14.0-427.42.1.el9_4.x86_64' },
    ]);
  });

  it('a running release no package provides has package null', async () => {
    const ctx = createContext(await mkdtemp(join(tmpdir(), 'pw-kernel-')));
    const kernel = await readKernel(ctx, [rpm('kernel-core', '5.14.0-427.42.1.el9_4')], 'rpm', { release: '5.14.0-427.13.1.el9_4.x86_64', version: '' });
    assert.equal(kernel.package, null);
    await rm(ctx.root, { recursive: true, force: true });
  });
});

describe('readKernel: Alpine (real linux-lts versions from the v3.21 secdb)', () => {
  const apk = (name: string, version: string): Package => ({ name, version, arch: 'x86_64', source: name, sourceVersion: version });
  const table: [string, Package[], string, string | null, string[]][] = [
    ['linux-lts 6.6.13-r1 runs as 6.6.13-1-lts', [apk('linux-lts', '6.6.13-r1'), apk('linux-pam', '1.6.0-r0')], '6.6.13-1-lts', 'linux-lts', ['6.6.13-1-lts']],
    ['linux-virt flavor', [apk('linux-virt', '6.1.27-r3')], '6.1.27-3-virt', 'linux-virt', ['6.1.27-3-virt']],
    // After `apk upgrade` the old kernel still runs but no package provides it any more.
    ['upgraded in place: the old release is unmanaged', [apk('linux-lts', '6.6.13-r1')], '6.1.27-3-lts', null, ['6.6.13-1-lts']],
  ];
  for (const [name, packages, running, want, installed] of table) {
    it(name, async (t) => {
      const root = await tempRoot(t);
      for (const rel of installed) await put(root, `lib/modules/${rel}/modules.order`);
      await put(root, 'boot/vmlinuz-lts');
      const ctx = createContext(root);
      const kernel = await readKernel(ctx, packages, 'apk', { release: running, version: '#1-Alpine SMP PREEMPT_DYNAMIC' });
      assert.equal(kernel.package?.name ?? null, want);
      assert.deepEqual(kernel.installed.map((k) => k.release), installed);
      assert.deepEqual(ctx.warnings, []);
    });
  }

  it('an upgraded-in-place Alpine kernel is a pending kernel update', async (t) => {
    const root = await tempRoot(t);
    await put(root, 'lib/modules/6.6.13-1-lts/modules.order');
    const ctx = createContext(root);
    const kernel = await readKernel(ctx, [apk('linux-lts', '6.6.13-r1')], 'apk', { release: '6.1.27-3-lts', version: '' });
    assert.deepEqual((await readReboot(ctx, kernel)).reasons, [{ kind: 'kernel-update', detail: 'running 6.1.27-3-lts, newest installed 6.6.13-1-lts' }]);
  });
});

describe('readKernel on this machine', () => {
  it('reports os.release(), and no package when dpkg owns no image for it (this VM kernel)', async (t) => {
    const ctx = createContext('/');
    const packages = (await readDpkgPackages(ctx)) ?? [];
    const kernel = await readKernel(ctx, packages, packages.length > 0 ? 'deb' : null);
    assert.equal(kernel.release, osRelease());
    // Ask dpkg itself who owns the running kernel's image.
    const owner = await runCommand('dpkg', ['-S', `/boot/vmlinuz-${osRelease()}`]);
    if (owner === null) {
      t.skip('dpkg is not installed here');
      return;
    }
    if (owner.status === 0) {
      const name = owner.stdout.split(':')[0] ?? '';
      assert.equal(kernel.package?.name, name);
    } else {
      assert.equal(kernel.package, null);
    }
    assert.deepEqual(ctx.warnings.filter((w) => w.source === 'kernel'), []);
  });
});
