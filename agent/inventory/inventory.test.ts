import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { InventorySchema } from '../../shared/protocol.ts';
import { readData } from '../../shared/testing/data.ts';
import { EXIT_PARTIAL, inventoryCommand } from '../commands/inventory.ts';
import { collectInventory } from './inventory.ts';

async function put(root: string, path: string, content: string | Buffer): Promise<void> {
  await mkdir(join(root, path, '..'), { recursive: true });
  await writeFile(join(root, path), content);
}

/** A root made of the real Debian 12 host's files, plus the two kernels of DESIGN.md's example. */
async function debianRoot(t: { after: (fn: () => Promise<void>) => void }, status: string): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'pw-inv-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  await put(root, 'etc/os-release', readData('host-inventory', 'debian12-host.os-release'));
  await put(root, 'etc/hostname', 'web-1\n');
  await put(root, 'etc/machine-id', '0123456789abcdef0123456789abcdef\n');
  await put(root, 'var/lib/dpkg/status', status);
  for (const release of ['6.1.0-18-amd64', '6.1.0-56-amd64']) {
    await put(root, `boot/vmlinuz-${release}`, 'kernel image');
    await put(root, `lib/modules/${release}/modules.order`, '');
  }
  return root;
}

function captured(): { stream: NodeJS.WritableStream; text: () => string } {
  const chunks: string[] = [];
  const stream = { write: (c: string) => chunks.push(c) > 0 } as unknown as NodeJS.WritableStream;
  return { stream, text: () => chunks.join('') };
}

describe('collectInventory', () => {
  it('this machine: every installed dpkg package, schema-valid, Debian:12', async () => {
    const inv = await collectInventory();
    const installed = execFileSync('dpkg-query', ['-W', '-f=${db:Status-Abbrev}\\n'], { encoding: 'utf8' }).split('\n').filter((l) => l[1] === 'i');
    assert.equal(inv.packages.length, installed.length);
    assert.equal(inv.packageFormat, 'deb');
    assert.equal(inv.host.ecosystem, 'Debian:12');
    InventorySchema.parse(inv);
  });

  it('a mounted root of the real Debian 12 host with two kernels: kernel-update pending', async (t) => {
    const status = readData('host-inventory', 'debian12-host.dpkg-status.gz');
    const root = await debianRoot(t, status);
    const inv = await collectInventory({ root, running: { release: '6.1.0-18-amd64', version: '#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)' } });
    assert.equal(inv.host.hostname, 'web-1');
    assert.equal(inv.host.machineId, '0123456789abcdef0123456789abcdef');
    assert.equal(inv.host.bootId, null, 'a mounted image has no boot of its own');
    assert.equal(inv.packages.length, 732);
    assert.deepEqual(inv.kernel.installed.map((k) => k.release), ['6.1.0-56-amd64', '6.1.0-18-amd64']);
    assert.equal(inv.reboot.required, true);
    assert.deepEqual(inv.reboot.reasons.map((r) => r.kind), ['kernel-update']);
    assert.match(inv.reboot.reasons[0]?.detail ?? '', /running 6\.1\.0-18-amd64, newest installed 6\.1\.0-56-amd64/);
  });
});

describe('inventory command: partial input gives a partial inventory and exit 3', () => {
  const real = readData('host-inventory', 'debian12-host.dpkg-status.gz');
  const table: [string, string, number][] = [
    ['truncated in the middle of a stanza', real.slice(0, Math.floor(real.length / 2)), EXIT_PARTIAL],
    ['binary garbage appended', real + '\n\n' + Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131) % 256)).toString('latin1'), EXIT_PARTIAL],
    ['a 5 MB field in one stanza', real.replace('Package: bash\n', `Package: bash\nX-Junk: ${'x'.repeat(5_000_000)}\n`), -1],
  ];
  for (const [name, status, code] of table) {
    it(name, async (t) => {
      const root = await debianRoot(t, status);
      const out = captured();
      const rc = await inventoryCommand(['--root', root, '--json', '--kernel-release', '6.1.0-56-amd64'], out.stream);
      const inv = InventorySchema.parse(JSON.parse(out.text()));
      if (code >= 0) assert.equal(rc, code);
      assert.ok(inv.packages.length > 300, `${inv.packages.length} packages still reported`);
      if (rc === EXIT_PARTIAL) assert.ok(inv.warnings.length > 0);
    });
  }

  it('no package database at all: a warning, no packages, exit 3', async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'pw-inv-'));
    t.after(() => rm(root, { recursive: true, force: true }));
    await put(root, 'etc/os-release', readData('host-inventory', 'debian12-host.os-release'));
    const out = captured();
    const rc = await inventoryCommand(['--root', root, '--json'], out.stream);
    const inv = InventorySchema.parse(JSON.parse(out.text()));
    assert.equal(rc, EXIT_PARTIAL);
    assert.deepEqual(inv.packages, []);
    assert.equal(inv.packageFormat, null);
  });
});
