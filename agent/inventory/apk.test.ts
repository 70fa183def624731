import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import type { Package } from '../../shared/protocol.ts';
import { findApkDatabase, parseApkInstalled, readApkPackages } from './apk.ts';
import { createContext } from './context.ts';

const secdbPath = join(import.meta.dirname, '..', '..', '..', 'shared', 'data', 'alpine-secdb', 'v3.21-main.json.gz');

interface Secdb {
  packages: { pkg: { name: string; secfixes: Record<string, string[]> } }[];
}
const secdb = JSON.parse(gunzipSync(readFileSync(secdbPath)).toString('utf8')) as Secdb;

/**
 * Binary packages whose origin (aport) differs from their name, as Alpine 3.21 ships
 * them: the secdb is keyed by origin, so these exercise `o:`.
 */
const SUBPACKAGES: Record<string, string[]> = {
  openssl: ['libcrypto3', 'libssl3'],
  musl: ['musl-utils'],
  busybox: ['busybox-binsh', 'ssl_client'],
  curl: ['libcurl'],
};

/**
 * What an Alpine 3.21 host with every v3.21/main aport that has a security fix would
 * list: each at its newest fixed version (the secdb lists them oldest first), x86_64.
 */
const installed: Package[] = secdb.packages.flatMap(({ pkg }) => {
  const fixed = Object.keys(pkg.secfixes).filter((v) => v !== '0');
  const version = fixed.at(-1);
  if (version === undefined) return [];
  return [pkg.name, ...(SUBPACKAGES[pkg.name] ?? [])].map((name) => ({ name, version, arch: 'x86_64', source: pkg.name, sourceVersion: version }));
});

const q1 = (s: string): string => `Q1${createHash('sha1').update(s).digest('base64')}`;

/** One installed-db stanza laid out the way apk writes it (database.c apk_db_fdb_write). */
function stanzaOf(p: Package): string {
  const fields: [string, string][] = [
    ['C', q1(`${p.name}-${p.version}`)],
    ['P', p.name],
    ['V', p.version],
    ['A', p.arch],
    ['S', String(1024 + p.name.length * 97)],
    ['I', String(4096 + p.name.length * 311)],
    ['T', `${p.name} from the ${p.source} aport`],
    ['U', `https://pkgs.alpinelinux.org/package/v3.21/main/x86_64/${p.name}`],
    ['L', 'MIT'],
    ['o', p.source],
    ['m', 'Natanael Copa <ncopa@alpinelinux.org>'],
    ['t', '1733000000'],
    ['c', createHash('sha1').update(p.source).digest('hex')],
    ['D', 'so:libc.musl-x86_64.so.1'],
    ['p', `cmd:${p.name}=${p.version}`],
    ['F', 'usr/bin'],
    ['R', p.name],
    ['a', '0:0:755'],
    ['Z', q1(p.name)],
    ['F', `usr/share/doc/${p.name}`],
    ['R', 'README'],
    ['Z', q1(`${p.name}/README`)],
  ];
  return `${fields.map(([k, v]) => `${k}:${v}`).join('\n')}\n`;
}

const db = `${installed.map(stanzaOf).join('\n')}\n`;

function parse(text: string): { packages: Package[]; skips: string[] } {
  const skips: string[] = [];
  return { packages: parseApkInstalled(text, (r) => skips.push(r)), skips };
}

function find(name: string): Package {
  const p = installed.find((x) => x.name === name);
  assert.ok(p, `${name} is in the fixture`);
  return p;
}

const stanza = (name: string): string => stanzaOf(find(name));
/** Replaces (or with `null` removes) a one-letter field line. */
function withField(text: string, key: string, value: string | null): string {
  const re = new RegExp(`^${key}:.*\\n`, 'm');
  assert.match(text, re);
  return text.replace(re, value === null ? '' : `${key}:${value}\n`);
}

type After = { after: (fn: () => Promise<void>) => void };
async function tempRoot(t: After): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'pw-apk-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  return root;
}

describe('parseApkInstalled: a v3.21 installed db built from the real secdb', () => {
  it(`reads all ${installed.length} packages with their origins`, () => {
    assert.ok(installed.length > 250);
    const { packages, skips } = parse(db);
    assert.deepEqual(skips, []);
    assert.deepEqual(packages, installed);
  });

  it('subpackages carry their aport as source: libssl3 <- openssl', () => {
    const { packages } = parse(db);
    assert.deepEqual(packages.find((p) => p.name === 'libssl3'), { name: 'libssl3', version: '3.3.2-r3', arch: 'x86_64', source: 'openssl', sourceVersion: '3.3.2-r3' });
  });
});

