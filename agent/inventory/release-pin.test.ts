import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { OsInfo } from '../../shared/protocol.ts';
import { createContext } from './context.ts';
import { DNF_RELEASEVER_FILE, readReleasePin, RHSM_RELEASE_FILE } from './release-pin.ts';

const rhel94: OsInfo = { id: 'rhel', idLike: ['fedora'], versionId: '9.4', codename: null, prettyName: 'Red Hat Enterprise Linux 9.4 (Plow)' };
const rocky94: OsInfo = { id: 'rocky', idLike: ['rhel', 'centos', 'fedora'], versionId: '9.4', codename: null, prettyName: 'Rocky Linux 9.4 (Blue Onyx)' };
const debian12: OsInfo = { id: 'debian', idLike: [], versionId: '12', codename: 'bookworm', prettyName: 'Debian GNU/Linux 12 (bookworm)' };

async function rootWith(files: Record<string, string | Buffer>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'pw-pin-'));
  for (const [path, body] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), body);
  }
  return root;
}

describe('readReleasePin: the minor release a RHEL-family host is held at', () => {
  const table: { name: string; os: OsInfo; files: Record<string, string | Buffer>; want: string | null; warn?: RegExp }[] = [
    { name: 'no pin: mainline', os: rhel94, files: {}, want: null },
    { name: 'subscription-manager release --set=9.4', os: rhel94, files: { [RHSM_RELEASE_FILE]: '{"releaseVer": "9.4"}' }, want: '9.4' },
    { name: 'subscription-manager release --unset leaves an empty value', os: rhel94, files: { [RHSM_RELEASE_FILE]: '{"releaseVer": ""}' }, want: null },
    { name: "dnf's releasever variable (a rebuild's LTS stream)", os: rocky94, files: { [DNF_RELEASEVER_FILE]: '9.4\n' }, want: '9.4' },
    { name: 'rhsm wins over dnf', os: rhel94, files: { [RHSM_RELEASE_FILE]: '{"releaseVer":"9.2"}', [DNF_RELEASEVER_FILE]: '9.4' }, want: '9.2' },
    { name: 'a major alone is no pin', os: rhel94, files: { [DNF_RELEASEVER_FILE]: '9' }, want: null, warn: /not a 9\.N release/ },
    { name: 'another major is refused', os: rhel94, files: { [DNF_RELEASEVER_FILE]: '8.10' }, want: null, warn: /"8\.10", not a 9\.N release/ },
    { name: 'shell and SQL text is not a release', os: rhel94, files: { [DNF_RELEASEVER_FILE]: "9.4; rm -rf / '--" }, want: null, warn: /not a 9\.N release/ },
    { name: 'broken JSON falls through to dnf', os: rhel94, files: { [RHSM_RELEASE_FILE]: '{"releaseVer": ', [DNF_RELEASEVER_FILE]: '9.4' }, want: '9.4' },
    { name: 'an oversized file is refused with a warning', os: rhel94, files: { [DNF_RELEASEVER_FILE]: Buffer.alloc(8192, 0x39) }, want: null, warn: /larger than 4096 bytes/ },
    { name: 'not RHEL-family: never read', os: debian12, files: { [DNF_RELEASEVER_FILE]: '12.1' }, want: null },
  ];
  for (const c of table) {
    it(c.name, async (t) => {
      const root = await rootWith(c.files);
      t.after(() => rm(root, { recursive: true, force: true }));
      const ctx = createContext(root);
      assert.equal(await readReleasePin(ctx, c.os), c.want);
      if (c.warn === undefined) assert.deepEqual(ctx.warnings, []);
      else {
        assert.equal(ctx.warnings.length, 1);
        const [w] = ctx.warnings;
        assert.ok(w !== undefined);
        assert.equal(w.code, 'PW_WARN_RELEASE_PIN');
        assert.match(w.message, c.warn);
      }
    });
  }

  it('a directory where the file should be is a warning, not a crash', async (t) => {
    const root = await rootWith({});
    t.after(() => rm(root, { recursive: true, force: true }));
    await mkdir(join(root, DNF_RELEASEVER_FILE), { recursive: true });
    const ctx = createContext(root);
    assert.equal(await readReleasePin(ctx, rhel94), null);
    assert.match(ctx.warnings[0]?.message ?? '', /not a regular file/);
  });
});
