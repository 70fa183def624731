import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import type { Package } from '../../shared/protocol.ts';
import { createContext, runCommand } from './context.ts';
import { DPKG_STATUS_PATH, hasDpkgDatabase, parseDpkgStatus, readDpkgPackages } from './dpkg.ts';

const data = join(import.meta.dirname, '..', '..', '..', 'shared', 'data', 'host-inventory');
const statusGz = readFileSync(join(data, 'debian12-host.dpkg-status.gz'));
const realStatus = gunzipSync(statusGz).toString('utf8');
const QUERY_FORMAT = '${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\t${db:Status-Abbrev}\n';

/**
 * dpkg-query's rows for installed packages: the second letter of the status abbreviation
 * is the state (`i` installed) and the third the error flag (space when ok).
 */
function fromDpkgQuery(tsv: string): Package[] {
  const out: Package[] = [];
  for (const line of tsv.split('\n')) {
    if (line === '') continue;
    const [name, version, arch, source, sourceVersion, abbrev] = line.split('\t');
    assert.ok(name !== undefined && version !== undefined && arch !== undefined && source !== undefined && sourceVersion !== undefined && abbrev !== undefined, line);
    if (abbrev[1] === 'i' && abbrev[2] === ' ') out.push({ name, version, arch, source, sourceVersion });
  }
  return out;
}

const byKey = (a: Package, b: Package): number => (a.name === b.name ? (a.arch < b.arch ? -1 : a.arch > b.arch ? 1 : 0) : a.name < b.name ? -1 : 1);
const sorted = (list: Package[]): Package[] => [...list].sort(byKey);

const expectedFixture = fromDpkgQuery(readFileSync(join(data, 'debian12-host.dpkg-query.tsv'), 'utf8'));

function expected(name: string): Package {
  const found = expectedFixture.find((p) => p.name === name);
  assert.ok(found, `${name} is in the dpkg-query fixture`);
  return found;
}

/** A real stanza of the fixture, with its trailing newline. */
function stanza(name: string): string {
  const start = realStatus.indexOf(`Package: ${name}\n`);
  assert.ok(start === 0 || (start > 0 && realStatus[start - 1] === '\n'), `${name} is in the status fixture`);
  const end = realStatus.indexOf('\n\n', start);
  return realStatus.slice(start, end + 1);
}

const LIBSSL3 = stanza('libssl3');
const BASH = stanza('bash');

/** Replaces (or with `null` removes) one field line of a stanza. */
function withField(text: string, field: string, value: string | null): string {
  const re = new RegExp(`^${field}: .*\\n`, 'm');
  assert.match(text, re);
  return text.replace(re, value === null ? '' : `${field}: ${value}\n`);
}

function parse(text: string): { packages: Package[]; skips: string[] } {
  const skips: string[] = [];
  const packages = parseDpkgStatus(text, (reason) => skips.push(reason));
  return { packages, skips };
}

async function tempRoot(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'pw-dpkg-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  return root;
}

async function rootWithStatus(t: { after: (fn: () => Promise<void>) => void }, content: string | Buffer): Promise<string> {
  const root = await tempRoot(t);
  await mkdir(join(root, 'var/lib/dpkg'), { recursive: true });
  await writeFile(join(root, DPKG_STATUS_PATH), content);
  return root;
}

