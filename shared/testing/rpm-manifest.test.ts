import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { MalformedInputError } from '../errors.ts';
import type { Package } from '../protocol.ts';
import { packagesFromRpmManifest } from './rpm-manifest.ts';

const manifestPath = join(import.meta.dirname, '..', '..', '..', 'shared', 'data', 'host-inventory', 'rhel9.5-httpd-24.rpm-manifest.claircore-fixture.json.gz');
const manifest = JSON.parse(gunzipSync(readFileSync(manifestPath)).toString('utf8')) as { rpms: Record<string, string>[] };

describe('packagesFromRpmManifest: the real RHEL 9.5 httpd-24 image', () => {
  const packages = packagesFromRpmManifest(manifest);
  const byName = new Map(packages.map((p) => [p.name, p]));

  it('converts all 243 rpms', () => {
    assert.equal(manifest.rpms.length, 243);
    assert.equal(packages.length, 243);
    assert.deepEqual(packages.map((p) => p.name), manifest.rpms.map((r) => r.name));
  });

  // Rows of the manifest, as `rpm -q --qf '%{EPOCH}:%{VERSION}-%{RELEASE} %{SOURCERPM}'` would put them.
  const table: [string, Package][] = [
    ['acl: no epoch, its own source', { name: 'acl', version: '2.3.1-4.el9', arch: 'x86_64', source: 'acl', sourceVersion: '2.3.1-4.el9' }],
    ['alternatives: built from chkconfig', { name: 'alternatives', version: '1.24-1.el9_5.1', arch: 'x86_64', source: 'chkconfig', sourceVersion: '1.24-1.el9_5.1' }],
    ['openssl-libs: epoch 1 on both versions', { name: 'openssl-libs', version: '1:3.2.2-6.el9_5', arch: 'x86_64', source: 'openssl', sourceVersion: '1:3.2.2-6.el9_5' }],
    ['bind-license: noarch, epoch 32', { name: 'bind-license', version: '32:9.16.23-24.el9_5', arch: 'noarch', source: 'bind', sourceVersion: '32:9.16.23-24.el9_5' }],
    ['mod_ssl: from httpd, epoch 1', { name: 'mod_ssl', version: '1:2.4.62-1.el9', arch: 'x86_64', source: 'httpd', sourceVersion: '1:2.4.62-1.el9' }],
    ['libpath_utils: a subpackage with its own version (ding-libs 0.6.1)', { name: 'libpath_utils', version: '0.2.1-53.el9', arch: 'x86_64', source: 'ding-libs', sourceVersion: '0.6.1-53.el9' }],
  ];
  for (const [name, want] of table) {
    it(name, () => {
      assert.deepEqual(byName.get(want.name), want);
    });
  }

  it('every other binary shares its source rpm version-release and epoch', () => {
    for (const p of packages) if (p.name !== 'libpath_utils') assert.equal(p.sourceVersion, p.version, p.name);
  });
});

describe('packagesFromRpmManifest: bad input', () => {
  const acl = manifest.rpms[0];
  assert.ok(acl);
  const table: [string, unknown, RegExp | number][] = [
    ['null', null, /not a claircore rpm manifest/],
    ['rpms is not an array', { rpms: {} }, /not a claircore rpm manifest: rpms/],
    ['an entry without a release', { rpms: [{ ...acl, release: undefined }] }, /rpms\.0\.release/],
    ['an srpm_nevra of another package', { rpms: [{ ...acl, srpm_nevra: 'attr-2.5.1-3.el9.src' }] }, /srpm_nevra "attr-2\.5\.1-3\.el9\.src" is not a source rpm of acl/],
    ['an srpm_nevra that is not a source rpm', { rpms: [{ ...acl, srpm_nevra: 'acl-2.3.1-4.el9.x86_64' }] }, /is not a source rpm/],
    ['a name with a space', { rpms: [{ ...acl, name: 'acl tools' }] }, /rpms\[0\] \(acl tools\): name: not a valid package name/],
    ['gpg-pubkey pseudo packages are keys, left out', { rpms: [{ ...acl, name: 'gpg-pubkey', architecture: '(none)' }] }, 0],
    ['source entries are left out', { rpms: [{ ...acl, kind: 'source' }] }, 0],
    ['no rpms', { rpms: [] }, 0],
  ];
  for (const [name, input, want] of table) {
    it(name, () => {
      if (typeof want === 'number') assert.equal(packagesFromRpmManifest(input).length, want);
      else assert.throws(() => packagesFromRpmManifest(input), (err: unknown) => err instanceof MalformedInputError && err.code === 'PW_ERR_MALFORMED_INPUT' && want.test(err.message));
    });
  }
});
