/**
 * Live-patch providers do not run on the build host, so their real outputs are fixtures:
 * fixtures/livepatch/SOURCES.md says where each came from, and each use below repeats it.
 * Files (/proc/kcare, /sys/kernel/livepatch) are exercised through real files in a temp
 * root; commands through ctx.run, the documented seam, serving the fixture for one argv.
 */
import assert from 'node:assert/strict';
import { access, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { LivepatchSchema } from '../../shared/protocol.ts';
import { type CommandResult, type CommandRunner, createContext } from './context.ts';
import {
  cvesFromModuleNames,
  parseCanonicalLivepatchStatus,
  parseKcareCvelist,
  parseKcareInfo,
  parseKcarePatchInfo,
  parseKpatchList,
  readLivepatch,
} from './livepatch.ts';

const fixtures = join(import.meta.dirname, 'fixtures', 'livepatch');
const fixture = (name: string): Promise<string> => readFile(join(fixtures, name), 'utf8');

async function tempRoot(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'pw-livepatch-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  return root;
}

async function put(root: string, path: string, content: string): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), content);
}

/** Serves fixture output for exact argv strings; anything else is "not installed" (null). */
function runner(table: Record<string, { file: string; status?: number }>, calls: string[] = []): CommandRunner {
  return async (file, args): Promise<CommandResult | null> => {
    const argv = [file, ...args].join(' ');
    calls.push(argv);
    const hit = table[argv];
    if (hit === undefined) return null;
    return { stdout: await fixture(hit.file), stderr: '', status: hit.status ?? 0 };
  };
}

describe('parseKcareCvelist', () => {
  const table: [string, string, string[]][] = [
    // TuxCare: "a list of CVEs separated by a newline".
    ['one id per line', 'CVE-2022-33655\nCVE-2022-0847\n', ['CVE-2022-0847', 'CVE-2022-33655']],
    ['no trailing newline, CRLF', 'CVE-2022-33655\r\nCVE-2022-0847', ['CVE-2022-0847', 'CVE-2022-33655']],
    ['lower case and duplicates', 'cve-2022-0847\nCVE-2022-0847\n', ['CVE-2022-0847']],
    ['blank and junk lines skipped', '\n\nnot a cve\nCVE-22-1\nCVE-2022-0847 trailing\n', []],
    ['empty file', '', []],
    ['binary garbage', '\u0000\u00ff\u0001CVE', []],
  ];
  for (const [name, text, want] of table) {
    it(name, () => { assert.deepEqual(parseKcareCvelist(text), want); });
  }
});

describe('parseKcareInfo', () => {
  const table: [string, string, { applied: boolean; effectiveVersion: string | null; patchLevel: string | null }][] = [
    // A Dirty COW write-up's `kcarectl --info` on Debian 8 (see SOURCES.md).
    ['kcarectl-info-debian8.txt', 'debian 8, level 3', { applied: true, effectiveVersion: '3.16.36-1+deb8u2', patchLevel: '3' }],
    // KernelCare on a Raspberry Pi with Ubuntu 20.04 (see SOURCES.md).
    ['kcarectl-info-ubuntu20.04-raspi.txt', 'ubuntu raspi, level 1-:<time>', { applied: true, effectiveVersion: '5.4.0-1028.31', patchLevel: '1-:1615812815' }],
    ['kcarectl-info-unknown-kernel.txt', 'unsupported kernel', { applied: false, effectiveVersion: null, patchLevel: null }],
  ];
  for (const [file, name, want] of table) {
    it(`${file} (${name})`, async () => { assert.deepEqual(parseKcareInfo(await fixture(file)), want); });
  }
  it('a truncated answer (no description) is applied without a version', () => {
    assert.deepEqual(parseKcareInfo('kpatch-state: patch is applied\nkpatch-for: Linux vers'), {
      applied: true,
      effectiveVersion: null,
      patchLevel: null,
    });
  });
});