describe('parseApkInstalled: fields and bad input', () => {
  const musl = stanza('musl');
  const libssl3 = stanza('libssl3');
  const fiftyMb = 'x'.repeat(50 * 1024 * 1024);
  // [case, db text, packages expected, skip reason expected or null]
  const table: [string, string, string[], string | null][] = [
    ['empty file', '', [], null],
    ['only blank lines', '\n\n', [], null],
    ['one stanza without the closing blank line', musl, ['musl'], null],
    ['no o: origin: the package is its own source', withField(libssl3, 'o', null), ['libssl3:self'], null],
    ['a 50 MB description is read past', `${withField(musl, 'T', fiftyMb)}\n${libssl3}`, ['musl', 'libssl3'], null],
    ['a 50 MB version is skipped', `${withField(musl, 'V', fiftyMb)}\n${libssl3}`, ['libssl3'], 'version "xxxx'],
    ['truncated mid-version at end of file', `${musl}\n${libssl3.slice(0, libssl3.indexOf('\nV:') + 5)}`, ['musl'], 'truncated'],
    ['truncated before the arch line', `${musl}\n${libssl3.slice(0, libssl3.indexOf('\nA:') + 1)}`, ['musl'], 'no A: (arch) field'],
    ['no P: field', withField(musl, 'P', null), [], 'no P: (name) field'],
    ['no V: field', withField(musl, 'V', null), [], 'no V: (version) field'],
    ['duplicate V: field', musl.replace('\nV:', '\nV:1.0-r0\nV:'), [], 'duplicate V: field'],
    ['a line without a field letter', musl.replace('\nL:', '\nLicense='), [], 'line without a field letter'],
    ['a one-character line', musl.replace('\nL:MIT', '\nL'), [], 'line without a field letter'],
    ['a space in the version', withField(musl, 'V', '1.2.5 r0'), [], 'not a valid package version'],
    ['shell metacharacters in the origin', withField(musl, 'o', 'musl;reboot'), [], 'source "musl;reboot"'],
    ['binary garbage between two good stanzas', `${musl}\n\x7fELF\x02\x01\x01\0\0\n\n${libssl3}`, ['musl', 'libssl3'], 'line without a field letter'],
  ];
  for (const [name, text, names, reason] of table) {
    it(name, () => {
      const { packages, skips } = parse(text);
      const want = names.map((n) => (n.endsWith(':self') ? { ...find(n.slice(0, -5)), source: n.slice(0, -5) } : find(n)));
      assert.deepEqual(packages, want);
      if (reason === null) assert.deepEqual(skips, []);
      else {
        assert.equal(skips.length, 1, skips.join('\n'));
        assert.ok(skips[0]?.includes(reason), `${skips[0] ?? ''} mentions ${reason}`);
        assert.ok((skips[0]?.length ?? 0) < 300);
      }
    });
  }

  it('binary garbage (gzip bytes of the secdb): nothing parsed, skips counted, no throw', () => {
    const { packages, skips } = parse(readFileSync(secdbPath).toString('utf8'));
    assert.deepEqual(packages, []);
    assert.ok(skips.length > 0);
  });
});

describe('readApkPackages: the database in a root', () => {
  const table: [string, string][] = [
    ['apk-tools 2 location /lib/apk/db/installed', 'lib/apk/db/installed'],
    ['apk-tools 3 location /usr/lib/apk/db/installed', 'usr/lib/apk/db/installed'],
  ];
  for (const [name, path] of table) {
    it(name, async (t) => {
      const root = await tempRoot(t);
      await mkdir(join(root, path, '..'), { recursive: true });
      await writeFile(join(root, path), db);
      const ctx = createContext(root);
      assert.deepEqual(await readApkPackages(ctx), installed);
      assert.equal(await findApkDatabase(ctx), `/${path}`);
      assert.deepEqual(ctx.warnings, []);
    });
  }

  it('usr-merged (Wolfi): /lib -> usr/lib', async (t) => {
    const root = await tempRoot(t);
    await mkdir(join(root, 'usr/lib/apk/db'), { recursive: true });
    await writeFile(join(root, 'usr/lib/apk/db/installed'), db);
    await symlink('usr/lib', join(root, 'lib'));
    const ctx = createContext(root);
    assert.deepEqual(await readApkPackages(ctx), installed);
    assert.deepEqual(ctx.warnings, []);
  });

  it('no apk database: null, no warning', async (t) => {
    const ctx = createContext(await tempRoot(t));
    assert.equal(await readApkPackages(ctx), null);
    assert.deepEqual(ctx.warnings, []);
  });

  it('a directory where the database should be: [] and a warning', async (t) => {
    const root = await tempRoot(t);
    await mkdir(join(root, 'lib/apk/db/installed'), { recursive: true });
    const ctx = createContext(root);
    assert.deepEqual(await readApkPackages(ctx), []);
    assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_APK_UNREADABLE']);
  });

  it('truncated database: every whole stanza and ONE counted warning', async (t) => {
    const root = await tempRoot(t);
    await mkdir(join(root, 'lib/apk/db'), { recursive: true });
    const cut = db.lastIndexOf('\nV:');
    await writeFile(join(root, 'lib/apk/db/installed'), `${db.slice(0, cut)}\nV:1.`);
    const ctx = createContext(root);
    assert.deepEqual(await readApkPackages(ctx), installed.slice(0, -1));
    assert.equal(ctx.warnings.length, 1);
    assert.equal(ctx.warnings[0]?.code, 'PW_WARN_APK_MALFORMED');
    assert.match(ctx.warnings[0].message, /^skipped 1 malformed or truncated stanza\(s\) in .*\/lib\/apk\/db\/installed, for example line \d+: truncated/);
  });
});
