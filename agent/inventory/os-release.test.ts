import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createContext } from './context.ts';
import { parseOsRelease, readOsRelease } from './os-release.ts';

const fixtures = join(import.meta.dirname, 'fixtures', 'os-release');
const realDebian = join(import.meta.dirname, '..', '..', '..', 'shared', 'data', 'host-inventory', 'debian12-host.os-release');

async function rootWith(files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'pw-osr-'));
  for (const [path, source] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await copyFile(source, join(root, path));
  }
  return root;
}

describe('readOsRelease maps os-release to the OSV ecosystem', () => {
  const table: [string, string, string | null, string | null][] = [
    ['debian 12 (this host, real)', realDebian, 'Debian:12', 'bookworm'],
    ['ubuntu 24.04 LTS', join(fixtures, 'ubuntu-24.04'), 'Ubuntu:24.04:LTS', 'noble'],
    ['ubuntu 24.10 (not LTS)', join(fixtures, 'ubuntu-24.10'), 'Ubuntu:24.10', 'oracular'],
    ['almalinux 9.5', join(fixtures, 'almalinux-9.5'), 'AlmaLinux:9', null],
    ['rocky 9.4', join(fixtures, 'rocky-9.4'), 'Rocky Linux:9', null],
    ['rhel 9.5', join(fixtures, 'rhel-9.5'), 'Red Hat:9', null],
    ['alpine 3.21.0', join(fixtures, 'alpine-3.21'), 'Alpine:v3.21', null],
    ['alpine edge', join(fixtures, 'alpine-edge'), null, null],
    ['sles 15 sp5', join(fixtures, 'sles-15.5'), 'SUSE:Linux Enterprise Server 15 SP5', null],
    ['debian sid (no VERSION_ID)', join(fixtures, 'debian-sid'), null, 'trixie'],
    ['nixos (unknown)', join(fixtures, 'nixos-24.05'), null, 'uakari'],
  ];
  for (const [name, file, ecosystem, codename] of table) {
    it(`${name} -> ${ecosystem ?? 'null'}`, async (t) => {
      const root = await rootWith({ 'etc/os-release': file });
      t.after(() => rm(root, { recursive: true, force: true }));
      const ctx = createContext(root);
      const got = await readOsRelease(ctx);
      assert.equal(got.ecosystem, ecosystem);
      assert.equal(got.os.codename, codename);
      assert.equal(ctx.warnings.some((w) => w.code === 'PW_WARN_UNKNOWN_OS'), ecosystem === null);
    });
  }
});

describe('readOsRelease finds the file where os-release(5) says', () => {
  it('falls back to /usr/lib/os-release', async (t) => {
    const root = await rootWith({ 'usr/lib/os-release': realDebian });
    t.after(() => rm(root, { recursive: true, force: true }));
    assert.equal((await readOsRelease(createContext(root))).ecosystem, 'Debian:12');
  });

  it('follows an absolute symlink inside the root, not on the host', async (t) => {
    const root = await rootWith({ 'usr/lib/os-release': join(fixtures, 'alpine-3.21') });
    t.after(() => rm(root, { recursive: true, force: true }));
    await mkdir(join(root, 'etc'));
    await symlink('/usr/lib/os-release', join(root, 'etc', 'os-release'));
    assert.equal((await readOsRelease(createContext(root))).ecosystem, 'Alpine:v3.21');
  });

  it('a link that climbs out with .. stays inside the root', async (t) => {
    const root = await rootWith({ 'usr/lib/os-release': join(fixtures, 'rocky-9.4') });
    t.after(() => rm(root, { recursive: true, force: true }));
    await mkdir(join(root, 'etc'));
    await symlink('../../../../../../usr/lib/os-release', join(root, 'etc', 'os-release'));
    assert.equal((await readOsRelease(createContext(root))).ecosystem, 'Rocky Linux:9');
  });

  it('no os-release at all: null ecosystem and a warning, no throw', async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'pw-osr-'));
    t.after(() => rm(root, { recursive: true, force: true }));
    const ctx = createContext(root);
    const got = await readOsRelease(ctx);
    assert.equal(got.ecosystem, null);
    assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_UNKNOWN_OS']);
  });

  it('a directory where the file should be: a warning, no throw', async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'pw-osr-'));
    t.after(() => rm(root, { recursive: true, force: true }));
    await mkdir(join(root, 'etc', 'os-release'), { recursive: true });
    const ctx = createContext(root);
    assert.equal((await readOsRelease(ctx)).ecosystem, null);
    assert.ok(ctx.warnings.some((w) => w.code === 'PW_WARN_OS_RELEASE_UNREADABLE'));
  });

  it('binary garbage: unknown OS, no throw', async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'pw-osr-'));
    t.after(() => rm(root, { recursive: true, force: true }));
    await mkdir(join(root, 'etc'));
    const garbage = Buffer.alloc(4096);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919) & 0xff;
    await writeFile(join(root, 'etc', 'os-release'), garbage);
    const ctx = createContext(root);
    assert.equal((await readOsRelease(ctx)).ecosystem, null);
  });
});

describe('parseOsRelease reads shell-style assignments without evaluating them', () => {
  const table: [string, string, Record<string, string>][] = [
    ['double quotes with escapes', 'NAME="a \\"b\\" \\$HOME"', { NAME: 'a "b" $HOME' }],
    ['single quotes kept literal', "NAME='a $(rm -rf /)'", { NAME: 'a $(rm -rf /)' }],
    ['bare value', 'ID=debian', { ID: 'debian' }],
    ['comments and junk lines skipped', '# c\nnot an assignment\nlower=1\nID=x', { ID: 'x' }],
  ];
  for (const [name, text, want] of table) {
    it(name, () => {
      assert.deepEqual(Object.fromEntries(parseOsRelease(text)), want);
    });
  }
});