describe('parseKcarePatchInfo', () => {
  const table: [string, string[]][] = [
    // KernelCare docs' full example: three patches, none with a CVE (`N/A`).
    ['kcarectl-patch-info-centos6.txt', []],
    // kernelcare-playground: `kcarectl --patch-info | grep kpatch-cve:`.
    ['kcarectl-patch-info-ubuntu20.04-grep-cve.txt', ['CVE-2022-33655']],
    ['kcarectl-patch-info-ubuntu20.04-hwe-grep-cve.txt', ['CVE-2022-0847']],
  ];
  for (const [file, want] of table) {
    it(file, async () => { assert.deepEqual(parseKcarePatchInfo(await fixture(file)), want); });
  }
  it('several ids on one kpatch-cve line (as kcare-qualys splits them)', () => {
    assert.deepEqual(parseKcarePatchInfo('kpatch-cve: CVE-2022-0847 CVE-2022-33655\nkpatch-cvss: N/A\n'), ['CVE-2022-0847', 'CVE-2022-33655']);
  });
  it('a CVE id outside kpatch-cve (a URL) is not counted', () => {
    assert.deepEqual(parseKcarePatchInfo('kpatch-cve-url: https://access.redhat.com/security/cve/CVE-2022-0847\n'), []);
  });
});

describe('parseCanonicalLivepatchStatus', () => {
  it('canonical-livepatch-status-applied.json (Landscape docs, client 10.8.3)', async () => {
    const got = parseCanonicalLivepatchStatus(await fixture('canonical-livepatch-status-applied.json'));
    assert.deepEqual(got, {
      kernel: '5.15.0-100.110-generic',
      state: 'applied',
      active: true,
      version: '104.1',
      // Exactly the CVEs Ubuntu's LSN for patch 104 names in the noble OVAL (../shared/data).
      fixedCves: ['CVE-2023-6270', 'CVE-2024-1086', 'CVE-2024-26581', 'CVE-2024-26597'],
    });
  });
  it('canonical-livepatch-status-nothing-to-apply.json (ubuntu-pro-client test)', async () => {
    assert.deepEqual(parseCanonicalLivepatchStatus(await fixture('canonical-livepatch-status-nothing-to-apply.json')), {
      kernel: '4.15.0-187.198-generic',
      state: 'nothing-to-apply',
      active: false,
      version: null,
      fixedCves: [],
    });
  });
  const rows: [string, string, string[] | null, boolean | null][] = [
    ['a fix not yet patched is not counted', '{"Status":[{"Running":true,"Livepatch":{"State":"applied","Fixes":[{"Name":"cve-2024-1086","Patched":false}]}}]}', [], true],
    // Clients 8.x/9.x print Fixes as one text block; the lines are those of client 8.0.2's
    // `status` output in an Ubuntu forum question (apply-failed, kernel 4.15.0-23.25).
    [
      'Fixes as a text block (older clients)',
      JSON.stringify({ Status: [{ Running: true, Livepatch: { State: 'apply-failed', Version: '40.7', Fixes: '* CVE-2018-1092\n* CVE-2018-7755\n* CVE-2018-8087' } }] }),
      ['CVE-2018-1092', 'CVE-2018-7755', 'CVE-2018-8087'],
      false,
    ],
    ['the running kernel entry wins', '{"Status":[{"Kernel":"a","Running":false,"Livepatch":{"State":"applied"}},{"Kernel":"b","Running":true,"Livepatch":{"State":"nothing-to-apply"}}]}', [], false],
    ['no Status entries (installed, not enabled)', '{"Status":[]}', null, null],
    ['Status of the wrong type', '{"Status":"x"}', null, null],
  ];
  for (const [name, text, cves, active] of rows) {
    it(name, () => {
      const got = parseCanonicalLivepatchStatus(text);
      if (cves === null) assert.equal(got, null);
      else {
        assert.deepEqual(got?.fixedCves, cves);
        assert.equal(got.active, active);
      }
    });
  }
  it('non-JSON (the disabled client message) throws', async () => {
    const text = await fixture('canonical-livepatch-status-disabled.txt');
    assert.throws(() => parseCanonicalLivepatchStatus(text), SyntaxError);
  });
});

