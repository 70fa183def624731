import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import type { PackageFormat } from '../../shared/protocol.ts';
import { type CommandRunner, createContext, runCommand } from './context.ts';
import { readPackages } from './packages.ts';
import { needs, TOOLS } from '../../shared/testing/system-tools.ts';

const data = join(import.meta.dirname, '..', '..', '..', 'shared', 'data');
const dpkgStatus = gunzipSync(readFileSync(join(data, 'host-inventory', 'debian12-host.dpkg-status.gz')));

/** Two real Alpine 3.21 packages, at versions the v3.21 secdb lists as fixes. */
function apkInstalled(): string {
  const secdb = JSON.parse(gunzipSync(readFileSync(join(data, 'alpine-secdb', 'v3.21-main.json.gz'))).toString('utf8')) as {
    packages: { pkg: { name: string; secfixes: Record<string, unknown> } }[];
  };
  return ['musl', 'openssl']
    .map((name) => {
      const version = Object.keys(secdb.packages.find((p) => p.pkg.name === name)?.pkg.secfixes ?? {}).at(-1) ?? '';
      return `P:${name}\nV:${version}\nA:x86_64\no:${name}\n`;
    })
    .join('\n');
}

let work = '';
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'pw-pkgs-'));
});
after(() => rm(work, { recursive: true, force: true }));

type Layer = 'dpkg' | 'rpm' | 'apk' | 'empty-rpm-dir';

async function rootWith(name: string, layers: Layer[]): Promise<string> {
  const root = join(work, name);
  await mkdir(root);
  for (const layer of layers) {
    if (layer === 'dpkg') {
      await mkdir(join(root, 'var/lib/dpkg'), { recursive: true });
      await writeFile(join(root, 'var/lib/dpkg/status'), dpkgStatus);
    } else if (layer === 'apk') {
      await mkdir(join(root, 'lib/apk/db'), { recursive: true });
      await writeFile(join(root, 'lib/apk/db/installed'), apkInstalled());
    } else if (layer === 'empty-rpm-dir') {
      await mkdir(join(root, 'var/lib/rpm'), { recursive: true });
    } else {
      // A real, empty rpm database, as rpm itself makes it.
      const made = await runCommand('rpm', ['--root', root, '--dbpath', '/var/lib/rpm', '--initdb']);
      assert.ok(made !== null && made.status === 0, 'rpm is installed (apt-get install -y --no-install-recommends rpm)');
    }
  }
  return root;
}

describe('readPackages: the first database found wins', () => {
  // [case, databases in the root, format, package count, warning codes]
  const table: [string, Layer[], PackageFormat | null, number, string[]][] = [
    ['dpkg only (real Debian 12 status)', ['dpkg'], 'deb', 732, []],
    ["dpkg and Debian's empty /var/lib/rpm", ['dpkg', 'empty-rpm-dir'], 'deb', 732, []],
    ['rpm only (empty database from rpm --initdb)', ['rpm'], 'rpm', 0, []],
    ['apk only', ['apk'], 'apk', 2, []],
    ['dpkg and apk', ['dpkg', 'apk'], 'deb', 732, ['PW_WARN_MULTIPLE_PACKAGE_DBS']],
    ['dpkg, rpm and apk', ['dpkg', 'rpm', 'apk'], 'deb', 732, ['PW_WARN_MULTIPLE_PACKAGE_DBS']],
    ['rpm and apk', ['rpm', 'apk'], 'rpm', 0, ['PW_WARN_MULTIPLE_PACKAGE_DBS']],
    ['no database at all', [], null, 0, ['PW_WARN_NO_PACKAGE_DB']],
  ];
  for (const [name, layers, format, count, codes] of table) {
    it(`${name} -> ${format ?? 'null'}`, { skip: layers.includes('rpm') && needs(TOOLS.rpm) }, async () => {
      const ctx = createContext(await rootWith(name.replace(/\W+/g, '-'), layers));
      const got = await readPackages(ctx);
      assert.equal(got.format, format);
      assert.equal(got.packages.length, count);
      assert.deepEqual(ctx.warnings.map((w) => w.code), codes);
    });
  }

  it('names every database it found when there are several', { skip: needs(TOOLS.rpm) }, async () => {
    const ctx = createContext(await rootWith('three', ['dpkg', 'rpm', 'apk']));
    await readPackages(ctx);
    assert.match(ctx.warnings[0]?.message ?? '', /has dpkg and rpm and apk package databases; reporting the dpkg packages only/);
  });

  it('an rpm database but no rpm program: null, and only the rpm warning', { skip: needs(TOOLS.rpm) }, async () => {
    const noRpm: CommandRunner = (file, args, options) => runCommand(file, args, { ...options, env: { PATH: join(work, 'no-such-bin'), LC_ALL: 'C' } });
    const ctx = createContext(await rootWith('rpm-no-program', ['rpm']), { run: noRpm });
    assert.deepEqual(await readPackages(ctx), { format: null, packages: [] });
    assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_RPM_UNAVAILABLE']);
  });
});

describe('readPackages on this machine', () => {
  it('is a dpkg host: the packages dpkg-query -W lists as installed', async () => {
    // Others may install packages on this machine meanwhile: retry while the status file changed.
    for (let attempt = 1; ; attempt++) {
      const before = statSync('/var/lib/dpkg/status').mtimeMs;
      const query = await runCommand('dpkg-query', ['-W', '-f=${Package}:${Architecture}\t${db:Status-Abbrev}\n']);
      assert.ok(query !== null && query.status === 0);
      const ctx = createContext('/');
      const got = await readPackages(ctx);
      if (statSync('/var/lib/dpkg/status').mtimeMs !== before && attempt < 5) continue;
      assert.equal(got.format, 'deb');
      const installed = query.stdout
        .split('\n')
        .filter((line) => /\t.i $/.test(line))
        .map((line) => line.split('\t')[0])
        .sort();
      assert.ok(installed.length > 100);
      assert.deepEqual(got.packages.map((p) => `${p.name}:${p.arch}`).sort(), installed);
      assert.deepEqual(ctx.warnings.filter((w) => w.source === 'packages' || w.source === 'dpkg'), []);
      break;
    }
  });
});