describe('parseDpkgStatus agrees with dpkg-query', () => {
  it('this machine: /var/lib/dpkg/status equals dpkg-query -W (run for real)', async () => {
    // Other work on this machine may install packages meanwhile: retry while the status
    // file changed between the two reads.
    for (let attempt = 1; ; attempt++) {
      const before = statSync('/var/lib/dpkg/status').mtimeMs;
      const query = await runCommand('dpkg-query', ['-W', `-f=${QUERY_FORMAT}`]);
      assert.ok(query !== null && query.status === 0, 'dpkg-query runs');
      const ctx = createContext('/');
      const got = await readDpkgPackages(ctx);
      if (statSync('/var/lib/dpkg/status').mtimeMs !== before && attempt < 5) continue;
      const want = fromDpkgQuery(query.stdout);
      assert.ok(want.length > 100, `a real host has many packages (${want.length})`);
      assert.ok(got !== null);
      assert.deepEqual(sorted(got), sorted(want));
      assert.deepEqual(ctx.warnings.filter((w) => w.code === 'PW_WARN_DPKG_MALFORMED'), []);
      break;
    }
  });

  it('debian12-host.dpkg-status.gz equals its dpkg-query.tsv (732 packages)', () => {
    const { packages, skips } = parse(realStatus);
    assert.equal(packages.length, 732);
    assert.deepEqual(skips, []);
    assert.deepEqual(sorted(packages), sorted(expectedFixture));
  });

  it('parses the 732-package status file in well under 10 ms', () => {
    for (let i = 0; i < 5; i++) parseDpkgStatus(realStatus);
    const times: number[] = [];
    for (let i = 0; i < 21; i++) {
      const start = performance.now();
      parseDpkgStatus(realStatus);
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    const median = times[10] ?? Infinity;
    assert.ok(median < 10, `median ${median.toFixed(2)} ms`);
  });
});

describe('parseDpkgStatus: states, fields and bad input', () => {
  const libssl3 = LIBSSL3;
  const bash = BASH;
  const fiftyMb = 'x'.repeat(50 * 1024 * 1024);
  // [case, status file text, packages expected (from the real dpkg-query rows), skip reason expected or null]
  const table: [string, string, string[], string | null][] = [
    ['empty file', '', [], null],
    ['only blank lines', '\n\n\n', [], null],
    ['libssl3: Source without a version takes the binary version', libssl3, ['libssl3'], null],
    ['bash: Source: bash (5.2.15-2) gives the source version', bash, ['bash'], null],
    ['two stanzas with extra blank lines between and around', `\n\n${libssl3}\n\n\n${bash}\n\n`, ['libssl3', 'bash'], null],
    ['last stanza ends without the blank line', `${libssl3}\n${bash}`, ['libssl3', 'bash'], null],
    ['hold ok installed is installed', withField(libssl3, 'Status', 'hold ok installed'), ['libssl3'], null],
    ['deinstall ok installed (marked, not yet removed) is installed', withField(libssl3, 'Status', 'deinstall ok installed'), ['libssl3'], null],
    ['deinstall ok config-files (rc) is left out, not counted', withField(libssl3, 'Status', 'deinstall ok config-files'), [], null],
    ['purge ok not-installed is left out', withField(libssl3, 'Status', 'purge ok not-installed'), [], null],
    ['install ok half-installed is left out', withField(libssl3, 'Status', 'install ok half-installed'), [], null],
    ['install ok unpacked is left out', withField(libssl3, 'Status', 'install ok unpacked'), [], null],
    ['install reinstreq half-installed is left out', withField(libssl3, 'Status', 'install reinstreq half-installed'), [], null],
    ['install ok triggers-pending is left out', withField(libssl3, 'Status', 'install ok triggers-pending'), [], null],
    ['lower-case field names (deb822 names are case-insensitive)', libssl3.replace('Package:', 'package:').replace('Version:', 'VERSION:'), ['libssl3'], null],
    ['a 50 MB Description is read past', `${libssl3.replace('Description: ', `Description: ${fiftyMb}\n `)}\n${bash}`, ['libssl3', 'bash'], null],
    ['a 50 MB Version is skipped', `${withField(libssl3, 'Version', fiftyMb)}\n${bash}`, ['bash'], 'version "xxxx'],
    ['a 50 MB line without a colon is skipped', `${bash}\n${libssl3}${fiftyMb}\n`, ['bash'], 'line without a field name'],
    ['truncated mid-Version at end of file', `${bash}\n${libssl3.slice(0, libssl3.indexOf('Version: ') + 14)}`, ['bash'], 'truncated'],
    ['truncated after a whole line, before Version', `${bash}\n${libssl3.slice(0, libssl3.indexOf('Version: '))}`, ['bash'], 'no Version field'],
    ['no Status field', withField(libssl3, 'Status', null), [], 'no Status field'],
    ['no Package field', withField(libssl3, 'Package', null), [], 'no Package field'],
    ['no Architecture field', withField(libssl3, 'Architecture', null), [], 'no Architecture field'],
    ['Status with two words', withField(libssl3, 'Status', 'install installed'), [], 'malformed Status'],
    ['Status with an unknown state', withField(libssl3, 'Status', 'install ok sideways'), [], 'malformed Status'],
    ['duplicate Version field', libssl3.replace('Version: ', 'Version: 9.9\nVersion: '), [], 'duplicate version'],
    ['Version folded onto a continuation line', libssl3.replace(/^Version: .*$/m, '$&\n 1'), [], 'version field spans several lines'],
    ['continuation line before the first field', ` stray\n${libssl3}`, [], 'continuation line before the first field'],
    ['a line with no colon', libssl3.replace('Priority: optional', 'Priority optional'), [], 'line without a field name'],
    ['a space inside the version', withField(libssl3, 'Version', '3.0.19 1'), [], 'version "3.0.19 1"'],
    ['a NUL byte in the package name', withField(libssl3, 'Package', 'libssl3\0'), [], 'not a valid package name'],
    ['HTML in the package name', withField(libssl3, 'Package', '<script>'), [], 'not a valid package name'],
    ['Source with an unclosed version', withField(libssl3, 'Source', 'openssl (3.0.19'), [], 'malformed Source'],
    ['Source with two words', withField(libssl3, 'Source', 'openssl extra'), [], 'malformed Source'],
    ['a garbage stanza between two good ones', `${libssl3}\n\x7fELF\x02\x01\x01\n\n${bash}`, ['libssl3', 'bash'], 'line without a field name'],
  ];
  for (const [name, text, names, reason] of table) {
    it(name, () => {
      const { packages, skips } = parse(text);
      assert.deepEqual(packages, names.map(expected));
      if (reason === null) assert.deepEqual(skips, []);
      else {
        assert.equal(skips.length, 1, skips.join('\n'));
        assert.ok(skips[0]?.includes(reason), `${skips[0] ?? ''} mentions ${reason}`);
        assert.ok((skips[0]?.length ?? 0) < 300, 'the reason quotes a short example, not the whole field');
      }
    });
  }

  it('binary garbage (the gzip bytes of the status file): nothing parsed, every stanza counted', () => {
    const { packages, skips } = parse(statusGz.toString('utf8'));
    assert.deepEqual(packages, []);
    assert.ok(skips.length > 0);
  });

  it('numbers the lines of skipped stanzas', () => {
    const text = `${libssl3}\n${withField(bash, 'Version', 'a b')}`;
    const { skips } = parse(text);
    assert.equal(skips.length, 1);
    assert.match(skips[0] ?? '', new RegExp(`^line ${libssl3.split('\n').length + 1}: `));
  });
});

describe('readDpkgPackages: the file in a root', () => {
  it('a root without dpkg: null, no warning', async (t) => {
    const ctx = createContext(await tempRoot(t));
    assert.equal(await readDpkgPackages(ctx), null);
    assert.equal(await hasDpkgDatabase(ctx), false);
    assert.deepEqual(ctx.warnings, []);
  });

  it('the real Debian 12 status file in a root: 732 packages, no warning', async (t) => {
    const ctx = createContext(await rootWithStatus(t, realStatus));
    const got = await readDpkgPackages(ctx);
    assert.ok(got !== null);
    assert.deepEqual(sorted(got), sorted(expectedFixture));
    assert.equal(await hasDpkgDatabase(ctx), true);
    assert.deepEqual(ctx.warnings, []);
  });

  it('truncated and garbage-laden file: partial result, one counted warning and one for the truncation', async (t) => {
    const cut = realStatus.indexOf('Package: zstd\n');
    const text = `${realStatus.slice(0, cut)}\x00\x01garbage\n\n:::\n\n${realStatus.slice(cut, cut + 40)}`;
    const ctx = createContext(await rootWithStatus(t, text));
    const got = await readDpkgPackages(ctx);
    assert.deepEqual(
      got,
      parseDpkgStatus(realStatus).filter((p) => p.name !== 'zstd'),
    );
    assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_DPKG_TRUNCATED', 'PW_WARN_DPKG_MALFORMED']);
    const warning = ctx.warnings[1];
    assert.equal(warning?.code, 'PW_WARN_DPKG_MALFORMED');
    assert.equal(warning.source, 'dpkg');
    assert.match(warning.message, /^skipped 3 malformed or truncated stanza\(s\) in \/tmp\/pw-dpkg-.*\/var\/lib\/dpkg\/status, for example line \d+: line without a field name/);
  });

  it('a directory where the status file should be: [] and a warning, no throw', async (t) => {
    const root = await tempRoot(t);
    await mkdir(join(root, DPKG_STATUS_PATH), { recursive: true });
    const ctx = createContext(root);
    assert.deepEqual(await readDpkgPackages(ctx), []);
    assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_DPKG_UNREADABLE']);
    assert.match(ctx.warnings[0]?.message ?? '', /not a regular file/);
  });

  it('a symlink loop at the status path: [] and a warning, no throw', async (t) => {
    const root = await tempRoot(t);
    await mkdir(join(root, 'var/lib/dpkg'), { recursive: true });
    await symlink('status', join(root, DPKG_STATUS_PATH));
    const ctx = createContext(root);
    assert.deepEqual(await readDpkgPackages(ctx), []);
    assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_DPKG_UNREADABLE']);
  });

  it('mode 000: a warning for other users (root reads it anyway)', async (t) => {
    const root = await rootWithStatus(t, `${LIBSSL3}\n`);
    await chmod(join(root, DPKG_STATUS_PATH), 0o000);
    const ctx = createContext(root);
    const got = await readDpkgPackages(ctx);
    if (process.getuid?.() === 0) {
      // CAP_DAC_OVERRIDE: root is never refused; the directory case above covers the error path.
      assert.deepEqual(got, [expected('libssl3')]);
      assert.deepEqual(ctx.warnings, []);
    } else {
      assert.deepEqual(got, []);
      assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_DPKG_UNREADABLE']);
    }
  });

  it('an unmerged dpkg journal: the packages and an interrupted warning', async (t) => {
    const root = await rootWithStatus(t, `${LIBSSL3}\n`);
    await mkdir(join(root, 'var/lib/dpkg/updates'));
    await writeFile(join(root, 'var/lib/dpkg/updates/0000'), withField(LIBSSL3, 'Version', '3.0.22-1~deb12u2'));
    await writeFile(join(root, 'var/lib/dpkg/updates/tmp.i'), '');
    const ctx = createContext(root);
    assert.deepEqual(await readDpkgPackages(ctx), [expected('libssl3')]);
    assert.deepEqual(ctx.warnings.map((w) => w.code), ['PW_WARN_DPKG_INTERRUPTED']);
    assert.match(ctx.warnings[0]?.message ?? '', /^1 dpkg journal entry in .*dpkg --configure -a/);
  });
});