describe('parseKpatchList', () => {
  const table: [string, { loaded: string[]; installed: [string, string | null][] }][] = [
    ['kpatch-list-rhel9.txt', { loaded: ['kpatch_5_14_0_284_11_1_1_1'], installed: [['kpatch_5_14_0_284_11_1_1_1', '5.14.0-284.11.1.el9_2.x86_64']] }],
    [
      'kpatch-list-rhel7-two-modules.txt',
      {
        loaded: ['kpatch_3_10_0_1062_1_1_1_4', 'kpatch_3_10_0_1062_1_1_1_5'],
        installed: [
          ['kpatch_3_10_0_1062_1_1_1_4', '3.10.0-1062.1.1.el7.x86_64'],
          ['kpatch_3_10_0_1062_1_1_1_5', '3.10.0-1062.1.2.el7.x86_64'],
        ],
      },
    ],
    [
      'kpatch-list-amzn2.txt',
      {
        loaded: ['livepatch_cifs_lease_buffer_len', 'livepatch_CVE_2019_20096', 'livepatch_CVE_2020_8648'],
        installed: [
          ['livepatch_cifs_lease_buffer_len', '5.10.102-99.473.amzn2.x86_64'],
          ['livepatch_CVE_2019_20096', '5.10.102-99.473.amzn2.x86_64'],
          ['livepatch_CVE_2020_8648', '5.10.102-99.473.amzn2.x86_64'],
        ],
      },
    ],
    ['kpatch-list-empty.txt', { loaded: [], installed: [] }],
  ];
  for (const [file, want] of table) {
    it(file, async () => {
      const got = parseKpatchList(await fixture(file));
      assert.deepEqual(got.loaded.filter((m) => m.enabled).map((m) => m.name), want.loaded);
      assert.deepEqual(got.installed.map((m) => [m.name, m.kernel]), want.installed);
    });
  }
  it('a [disabled] module is listed as not enabled', () => {
    assert.deepEqual(parseKpatchList('Loaded patch modules:\nkpatch_x [disabled]\n\nInstalled patch modules:\n').loaded, [{ name: 'kpatch_x', enabled: false }]);
  });
  it('lines before any section header are ignored', () => {
    assert.deepEqual(parseKpatchList('kpatch: some warning\n'), { loaded: [], installed: [] });
  });
});

describe('cvesFromModuleNames', () => {
  const table: [string[], string[]][] = [
    [['livepatch_cifs_lease_buffer_len', 'livepatch_CVE_2019_20096', 'livepatch_CVE_2020_8648'], ['CVE-2019-20096', 'CVE-2020-8648']],
    [['kpatch_5_14_0_284_11_1_1_1'], []],
  ];
  for (const [names, want] of table) {
    it(names.join(','), () => { assert.deepEqual(cvesFromModuleNames(names), want); });
  }
});

