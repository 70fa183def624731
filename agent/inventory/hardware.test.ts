import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { describe, it } from 'node:test';
import { createContext } from './context.ts';
import { readHardware } from './hardware.ts';

describe('readHardware', () => {
  it('reports this machine: cores and memory agree with the kernel', async () => {
    const ctx = createContext('/');
    const hw = await readHardware(ctx);
    assert.equal(hw.cores, cpus().length);
    assert.equal(hw.memoryBytes, totalmem());
    const cpuinfo = await readFile('/proc/cpuinfo', 'utf8');
    const modelName = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? '';
    // systeminformation shortens vendor strings ("Intel(R) Xeon(R)" -> "Intel Xeon®"), so
    // compare on the words both carry.
    assert.ok(hw.cpu !== null && modelName.split(/\W+/).some((w) => w.length > 3 && hw.cpu?.includes(w)), `${hw.cpu ?? 'null'} vs ${modelName}`);
    assert.notEqual(hw.virtualization, null);
    assert.deepEqual(ctx.warnings, []);
  });

  it('a mounted root reports no hardware: the image has none of its own', async () => {
    const hw = await readHardware(createContext('/tmp'));
    assert.deepEqual(hw, { cpu: null, cores: null, memoryBytes: null, virtualization: null, model: null });
  });
});
