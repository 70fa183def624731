/**
 * Reboot signals. The parsers are table-tested on real output (fixtures/reboot/SOURCES.md);
 * the /run and /proc readers on real files in a temp root; and the whole reader against the
 * real needrestart and checkrestart on this machine, with a real process that maps a real
 * library that has been deleted, and with real Debian kernel images in /boot.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, realpath, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { release as osRelease, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { RebootSchema } from '../../shared/protocol.ts';
import { compareVersions } from '../../shared/versions/index.ts';
import { type CommandResult, type CommandRunner, createContext, runCommand } from './context.ts';
import { readDpkgPackages } from './dpkg.ts';
import { readKernel } from './kernel.ts';
import {
  deletedMappings,
  isIgnoredMapping,
  kernelUpdateDetail,
  parseNeedsRestarting,
  parseRebootRequiredPkgs,
  readReboot,
  unitFromCgroup,
} from './reboot.ts';
import { needs, TOOLS } from '../../shared/testing/system-tools.ts';

const fixtures = join(import.meta.dirname, 'fixtures', 'reboot');
const fixture = (name: string): Promise<string> => readFile(join(fixtures, name), 'utf8');
const execFileP = promisify(execFile);

type After = { after: (fn: () => Promise<void> | void) => void };

async function tempRoot(t: After): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'pw-reboot-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  return root;
}

async function put(root: string, path: string, content: string): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), content);
}

function serve(table: Record<string, { file?: string; text?: string; status: number }>): CommandRunner {
  return async (file, args): Promise<CommandResult | null> => {
    const hit = table[[file, ...args].join(' ')];
    if (hit === undefined) return null;
    return { stdout: hit.file === undefined ? (hit.text ?? '') : await fixture(hit.file), stderr: '', status: hit.status };
  };
}

const NO_KERNEL = { release: '', installed: [] };

describe('deletedMappings', () => {
  it('maps-python3-deleted-libz.txt (real /proc/PID/maps): the deleted library once, not its 5 mappings', async () => {
    assert.deepEqual(deletedMappings(await fixture('maps-python3-deleted-libz.txt')), ['/usr/local/lib/pw-reboot-test-oY7QMK/libz.so.1']);
  });
  // Lines in the kernel's maps format, varying only what is being tested.
  const line = (perms: string, inode: string, path: string): string => `7f70f623d000-7f70f6250000 ${perms} 00003000 fe:00 ${inode}                    ${path}`;
  const table: [string, string, string[]][] = [
    ['an upgraded libssl (r-xp, deleted)', line('r-xp', '1459300', '/usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)'), ['/usr/lib/x86_64-linux-gnu/libssl.so.3']],
    ['a replaced binary', line('r-xp', '1459301', '/usr/sbin/nginx (deleted)'), ['/usr/sbin/nginx']],
    ['data mapping of a deleted file (r--p) is not code', line('r--p', '1459300', '/usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)'), []],
    ['a file not deleted', line('r-xp', '1459300', '/usr/lib/x86_64-linux-gnu/libc.so.6'), []],
    ['inode 0 (anonymous)', line('r-xp', '0', '/usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)'), []],
    ['memfd (deleted by design)', line('r-xp', '1024', '/memfd:sealed-91173221a7ea (deleted)'), []],
    ['/dev/shm', line('rwxs', '5', '/dev/shm/jit-1234 (deleted)'), []],
    ['SysV shm', line('rwxs', '32769', '/SYSV00000000 (deleted)'), []],
    ['/tmp JIT file', line('r-xp', '77', '/tmp/ffiABCD (deleted)'), []],
    ['/var/tmp', line('r-xp', '77', '/var/tmp/x.so (deleted)'), []],
    ['/run', line('r-xp', '77', '/run/user/1000/x.so (deleted)'), []],
    ['a path with spaces', line('r-xp', '9', '/opt/My App/lib/libx.so (deleted)'), ['/opt/My App/lib/libx.so']],
    ['[vdso]', '7ffd6b5f5000-7ffd6b5f7000 r-xp 00000000 00:00 0                          [vdso]', []],
    ['truncated line', '7f70f623d000-7f70f6250000 r-xp 0000', []],
    ['binary garbage', '\u0000\u00ff\u0001 (deleted)', []],
  ];
  for (const [name, text, want] of table) {
    it(name, () => {
      assert.deepEqual(deletedMappings(text), want);
    });
  }
});

describe('isIgnoredMapping (needrestart blacklist_mappings + checkrestart isdeletedFile)', () => {
  const table: [string, boolean][] = [
    ['/usr/lib/x86_64-linux-gnu/libc.so.6', false],
    ['/lib/x86_64-linux-gnu/libssl.so.3', false],
    ['/usr/local/lib/pw-reboot-test-oY7QMK/libz.so.1', false],
    ['/dev/zero', true],
    ['/drm mm object', true],
    ['/[aio]', true],
    ['/usr/lib/gstreamer-1.0/orcexec.Ab12Cd', true],
    ['/home/alice/.cache/x.so', true],
    ['/usr/lib/locale/locale-archive', true],
    ['/tmp/x', true],
    ['/var/run/x', true],
  ];
  for (const [path, want] of table) {
    it(`${path} -> ${want}`, () => {
      assert.equal(isIgnoredMapping(path), want);
    });
  }
});

describe('unitFromCgroup (the lines needrestart reads)', () => {
  const table: [string, string, string | null][] = [
    // This build host: cgroup v1 with a name=systemd hierarchy at the root, no systemd.
    ['this host (no unit)', '9:name=systemd:/\n8:pids:/\n4:memory:/process_api/9a35\n0::/\n', null],
    ['cgroup v2 service', '0::/system.slice/nginx.service\n', 'nginx.service'],
    ['templated service', '0::/system.slice/system-getty.slice/getty@tty1.service\n', 'getty@tty1.service'],
    ['hybrid v1 name=systemd', '12:pids:/system.slice/ssh.service\n1:name=systemd:/system.slice/ssh.service\n0::/system.slice/ssh.service\n', 'ssh.service'],
    ['a controller line alone does not count', '12:pids:/system.slice/ssh.service\n', null],
    ['login session', '0::/user.slice/user-1000.slice/session-3.scope\n', null],
    ['user manager and its units', '0::/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service\n', null],
    ['container scope', '0::/machine.slice/libpod-0123abcd.scope/container\n', null],
    ['empty', '', null],
  ];
  for (const [name, text, want] of table) {
    it(name, () => {
      assert.equal(unitFromCgroup(text), want);
    });
  }
});

describe('parseRebootRequiredPkgs and parseNeedsRestarting', () => {
  it('reboot-required.pkgs written by reboot-notifier: de-duplicated, in order', async () => {
    assert.deepEqual(parseRebootRequiredPkgs(await fixture('reboot-required.pkgs')), ['linux-image-6.1.0-56-amd64', 'libssl3']);
  });
  const table: [string, string, string[]][] = [
    ['needs-restarting-r-required.txt', '', ['glibc', 'kernel', 'kernel-core']],
    ['needs-restarting-r-not-required.txt', '', []],
    // A Rocky 10 change log quoting `needs-restarting -r` with the list run together.
    ['(one-line list)', 'Core libraries or services have been updated since boot-up:\n  * dbus-broker  * kernel  * kernel-core  * microcode_ctl\n', ['dbus-broker', 'kernel', 'kernel-core', 'microcode_ctl']],
  ];
  for (const [file, text, want] of table) {
    it(file, async () => {
      assert.deepEqual(parseNeedsRestarting(text === '' ? await fixture(file) : text), want);
    });
  }
});

describe('kernelUpdateDetail', () => {
  const k = (release: string): { name: null; version: null; release: string } => ({ name: null, version: null, release });
  const table: [string, string, string[], string | null][] = [
    ['running the newest', '6.1.0-56-amd64', ['6.1.0-56-amd64', '6.1.0-18-amd64'], null],
    ['running an older installed one', '6.1.0-18-amd64', ['6.1.0-56-amd64', '6.1.0-18-amd64'], 'running 6.1.0-18-amd64, newest installed 6.1.0-56-amd64'],
    // This VM: its kernel comes from the hypervisor and is newer than any image in /boot.
    ['unmanaged and newer', '6.18.44-fc-v657', ['6.1.0-56-amd64', '6.1.0-55-amd64'], null],
    ['unmanaged and older (package replaced in place)', '6.1.27-3-lts', ['6.6.13-1-lts'], 'running 6.1.27-3-lts, newest installed 6.6.13-1-lts'],
    ['nothing installed', '6.1.0-18-amd64', [], null],
    ['running unknown (mounted root)', '', ['6.1.0-56-amd64'], null],
  ];
  for (const [name, release, installed, want] of table) {
    it(name, () => {
      assert.equal(kernelUpdateDetail({ release, installed: installed.map(k) }), want);
    });
  }
});

describe('readReboot: /run and needs-restarting in a root', () => {
  it('/run/reboot-required names the packages that asked', async (t) => {
    const root = await tempRoot(t);
    await put(root, 'run/reboot-required', await fixture('reboot-required'));
    await put(root, 'run/reboot-required.pkgs', await fixture('reboot-required.pkgs'));
    await mkdir(join(root, 'proc'));
    const ctx = createContext(root, { run: serve({}) });
    const got = await readReboot(ctx, NO_KERNEL, { live: true });
    assert.deepEqual(got, {
      required: true,
      reasons: [{ kind: 'reboot-required-file', detail: '/run/reboot-required exists, requested by linux-image-6.1.0-56-amd64, libssl3' }],
      services: [],
    });
    assert.deepEqual(ctx.warnings, []);
    RebootSchema.parse(got);
  });

  it('/run/reboot-required without .pkgs', async (t) => {
    const root = await tempRoot(t);
    await put(root, 'run/reboot-required', await fixture('reboot-required'));
    const got = await readReboot(createContext(root, { run: serve({}) }), NO_KERNEL, { live: true });
    assert.deepEqual(got.reasons, [{ kind: 'reboot-required-file', detail: '/run/reboot-required exists' }]);
  });

  it('a mounted root: its /run is not read', async (t) => {
    const root = await tempRoot(t);
    await put(root, 'run/reboot-required', await fixture('reboot-required'));
    assert.deepEqual(await readReboot(createContext(root), NO_KERNEL), { required: false, reasons: [], services: [] });
  });

  const table: [string, { file?: string; text?: string; status: number }, string | null, string[]][] = [
    ['needs-restarting -r exit 1', { file: 'needs-restarting-r-required.txt', status: 1 }, 'needs-restarting -r: glibc, kernel, kernel-core updated since boot', []],
    ['needs-restarting -r exit 0', { file: 'needs-restarting-r-not-required.txt', status: 0 }, null, []],
    // dnf exits 1 for its own errors too (the message dnf prints without the plugin).
    ['exit 1 that is an error, not a verdict', { text: 'No such command: needs-restarting. Please use /usr/bin/dnf --help\n', status: 1 }, null, ['PW_WARN_REBOOT_COMMAND_FAILED']],
  ];
  for (const [name, answer, detail, warnings] of table) {
    it(name, async (t) => {
      const root = await tempRoot(t);
      await mkdir(join(root, 'proc'));
      const ctx = createContext(root, { run: serve({ 'needs-restarting -r': answer }) });
      const got = await readReboot(ctx, NO_KERNEL, { live: true });
      assert.deepEqual(got.reasons, detail === null ? [] : [{ kind: 'needs-restarting', detail }]);
      assert.deepEqual(ctx.warnings.map((w) => w.code), warnings);
    });
  }
});

describe('readReboot: processes in a /proc tree', () => {
  it('groups by unit, keeps unit-less processes apart, and turns PID 1 into a reboot reason', async (t) => {
    const root = await tempRoot(t);
    const maps = await fixture('maps-python3-deleted-libz.txt');
    const proc = async (pid: number, comm: string, cgroup: string): Promise<void> => {
      await put(root, `proc/${pid}/maps`, maps);
      await put(root, `proc/${pid}/comm`, `${comm}\n`);
      await put(root, `proc/${pid}/cgroup`, cgroup);
    };
    await proc(1, 'systemd', '0::/init.scope\n');
    await proc(812, 'nginx', '0::/system.slice/nginx.service\n');
    await proc(813, 'nginx', '0::/system.slice/nginx.service\n');
    await proc(4242, 'python3', '0::/user.slice/user-1000.slice/session-3.scope\n');
    // A process with nothing deleted, and one that exited (no maps any more).
    await put(root, 'proc/900/maps', '55d0c1a00000-55d0c1a22000 r-xp 00000000 fe:00 131 /usr/sbin/cron\n');
    await mkdir(join(root, 'proc/901'));
    await put(root, 'proc/self/maps', maps);
    const ctx = createContext(root, { run: serve({}) });
    const got = await readReboot(ctx, NO_KERNEL, { live: true });
    const lib = '/usr/local/lib/pw-reboot-test-oY7QMK/libz.so.1';
    assert.deepEqual(got, {
      required: true,
      reasons: [{ kind: 'init-deleted-libraries', detail: `PID 1 (systemd) maps deleted ${lib}` }],
      services: [
        { unit: 'nginx.service', pids: [812, 813], command: 'nginx', files: [lib] },
        { unit: null, pids: [4242], command: 'python3', files: [lib] },
      ],
    });
    assert.deepEqual(ctx.warnings, []);
    RebootSchema.parse(got);
  });
});

/** needrestart's batch output (`NEEDRESTART-KEY: value`) and its `-v` lines on stderr. */
async function runNeedrestart(verbose: boolean): Promise<{ kv: Map<string, string>; deleted: Map<number, string>; obsolete: Set<number> } | null> {
  const r = await runCommand('needrestart', verbose ? ['-b', '-r', 'l', '-v'] : ['-b', '-r', 'l'], { timeoutMs: 180_000 });
  if (r === null) return null;
  const kv = new Map<string, string>();
  for (const m of r.stdout.matchAll(/^NEEDRESTART-([A-Z]+):[ \t]*(.*)$/gm)) kv.set(m[1] ?? '', (m[2] ?? '').trim());
  const deleted = new Map<number, string>();
  for (const m of r.stderr.matchAll(/^\[main\] #(\d+) uses deleted (.+)$/gm)) deleted.set(Number(m[1]), m[2] ?? '');
  const obsolete = new Set<number>();
  for (const m of r.stderr.matchAll(/^\[main\] #(\d+) uses obsolete binary /gm)) obsolete.add(Number(m[1]));
  return { kv, deleted, obsolete };
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** A directory needrestart and checkrestart do not skip (/tmp, /var/tmp, /run, /home are). */
async function libraryDir(t: After): Promise<string | null> {
  for (const base of ['/usr/local/lib', '/var/lib', '/opt']) {
    try {
      const dir = await mkdtemp(join(base, 'pw-reboot-test-'));
      t.after(() => rm(dir, { recursive: true, force: true }));
      return dir;
    } catch {
      // not writable here; try the next
    }
  }
  return null;
}

/** Starts python3 mapping `lib` with dlopen (ctypes.CDLL); resolves once it is mapped. */
async function mapLibrary(t: After, lib: string): Promise<ChildProcess> {
  const child = spawn('/usr/bin/python3', ['-c', 'import ctypes,sys\nctypes.CDLL(sys.argv[1])\nprint("ready", flush=True)\nsys.stdin.read()', lib], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.after(() => {
    child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      reject(new Error(`python3 exited ${String(code)} before mapping ${lib}`));
    });
    child.stdout.once('data', () => {
      resolve();
    });
  });
  return child;
}

describe('readReboot against the real needrestart and checkrestart on this machine', () => {
  it('a process mapping a deleted library: ours, needrestart -v and checkrestart all name it', { skip: needs(TOOLS.needrestart, TOOLS.checkrestart) }, async (t) => {
    const python = await stat('/usr/bin/python3').then(() => true, () => false);
    if (!python) {
      t.skip('no /usr/bin/python3 to map a library with dlopen');
      return;
    }
    const dir = await libraryDir(t);
    if (dir === null) {
      t.skip('no writable library directory outside /tmp (needrestart and checkrestart ignore /tmp)');
      return;
    }
    const lib = join(dir, 'libz.so.1');
    await copyFile(await realpath('/usr/lib/x86_64-linux-gnu/libz.so.1').catch(() => realpath('/lib/x86_64-linux-gnu/libz.so.1')), lib);
    const child = await mapLibrary(t, lib);
    const pid = child.pid ?? -1;
    await unlink(lib);

    const ctx = createContext('/');
    const ours = await readReboot(ctx, NO_KERNEL);
    RebootSchema.parse(ours);
    const entry = ours.services.find((s) => s.pids.includes(pid));
    assert.deepEqual(entry, { unit: null, pids: [pid], command: 'python3', files: [lib] });
    // Only the "permission denied" summary may appear (this sandbox refuses even root PID 1's maps).
    assert.deepEqual(
      ctx.warnings.filter((w) => w.code !== 'PW_WARN_REBOOT_PROC_UNREADABLE'),
      [],
    );

    const nr = await runNeedrestart(true);
    assert.ok(nr !== null, 'needrestart ran');
    {
      assert.equal(nr.deleted.get(pid), lib, 'needrestart -v names the same process and file');
      // Both directions, for processes that outlived both scans.
      const ourPids = new Set(ours.services.flatMap((s) => s.pids));
      for (const [p, file] of nr.deleted) {
        if (!alive(p) || p === 1) continue;
        assert.ok(ourPids.has(p), `needrestart: #${p} uses deleted ${file}; we missed it`);
        assert.ok(ours.services.find((s) => s.pids.includes(p))?.files.includes(file), `we list #${p} without ${file}`);
      }
      for (const p of ourPids) {
        if (alive(p)) assert.ok(nr.deleted.has(p) || nr.obsolete.has(p), `we list #${p}; needrestart does not`);
      }
    }

    const cr = await runCommand('checkrestart', ['-m', '-v'], { timeoutMs: 180_000 });
    assert.ok(cr !== null, 'checkrestart ran');
    {
      const files = [...cr.stdout.matchAll(/^file\t(\d+)\t[^\t]*\t(.+)$/gm)].filter((m) => Number(m[1]) === pid).map((m) => m[2]);
      assert.ok(files.includes(lib), `checkrestart -m -v lists #${pid} with ${lib}: ${JSON.stringify(files)}`);
    }
  });

  it('kernel: KCUR is our running release, KSTA/KEXP agree with our installed kernels and kernel-update reason', { skip: needs(TOOLS.needrestart) }, async () => {
    const nr = await runNeedrestart(false);
    assert.ok(nr !== null, 'needrestart ran');
    const ctx = createContext('/');
    const kernel = await readKernel(ctx, (await readDpkgPackages(ctx)) ?? [], 'deb');
    assert.equal(nr.kv.get('KCUR'), kernel.release);
    assert.equal(kernel.release, osRelease());
    await assertKernelAgreement(nr.kv, kernel, ctx);
  });
});

/**
 * needrestart looks at /boot only: KSTA 0 = no image there, 1 = running the newest,
 * 2 = same release, newer build, 3 = KCUR differs from KEXP (the newest image). We raise
 * kernel-update only when the running kernel is older than the newest installed (a VM whose
 * kernel is newer than anything in /boot gains nothing from a reboot), so: KEXP is our newest
 * kernel from /boot, and our reason is there exactly when KSTA is 3 and KCUR sorts below KEXP.
 */
async function assertKernelAgreement(
  kv: Map<string, string>,
  kernel: Awaited<ReturnType<typeof readKernel>>,
  ctx: ReturnType<typeof createContext>,
): Promise<void> {
  const ksta = kv.get('KSTA');
  const kexp = kv.get('KEXP');
  const boot = new Set((await readdir('/boot')).flatMap((n) => /^vmlinu[xz]-(\d.*)$/.exec(n)?.[1] ?? []));
  const ourNewestFromBoot = kernel.installed.find((k) => boot.has(k.release))?.release;
  const reboot = await readReboot(ctx, kernel, { live: false });
  const ourReason = reboot.reasons.some((r) => r.kind === 'kernel-update');
  if (ksta === '0') {
    assert.equal(ourNewestFromBoot, undefined, 'needrestart found no image in /boot; neither did we');
    assert.equal(ourReason, false);
    return;
  }
  assert.equal(ourNewestFromBoot, kexp, 'the newest image in /boot');
  const older = kexp !== undefined && compareVersions('deb', kernel.release, kexp) < 0;
  assert.equal(ourReason, ksta === '3' && older, `KSTA=${ksta ?? '?'} KCUR=${kernel.release} KEXP=${kexp ?? '?'}`);
}

/** Extracts ./boot/vmlinuz-<rel> and the modules tree markers from a kernel .deb, streaming (no 400 MB unpack). */
async function extractKernel(deb: string, release: string, into: string): Promise<void> {
  const members = [`./boot/vmlinuz-${release}`, `./lib/modules/${release}/modules.builtin`, `./lib/modules/${release}/modules.order`];
  const dpkg = spawn('dpkg-deb', ['--fsys-tarfile', deb], { stdio: ['ignore', 'pipe', 'inherit'] });
  const tar = spawn('tar', ['-x', '-C', into, ...members], { stdio: ['pipe', 'ignore', 'inherit'] });
  dpkg.stdout.pipe(tar.stdin);
  const done = (p: ChildProcess, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      p.once('error', reject);
      p.once('exit', (code) => {
        if (code === 0) resolve();
        else reject(new Error(`${what} exited ${String(code)}`));
      });
    });
  await Promise.all([done(dpkg, 'dpkg-deb --fsys-tarfile'), done(tar, 'tar -x')]);
}

describe('real Debian kernel images (linux-image-6.1.0-55/56-amd64 from bookworm-security)', () => {
  it('in a root: both found on disk; in /boot: needrestart says KSTA 3 / KEXP 6.1.0-56-amd64 and we agree', { skip: needs(TOOLS.needrestart, TOOLS.dpkgDeb) }, async (t) => {
    if (process.getuid?.() !== 0) {
      t.skip('needs root to place images in /boot for needrestart');
      return;
    }
    const cache = join(tmpdir(), 'pw-kernel-debs');
    await mkdir(cache, { recursive: true });
    const releases = ['6.1.0-55-amd64', '6.1.0-56-amd64'];
    const debs: string[] = [];
    for (const rel of releases) {
      const have = (await readdir(cache)).find((n) => n.startsWith(`linux-image-${rel}_`) && n.endsWith('.deb'));
      if (have !== undefined) {
        debs.push(join(cache, have));
        continue;
      }
      try {
        await execFileP('apt-get', ['download', `linux-image-${rel}`], { cwd: cache, timeout: 600_000, maxBuffer: 16 << 20 });
      } catch (err) {
        t.skip(`apt-get download linux-image-${rel} is impossible here: ${(err as Error).message.split('\n')[0] ?? ''}`);
        return;
      }
      const got = (await readdir(cache)).find((n) => n.startsWith(`linux-image-${rel}_`) && n.endsWith('.deb'));
      assert.ok(got !== undefined, `apt-get download left no linux-image-${rel} .deb`);
      debs.push(join(cache, got));
    }

    // 1. A root holding the two real images: read as a mounted root.
    const root = await tempRoot(t);
    for (const [i, rel] of releases.entries()) await extractKernel(debs[i] ?? '', rel, root);
    const rctx = createContext(root);
    const rkernel = await readKernel(rctx, [], 'deb', { release: '6.1.0-55-amd64', version: '#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-1' });
    assert.deepEqual(rkernel.installed, [
      { name: null, version: null, release: '6.1.0-56-amd64' },
      { name: null, version: null, release: '6.1.0-55-amd64' },
    ]);
    assert.deepEqual((await readReboot(rctx, rkernel)).reasons, [{ kind: 'kernel-update', detail: 'running 6.1.0-55-amd64, newest installed 6.1.0-56-amd64' }]);

    // 2. The same images in this machine's /boot, for the real needrestart.
    const placed: string[] = [];
    t.after(async () => {
      for (const p of placed) await rm(p, { force: true });
    });
    for (const rel of releases) {
      const target = `/boot/vmlinuz-${rel}`;
      if (await stat(target).then(() => true, () => false)) continue;
      await copyFile(join(root, 'boot', `vmlinuz-${rel}`), target);
      placed.push(target);
    }
    const nr = await runNeedrestart(false);
    assert.ok(nr !== null, 'needrestart ran');
    const ctx = createContext('/');
    const kernel = await readKernel(ctx, (await readDpkgPackages(ctx)) ?? [], 'deb');
    assert.equal(nr.kv.get('KCUR'), kernel.release);
    assert.equal(nr.kv.get('KEXP'), '6.1.0-56-amd64');
    assert.equal(nr.kv.get('KSTA'), kernel.release === '6.1.0-56-amd64' ? '1' : '3');
    await assertKernelAgreement(nr.kv, kernel, ctx);
  });
});