describe('readLivepatch: files in the root', () => {
  it('KernelCare /proc/kcare files win, and kcarectl is not needed', async (t) => {
    const root = await tempRoot(t);
    await copyFile(join(fixtures, 'proc-kcare', 'effective_version'), await ensure(root, 'proc/kcare/effective_version'));
    await copyFile(join(fixtures, 'proc-kcare', 'cvelist'), await ensure(root, 'proc/kcare/cvelist'));
    const calls: string[] = [];
    const ctx = createContext(root, { run: runner({}, calls) });
    const got = await readLivepatch(ctx, { runCommands: true });
    assert.deepEqual(got, { provider: 'kernelcare', active: true, effectiveVersion: '5.4.0-177.197', fixedCves: ['CVE-2022-33655'], modules: [] });
    assert.deepEqual(calls.filter((c) => c.startsWith('kcarectl')), []);
    assert.deepEqual(ctx.warnings, []);
    LivepatchSchema.parse(got);
  });

  it('a huge or garbage effective_version is not reported as a version', async (t) => {
    const root = await tempRoot(t);
    await put(root, 'proc/kcare/effective_version', `${'5.4.0-177.197'.repeat(1000)}\n`);
    const ctx = createContext(root);
    assert.deepEqual(await readLivepatch(ctx), { provider: 'kernelcare', active: false, effectiveVersion: null, fixedCves: [], modules: [] });
    assert.deepEqual(ctx.warnings, []);
  });

  it('/sys/kernel/livepatch: enabled modules only, provider livepatch', async (t) => {
    const root = await tempRoot(t);
    // Module names of real kpatch builds (rhel-labs kpatch labs, RHEL 9.2 and 8.5).
    await put(root, 'sys/kernel/livepatch/kpatch_5_14_0_284_11_1_1_1/enabled', '1\n');
    await put(root, 'sys/kernel/livepatch/kpatch_4_18_0_348_12_2_1_2/enabled', '0\n');
    const ctx = createContext(root);
    const got = await readLivepatch(ctx);
    assert.deepEqual(got, { provider: 'livepatch', active: true, effectiveVersion: null, fixedCves: [], modules: ['kpatch_5_14_0_284_11_1_1_1'] });
    assert.deepEqual(ctx.warnings, []);
  });

  it('a disabled-only sysfs tree is provider livepatch, not active', async (t) => {
    const root = await tempRoot(t);
    await put(root, 'sys/kernel/livepatch/kpatch_4_18_0_348_12_2_1_2/enabled', '0\n');
    assert.deepEqual(await readLivepatch(createContext(root)), { provider: 'livepatch', active: false, effectiveVersion: null, fixedCves: [], modules: [] });
  });

  it('garbage in an enabled attribute is a warning, not a crash', async (t) => {
    const root = await tempRoot(t);
    await put(root, 'sys/kernel/livepatch/kpatch_x/enabled', '\u0000\u00ffgarbage');
    const ctx = createContext(root);
    const got = await readLivepatch(ctx);
    assert.equal(got.active, false);
    assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_LIVEPATCH_MALFORMED']);
  });

  it('a /proc/kcare entry that cannot be read as a file is a warning, not a crash', async (t) => {
    const root = await tempRoot(t);
    // A directory where a file should be: open() works, reading does not (root or not).
    await mkdir(join(root, 'proc/kcare/cvelist'), { recursive: true });
    const ctx = createContext(root);
    const got = await readLivepatch(ctx);
    assert.equal(got.provider, 'none');
    assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_LIVEPATCH_UNREADABLE']);
  });

  it('an empty root has no provider and runs no command for a mounted image', async (t) => {
    const root = await tempRoot(t);
    const calls: string[] = [];
    const ctx = createContext(root, { run: runner({}, calls) });
    assert.deepEqual(await readLivepatch(ctx), { provider: 'none', active: false, effectiveVersion: null, fixedCves: [], modules: [] });
    assert.deepEqual(calls, []);
  });
});

async function ensure(root: string, path: string): Promise<string> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  return join(root, path);
}

