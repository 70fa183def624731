import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import type { Package } from '../../shared/protocol.ts';
import { type CommandRunner, createContext, runCommand } from './context.ts';
import { packagesFromRpmManifest } from '../../shared/testing/rpm-manifest.ts';
import { RPM_QUERY_FORMAT, findRpmDatabase, parseRpmQuery, readRpmPackages } from './rpm.ts';
import { needs, TOOLS } from '../../shared/testing/system-tools.ts';

const data = join(import.meta.dirname, '..', '..', '..', 'shared', 'data');
const manifest = JSON.parse(gunzipSync(readFileSync(join(data, 'host-inventory', 'rhel9.5-httpd-24.rpm-manifest.claircore-fixture.json.gz'))).toString('utf8')) as {
  rpms: ManifestRpm[];
};
interface ManifestRpm {
  name: string;
  version: string;
  release: string;
  architecture: string;
  srpm_name: string;
  srpm_nevra: string;
}

/**
 * Real RHEL 9.5 builds to rebuild as tiny rpms: with and without an epoch, noarch
 * subpackages (bind-license), a subpackage with a version of its own (ding-libs'
 * libpath_utils), binaries named unlike their source (alternatives <- chkconfig), and
 * tar rebuilt for aarch64 so the database holds several arches.
 */
const SOURCES: [string, string][] = [
  ['acl', 'x86_64'],
  ['chkconfig', 'x86_64'],
  ['openssl', 'x86_64'],
  ['bind', 'x86_64'],
  ['ding-libs', 'x86_64'],
  ['tar', 'aarch64'],
];

/** A spec that builds, from no sources, the binaries the manifest lists for one source rpm. */
function specFor(srpm: string): string {
  const rpms = manifest.rpms.filter((r) => r.srpm_name === srpm);
  const first = rpms[0];
  assert.ok(first, `${srpm} is in the manifest`);
  const epoch = /^(\d+):/.exec(first.version)?.[1];
  const vr = first.srpm_nevra.slice(srpm.length + 1, -'.src'.length);
  const [version = '', release = ''] = vr.split('-');
  const lines = ['%global debug_package %{nil}', `Name: ${srpm}`, `Version: ${version}`, `Release: ${release}`];
  if (epoch !== undefined) lines.push(`Epoch: ${epoch}`);
  lines.push('Summary: patchwarden test build', 'License: MIT', '%description', 'Empty rebuild for a database test.');
  for (const rpm of rpms) {
    if (rpm.name === srpm) {
      lines.push('%files');
      continue;
    }
    const own = rpm.version.replace(/^\d+:/, '');
    lines.push(`%package -n ${rpm.name}`, `Summary: ${rpm.name}`);
    if (own !== version) lines.push(`Version: ${own}`);
    if (rpm.architecture === 'noarch') lines.push('BuildArch: noarch');
    lines.push(`%description -n ${rpm.name}`, `${rpm.name}.`, `%files -n ${rpm.name}`);
  }
  return `${lines.join('\n')}\n`;
}

const expected: Package[] = SOURCES.flatMap(([srpm, arch]) =>
  packagesFromRpmManifest({ rpms: manifest.rpms.filter((r) => r.srpm_name === srpm) }).map((p) => (p.arch === 'noarch' ? p : { ...p, arch })),
);

const byKey = (a: Package, b: Package): number => (a.name === b.name ? (a.arch < b.arch ? -1 : 1) : a.name < b.name ? -1 : 1);
const sorted = (list: Package[]): Package[] => [...list].sort(byKey);

