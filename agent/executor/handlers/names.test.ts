import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readData } from '../../../shared/testing/data.ts';
import { type ManagerFamily, packageSpecs, UNSAFE_PACKAGE_NAME, validPackageName, validPackageVersion } from './names.ts';

const FAMILIES: readonly ManagerFamily[] = ['dpkg', 'rpm', 'apk'];

/** Option injection, shell metacharacters, path tricks, globs and empty or oversized names. */
const HOSTILE_NAMES = [
  '-oAPT::Update::Pre-Invoke::=id',
  '--simulate',
  '-y',
  'foo;rm -rf /',
  '$(id)',
  '`id`',
  'a b',
  '../x',
  'x/y',
  '',
  'foo\nbar',
  'foo\u0000',
  'foo*',
  'foo?',
  'foo[1]',
  'foo=1.0',
  "foo'",
  '"foo"',
  'foo|id',
  'foo&',
  '%{_bindir}',
  'ü',
  'a'.repeat(257),
];

describe('packageSpecs refuses hostile names before anything runs', () => {
  for (const family of FAMILIES) {
    for (const name of HOSTILE_NAMES) {
      it(`${family}: ${JSON.stringify(name.slice(0, 40))}`, () => {
        const r = packageSpecs(family, [{ name, version: null }]);
        if (r.ok) assert.fail(`accepted as ${r.specs.join(' ')}`);
        assert.equal(r.code, UNSAFE_PACKAGE_NAME);
        assert.match(r.message, /not a valid/);
      });
    }
  }
});

describe('packageSpecs refuses hostile versions', () => {
  const versions = ['-1', '1.0 -oFoo=bar', '1.0;id', '$(id)', '1.0/../x', '', '1.0\n', '1.0*'];
  for (const family of FAMILIES) {
    for (const version of versions) {
      it(`${family}: openssl at ${JSON.stringify(version)}`, () => {
        const r = packageSpecs(family, [{ name: 'openssl', version }]);
        if (r.ok) assert.fail(`accepted as ${r.specs.join(' ')}`);
        assert.equal(r.code, UNSAFE_PACKAGE_NAME);
      });
    }
  }
});

describe('packageSpecs: one bad target refuses the whole list', () => {
  for (const family of FAMILIES) {
    it(`${family}: openssl then "-oX"`, () => {
      assert.equal(packageSpecs(family, [{ name: 'openssl', version: null }, { name: '-oX', version: null }]).ok, false);
    });
  }
  it('an empty list', () => {
    assert.equal(packageSpecs('dpkg', []).ok, false);
  });
});

describe('packageSpecs spells exact versions as each family does', () => {
  const cases: [ManagerFamily, string, string | null, string][] = [
    ['dpkg', 'libssl3', '3.0.17-1~deb12u2', 'libssl3=3.0.17-1~deb12u2'],
    ['dpkg', 'libssl3', null, 'libssl3'],
    ['dpkg', 'libc6', '2.36-9+deb12u13', 'libc6=2.36-9+deb12u13'],
    ['rpm', 'bind', '32:9.16.23-24.el9_5.3', 'bind-32:9.16.23-24.el9_5.3'],
    ['rpm', 'openssl-libs', '3.2.2-6.el9_5', 'openssl-libs-3.2.2-6.el9_5'],
    ['rpm', 'kernel', null, 'kernel'],
    ['apk', 'openssl', '3.3.2-r1', 'openssl=3.3.2-r1'],
    ['apk', 'busybox', null, 'busybox'],
  ];
  for (const [family, name, version, spec] of cases) {
    it(`${family}: ${name} ${version ?? '(newest)'} -> ${spec}`, () => {
      assert.deepEqual(packageSpecs(family, [{ name, version }]), { ok: true, specs: [spec] });
    });
  }
});

// Every real name and version must pass its own family's grammar: a grammar that refused
// real packages would make patching them impossible.
describe('real package names and versions pass their grammar', () => {
  it('dpkg: every package of a real Debian 12 host (dpkg-query) and every bookworm-security version', () => {
    const rows = readData('host-inventory', 'debian12-host.dpkg-query.tsv').split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
    assert.ok(rows.length > 700);
    for (const [name, version] of rows) {
      assert.ok(validPackageName('dpkg', name ?? ''), `name ${name}`);
      assert.ok(validPackageVersion('dpkg', version ?? ''), `version ${version}`);
    }
    const security = [...readData('host-inventory', 'bookworm-security_main_amd64_Packages.gz').matchAll(/^(Package|Version): (.+)$/gm)];
    assert.ok(security.length > 6000);
    for (const m of security) assert.ok(m[1] === 'Package' ? validPackageName('dpkg', m[2] ?? '') : validPackageVersion('dpkg', m[2] ?? ''), `${m[1]} ${m[2]}`);
  });
  it('dpkg: every version in the dpkg --compare-versions vectors', () => {
    const lines = readData('version-vectors', 'dpkg-compare-versions.tsv').split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    for (const l of lines) for (const v of l.split('\t').slice(0, 2)) assert.ok(validPackageVersion('dpkg', v), v);
  });
  it('rpm: every rpm of a real RHEL 9.5 image, and every EVR of the rpm vectors', () => {
    const manifest = JSON.parse(readData('host-inventory', 'rhel9.5-httpd-24.rpm-manifest.claircore-fixture.json.gz')) as { rpms: { name: string; version: string; release: string }[] };
    assert.ok(manifest.rpms.length > 200);
    for (const r of manifest.rpms) {
      assert.ok(validPackageName('rpm', r.name), r.name);
      assert.ok(validPackageVersion('rpm', `${r.version}-${r.release}`), `${r.version}-${r.release}`);
    }
    const lines = readData('version-vectors', 'rpm-vercmp.tsv').split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    for (const l of lines) for (const v of l.split('\t').slice(0, 2)) assert.ok(validPackageVersion('rpm', v), v);
  });
  it('apk: every version apk-tools accepted in the secdb vectors; the five it rejects are refused', () => {
    const lines = readData('version-vectors', 'apk-version-t.tsv').split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    assert.ok(lines.length > 4000);
    for (const l of lines) for (const v of l.split('\t').slice(0, 2)) assert.ok(validPackageVersion('apk', v), v);
    const invalid = readData('version-vectors', 'apk-invalid-versions.txt').split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    assert.equal(invalid.length, 5);
    for (const v of invalid) assert.equal(validPackageVersion('apk', v), false, v);
  });
});