describe('readLivepatch: provider commands through ctx.run', () => {
  const table: {
    name: string;
    serve: Record<string, { file: string; status?: number }>;
    want: { provider: string; active: boolean; effectiveVersion: string | null; fixedCves: string[]; modules: string[] };
  }[] = [
    {
      name: 'kcarectl --info applied + --patch-info (no /proc/kcare)',
      serve: {
        'kcarectl --info': { file: 'kcarectl-info-ubuntu20.04-raspi.txt' },
        'kcarectl --patch-info': { file: 'kcarectl-patch-info-ubuntu20.04-grep-cve.txt' },
      },
      want: { provider: 'kernelcare', active: true, effectiveVersion: '5.4.0-1028.31', fixedCves: ['CVE-2022-33655'], modules: [] },
    },
    {
      name: 'kcarectl --info on an unsupported kernel',
      serve: { 'kcarectl --info': { file: 'kcarectl-info-unknown-kernel.txt' } },
      want: { provider: 'kernelcare', active: false, effectiveVersion: null, fixedCves: [], modules: [] },
    },
    {
      name: 'canonical-livepatch applied',
      serve: { 'canonical-livepatch status --verbose --format json': { file: 'canonical-livepatch-status-applied.json' } },
      want: {
        provider: 'canonical-livepatch',
        active: true,
        effectiveVersion: '104.1',
        fixedCves: ['CVE-2023-6270', 'CVE-2024-1086', 'CVE-2024-26581', 'CVE-2024-26597'],
        modules: [],
      },
    },
    {
      name: 'canonical-livepatch only under /snap/bin',
      serve: { '/snap/bin/canonical-livepatch status --verbose --format json': { file: 'canonical-livepatch-status-nothing-to-apply.json' } },
      want: { provider: 'canonical-livepatch', active: false, effectiveVersion: null, fixedCves: [], modules: [] },
    },
    {
      name: 'canonical-livepatch installed but not enabled (exit 1)',
      serve: { 'canonical-livepatch status --verbose --format json': { file: 'canonical-livepatch-status-disabled.txt', status: 1 } },
      want: { provider: 'canonical-livepatch', active: false, effectiveVersion: null, fixedCves: [], modules: [] },
    },
    {
      name: 'kpatch list on RHEL 9',
      serve: { 'kpatch list': { file: 'kpatch-list-rhel9.txt' } },
      want: { provider: 'kpatch', active: true, effectiveVersion: null, fixedCves: [], modules: ['kpatch_5_14_0_284_11_1_1_1'] },
    },
    {
      name: 'kpatch list on Amazon Linux 2 (CVE-named modules)',
      serve: { 'kpatch list': { file: 'kpatch-list-amzn2.txt' } },
      want: {
        provider: 'kpatch',
        active: true,
        effectiveVersion: null,
        fixedCves: ['CVE-2019-20096', 'CVE-2020-8648'],
        modules: ['livepatch_CVE_2019_20096', 'livepatch_CVE_2020_8648', 'livepatch_cifs_lease_buffer_len'],
      },
    },
    {
      name: 'kpatch installed, nothing loaded',
      serve: { 'kpatch list': { file: 'kpatch-list-empty.txt' } },
      want: { provider: 'kpatch', active: false, effectiveVersion: null, fixedCves: [], modules: [] },
    },
  ];
  for (const row of table) {
    it(row.name, async (t) => {
      const root = await tempRoot(t);
      const ctx = createContext(root, { run: runner(row.serve) });
      const got = await readLivepatch(ctx, { runCommands: true });
      assert.deepEqual(got, row.want);
      assert.deepEqual(ctx.warnings, []);
      LivepatchSchema.parse(got);
    });
  }

  it('canonical-livepatch printing non-JSON with exit 0 is a warning', async (t) => {
    const root = await tempRoot(t);
    const ctx = createContext(root, { run: runner({ 'canonical-livepatch status --verbose --format json': { file: 'kpatch-list-rhel9.txt' } }) });
    const got = await readLivepatch(ctx, { runCommands: true });
    assert.equal(got.provider, 'canonical-livepatch');
    assert.equal(got.active, false);
    assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_LIVEPATCH_MALFORMED']);
  });

  it('a command that times out is a warning and the next provider is tried', async (t) => {
    const root = await tempRoot(t);
    const serve = runner({ 'kpatch list': { file: 'kpatch-list-rhel9.txt' } });
    const ctx = createContext(root, {
      run: async (file, args, options) => {
        if (file === 'kcarectl') throw new Error('kcarectl --info: killed (SIGTERM)');
        return serve(file, args, options);
      },
    });
    const got = await readLivepatch(ctx, { runCommands: true });
    assert.equal(got.provider, 'kpatch');
    assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_LIVEPATCH_COMMAND_FAILED']);
  });

  it('kpatch modules and sysfs modules are merged', async (t) => {
    const root = await tempRoot(t);
    await put(root, 'sys/kernel/livepatch/kpatch_5_14_0_284_11_1_1_1/enabled', '1\n');
    const ctx = createContext(root, { run: runner({ 'kpatch list': { file: 'kpatch-list-rhel9.txt' } }) });
    const got = await readLivepatch(ctx, { runCommands: true });
    assert.deepEqual(got.modules, ['kpatch_5_14_0_284_11_1_1_1']);
    assert.equal(got.provider, 'kpatch');
  });
});

describe('readLivepatch on this machine', () => {
  it('agrees with what is on this machine (no provider in this sandbox)', async (t) => {
    const onPath = async (name: string): Promise<boolean> => {
      for (const dir of (process.env.PATH ?? '').split(':').concat('/snap/bin')) {
        try {
          await access(join(dir, name));
          return true;
        } catch {
          // not in this directory
        }
      }
      return false;
    };
    const present = [
      await access('/proc/kcare').then(() => true, () => false),
      await access('/sys/kernel/livepatch').then(() => true, () => false),
      ...(await Promise.all(['kcarectl', 'canonical-livepatch', 'kpatch'].map(onPath))),
    ];
    if (present.some(Boolean)) {
      t.skip('this machine has a live-patch provider; the fixtures above cover each one');
      return;
    }
    const ctx = createContext('/');
    assert.deepEqual(await readLivepatch(ctx), { provider: 'none', active: false, effectiveVersion: null, fixedCves: [], modules: [] });
    assert.deepEqual(ctx.warnings, []);
  });
});