async function run(file: string, args: string[]): Promise<string> {
  const result = await runCommand(file, args, { timeoutMs: 120_000 });
  assert.ok(result !== null, `${file} is installed (apt-get install -y --no-install-recommends rpm)`);
  assert.equal(result.status, 0, `${file} ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

let work = '';
let rpmsDir = '';

async function rpmRoot(name: string, dbpath = '/var/lib/rpm'): Promise<string> {
  const root = join(work, name);
  await mkdir(root, { recursive: true });
  await run('rpm', ['--root', root, '--dbpath', dbpath, '--initdb']);
  const files = (await readdir(rpmsDir)).map((f) => join(rpmsDir, f));
  await run('rpm', ['--root', root, '--dbpath', dbpath, '-i', '--justdb', '--nodeps', '--noscripts', '--ignorearch', '--ignoreos', '--nosignature', ...files]);
  // A real signing key (Debian's archive key) makes rpm add a gpg-pubkey pseudo package.
  await run('rpm', ['--root', root, '--dbpath', dbpath, '--import', '/etc/apt/trusted.gpg.d/debian-archive-bookworm-stable.asc']);
  return root;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'pw-rpm-'));
  rpmsDir = join(work, 'rpms');
  await mkdir(rpmsDir);
  if (needs(TOOLS.rpm, TOOLS.rpmbuild) !== false) return;
  for (const [srpm, arch] of SOURCES) {
    const spec = join(work, `${srpm}.spec`);
    await writeFile(spec, specFor(srpm));
    await run('rpmbuild', ['-bb', '--quiet', '--target', arch, '--define', `_topdir ${join(work, 'top')}`, spec]);
  }
  const top = join(work, 'top', 'RPMS');
  for (const arch of await readdir(top)) for (const f of await readdir(join(top, arch))) await copyFile(join(top, arch, f), join(rpmsDir, f));
});

after(() => rm(work, { recursive: true, force: true }));

describe('readRpmPackages: a real rpm database built with rpmbuild and rpm', { skip: needs(TOOLS.rpm, TOOLS.rpmbuild) }, () => {
  it('reads every package back with epochs, arches and source rpm names; no gpg-pubkey', async () => {
    const root = await rpmRoot('rhel');
    const listed = await run('rpm', ['--root', root, '--dbpath', '/var/lib/rpm', '-qa', '--qf', '%{NAME}\n']);
    assert.ok(listed.split('\n').includes('gpg-pubkey'), 'the key is in the database');
    const ctx = createContext(root);
    const got = await readRpmPackages(ctx);
    assert.ok(got !== null);
    assert.ok(expected.length >= 10, `${expected.length} packages from ${SOURCES.length} source rpms`);
    assert.deepEqual(sorted(got), sorted(expected));
    assert.deepEqual(ctx.warnings, []);
  });

  it('spot checks: epoch 1 openssl-libs, noarch epoch 32 bind-license, aarch64 tar, libpath_utils from ding-libs', async () => {
    const got = await readRpmPackages(createContext(join(work, 'rhel')));
    const find = (name: string): Package | undefined => got?.find((p) => p.name === name);
    assert.deepEqual(find('openssl-libs'), { name: 'openssl-libs', version: '1:3.2.2-6.el9_5', arch: 'x86_64', source: 'openssl', sourceVersion: '1:3.2.2-6.el9_5' });
    assert.deepEqual(find('bind-license'), { name: 'bind-license', version: '32:9.16.23-24.el9_5', arch: 'noarch', source: 'bind', sourceVersion: '32:9.16.23-24.el9_5' });
    assert.deepEqual(find('tar'), { name: 'tar', version: '2:1.34-7.el9', arch: 'aarch64', source: 'tar', sourceVersion: '2:1.34-7.el9' });
    assert.deepEqual(find('libpath_utils'), { name: 'libpath_utils', version: '0.2.1-53.el9', arch: 'x86_64', source: 'ding-libs', sourceVersion: '0.6.1-53.el9' });
    assert.deepEqual(find('acl'), { name: 'acl', version: '2.3.1-4.el9', arch: 'x86_64', source: 'acl', sourceVersion: '2.3.1-4.el9' });
  });

  it('Fedora/SUSE layout: /var/lib/rpm is a link to ../../usr/lib/sysimage/rpm', async () => {
    const root = await rpmRoot('fedora', '/usr/lib/sysimage/rpm');
    await mkdir(join(root, 'var/lib'), { recursive: true });
    await symlink('../../usr/lib/sysimage/rpm', join(root, 'var/lib/rpm'));
    const ctx = createContext(root);
    assert.equal(await findRpmDatabase(ctx), '/usr/lib/sysimage/rpm');
    assert.deepEqual(sorted((await readRpmPackages(ctx)) ?? []), sorted(expected));
    assert.deepEqual(ctx.warnings, []);
  });

  it('an absolute link is followed inside the root, not to the host', async () => {
    const root = await rpmRoot('abslink', '/usr/lib/sysimage/rpm');
    await mkdir(join(root, 'var/lib'), { recursive: true });
    await symlink('/usr/lib/sysimage/rpm', join(root, 'var/lib/rpm'));
    assert.deepEqual(sorted((await readRpmPackages(createContext(root))) ?? []), sorted(expected));
  });
});

describe('readRpmPackages: no database, no rpm, broken database', () => {
  it('no rpm database: null, no warning, and rpm is not run (it would create one)', async () => {
    const root = join(work, 'empty');
    await mkdir(join(root, 'var/lib/rpm'), { recursive: true });
    const ctx = createContext(root);
    assert.equal(await readRpmPackages(ctx), null);
    assert.deepEqual(await readdir(join(root, 'var/lib/rpm')), []);
    assert.deepEqual(ctx.warnings, []);
  });

  it('a database but no rpm program: null and a warning', { skip: needs(TOOLS.rpm, TOOLS.rpmbuild) }, async () => {
    const noRpm: CommandRunner = (file, args, options) => runCommand(file, args, { ...options, env: { PATH: join(work, 'no-such-bin'), LC_ALL: 'C' } });
    const ctx = createContext(join(work, 'rhel'), { run: noRpm });
    assert.equal(await readRpmPackages(ctx), null);
    assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_RPM_UNAVAILABLE']);
    assert.match(ctx.warnings[0]?.message ?? '', /var\/lib\/rpm but no rpm program/);
  });

  it('rpm killed by its timeout: [] and a warning', { skip: needs(TOOLS.rpm, TOOLS.rpmbuild) }, async () => {
    // A command that outlives its (short) timeout for certain: with the real rpm and 1 ms,
    // rpm now and then finished before the timer fired and the test failed.
    const impatient: CommandRunner = (_file, _args, options) => runCommand(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { ...options, timeoutMs: 200 });
    const ctx = createContext(join(work, 'rhel'), { run: impatient });
    assert.deepEqual(await readRpmPackages(ctx), []);
    assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_RPM_FAILED']);
  });

  const garbage: [string, string][] = [
    ['a sqlite database file of binary garbage', 'rpmdb.sqlite'],
    ['a Berkeley DB Packages file of binary garbage (RHEL 8 layout)', 'Packages'],
  ];
  for (const [name, file] of garbage) {
    it(`${name}: [] and rpm's error as a warning`, { skip: needs(TOOLS.rpm) }, async () => {
      const root = join(work, `garbage-${file}`);
      await mkdir(join(root, 'var/lib/rpm'), { recursive: true });
      await copyFile(join(data, 'host-inventory', 'debian12-host.dpkg-status.gz'), join(root, 'var/lib/rpm', file));
      const ctx = createContext(root);
      assert.deepEqual(await readRpmPackages(ctx), []);
      assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_RPM_FAILED']);
      assert.match(ctx.warnings[0]?.message ?? '', /exited with status 1: .*cannot open Packages/);
    });
  }
});

