import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { describe, it } from 'node:test';
import { createContext } from './context.ts';
import { cpuModel, readHardware } from './hardware.ts';

describe('readHardware', () => {
  it('reports this machine: cores, memory, cpu model and virtualization agree with the kernel and systemd-detect-virt', async () => {
    const ctx = createContext('/');
    const hw = await readHardware(ctx);
    assert.equal(hw.cores, cpus().length);
    assert.equal(hw.memoryBytes, totalmem());
    const cpuinfo = await readFile('/proc/cpuinfo', 'utf8');
    assert.equal(hw.cpu, /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim());
    let virt: string;
    try {
      virt = execFileSync('systemd-detect-virt', { encoding: 'utf8' }).trim();
    } catch (err) {
      virt = (err as { stdout: string }).stdout.trim();
    }
    assert.equal(hw.virtualization, virt);
    assert.deepEqual(ctx.warnings, []);
  });

  it('a mounted root reports no hardware: the image has none of its own', async () => {
    const hw = await readHardware(createContext('/tmp'));
    assert.deepEqual(hw, { cpu: null, cores: null, memoryBytes: null, virtualization: null, model: null });
  });

  it('without systemd-detect-virt, the hypervisor cpu flag decides', async () => {
    const ctx = createContext('/', { run: () => Promise.resolve(null) });
    const hw = await readHardware(ctx);
    const flags = /^flags\s*:(.*)$/m.exec(await readFile('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
    assert.equal(hw.virtualization, /\bhypervisor\b/.test(flags) ? 'vm' : 'none');
  });
});

describe('cpuModel reads the real /proc/cpuinfo layouts', () => {
  const table: [string, string, string | null][] = [
    ['x86', 'processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n', 'Intel(R) Xeon(R) Processor'],
    ['Raspberry Pi (arm64)', 'processor\t: 0\nBogoMIPS\t: 108.00\n\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n', 'Raspberry Pi 4 Model B Rev 1.1'],
    ['arm64 server (no model line)', 'processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n', null],
    ['OEM placeholder', 'model name\t: To Be Filled By O.E.M.\n', null],
  ];
  for (const [name, text, want] of table) {
    it(name, () => {
      assert.equal(cpuModel(text), want);
    });
  }
});