describe('parseRpmQuery: records and bad output', () => {
  const rec = (...fields: string[]): string => `${fields.join('\x1f')}\x1e`;
  const openssl = rec('openssl-libs', '1', '3.2.2', '6.el9_5', 'x86_64', 'openssl-3.2.2-6.el9_5.src.rpm');
  const opensslPkg: Package = { name: 'openssl-libs', version: '1:3.2.2-6.el9_5', arch: 'x86_64', source: 'openssl', sourceVersion: '1:3.2.2-6.el9_5' };
  const fiftyMb = 'x'.repeat(50 * 1024 * 1024);
  // [case, rpm output, packages expected, skip reason expected or null]
  const table: [string, string, Package[], string | null][] = [
    ['no output', '', [], null],
    ['one record', openssl, [opensslPkg], null],
    ['the query format rpm.ts sends has six fields and a record end', RPM_QUERY_FORMAT.replace(/%\{(\w+)\}/g, 'x'), [], 'SOURCERPM "x"'],
    ['epoch (none) is left out', rec('acl', '(none)', '2.3.1', '4.el9', 'x86_64', 'acl-2.3.1-4.el9.src.rpm'), [{ name: 'acl', version: '2.3.1-4.el9', arch: 'x86_64', source: 'acl', sourceVersion: '2.3.1-4.el9' }], null],
    ['epoch 0 is kept as rpm prints it', rec('acl', '0', '2.3.1', '4.el9', 'x86_64', 'acl-2.3.1-4.el9.src.rpm'), [{ name: 'acl', version: '0:2.3.1-4.el9', arch: 'x86_64', source: 'acl', sourceVersion: '0:2.3.1-4.el9' }], null],
    ['a nosrc source rpm', rec('skype', '(none)', '8.1', '1', 'x86_64', 'skype-8.1-1.nosrc.rpm'), [{ name: 'skype', version: '8.1-1', arch: 'x86_64', source: 'skype', sourceVersion: '8.1-1' }], null],
    ['no source rpm: its own source', rec('local', '(none)', '1.0', '1', 'noarch', '(none)'), [{ name: 'local', version: '1.0-1', arch: 'noarch', source: 'local', sourceVersion: '1.0-1' }], null],
    ['a source name with dashes', rec('python3-dateutil', '1', '2.8.1', '7.el9', 'noarch', 'python-dateutil-2.8.1-7.el9.src.rpm'), [{ name: 'python3-dateutil', version: '1:2.8.1-7.el9', arch: 'noarch', source: 'python-dateutil', sourceVersion: '1:2.8.1-7.el9' }], null],
    ['gpg-pubkey is left out, not counted', `${rec('gpg-pubkey', '(none)', '8783d481', '63ceb953', '(none)', '(none)')}${openssl}`, [opensslPkg], null],
    ['a trailing newline after the last record', `${openssl}\n`, [opensslPkg], null],
    ['truncated last record', `${openssl}${openssl.slice(0, 20)}`, [opensslPkg], 'truncated record'],
    ['five fields', `${rec('a', '1', '2', '3', 'x86_64')}${openssl}`, [opensslPkg], 'record with 5 fields instead of 6'],
    ['a source rpm that is not one', rec('acl', '(none)', '2.3.1', '4.el9', 'x86_64', 'acl.rpm'), [], 'SOURCERPM "acl.rpm" is not a source rpm'],
    ['a source rpm without a release', rec('acl', '(none)', '2.3.1', '4.el9', 'x86_64', 'acl-2.3.1.src.rpm'), [], 'SOURCERPM "acl-2.3.1.src.rpm"'],
    ['arch (none) on a real package', rec('acl', '(none)', '2.3.1', '4.el9', '(none)', 'acl-2.3.1-4.el9.src.rpm'), [], 'arch "(none)"'],
    ['a space in the version', rec('acl', '(none)', '2.3 1', '4.el9', 'x86_64', 'acl-2.3.1-4.el9.src.rpm'), [], 'version "2.3 1-4.el9"'],
    ['a 50 MB release', `${rec('acl', '(none)', '2.3.1', fiftyMb, 'x86_64', 'acl-2.3.1-4.el9.src.rpm')}${openssl}`, [opensslPkg], 'version "2.3.1-xxx'],
    ['binary garbage', readFileSync(join(data, 'host-inventory', 'debian12-host.dpkg-status.gz')).toString('latin1').replaceAll('\x1e', ''), [], 'truncated record'],
  ];
  for (const [name, stdout, want, reason] of table) {
    it(name, () => {
      const skips: string[] = [];
      assert.deepEqual(parseRpmQuery(stdout, (r) => skips.push(r)), want);
      if (reason === null) assert.deepEqual(skips, []);
      else {
        assert.ok(skips.length === 1 && skips[0]?.includes(reason), `${skips.join('\n')} mentions ${reason}`);
        assert.ok((skips[0]?.length ?? 0) < 300);
      }
    });
  }
});
