import assert from 'node:assert/strict';
import { readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { ReportMessage } from '../../shared/protocol.ts';
import { type SpoolWarning, Spool, entryName } from './spool.ts';
import { fullReport } from '../../shared/messages.ts';
import { hashReport, hostInventory, tempDir, withoutFirstPackages } from '../../shared/testing/daemon-fixtures.ts';

const inv = await hostInventory();

/** Five real, distinct full reports (the host minus 0..4 packages) and the size of one. */
const fulls = [0, 1, 2, 3, 4].map((n) => fullReport(withoutFirstPackages(inv, n)));
const fullBytes = Buffer.byteLength(JSON.stringify(fulls[0]));

function collect(): { warnings: SpoolWarning[]; warn: (w: SpoolWarning) => void } {
  const warnings: SpoolWarning[] = [];
  return { warnings, warn: (w) => warnings.push(w) };
}

async function readAll(spool: Spool): Promise<(ReportMessage | null)[]> {
  const out: (ReportMessage | null)[] = [];
  for (const e of spool.entries()) out.push(await spool.read(e));
  return out;
}

describe('Spool: order and persistence', () => {
  it('reports come back in the order they were added, from files of mode 0600 in a 0700 directory', async (t) => {
    const dir = join(tempDir(t), 'spool');
    const { warnings, warn } = collect();
    const spool = await Spool.open(dir, 64 * 1024 * 1024, warn);
    const reports = [fulls[0]!, hashReport(inv), fulls[1]!, hashReport(withoutFirstPackages(inv, 1))];
    for (const r of reports) await spool.add(r);
    assert.deepEqual(await readAll(spool), reports);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const files = readdirSync(dir);
    assert.deepEqual(files, [...files].sort());
    assert.equal(files.length, 4);
    for (const f of files) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600);
    assert.deepEqual(warnings, []);
  });

  it('an agent restart finds the same reports in the same order, and new ones sort after them', async (t) => {
    const dir = tempDir(t);
    const first = await Spool.open(dir, 64 * 1024 * 1024, () => undefined);
    await first.add(fulls[0]!);
    await first.add(fulls[1]!);
    const second = await Spool.open(dir, 64 * 1024 * 1024, () => undefined);
    await second.add(fulls[2]!);
    assert.deepEqual(await readAll(second), [fulls[0], fulls[1], fulls[2]]);
    assert.equal(second.newestFullHash(), fulls[2]!.hash);
  });

  it('remove() after an ack deletes the file; removing it twice is harmless', async (t) => {
    const dir = tempDir(t);
    const spool = await Spool.open(dir, 64 * 1024 * 1024, () => undefined);
    const a = await spool.add(fulls[0]!);
    await spool.add(hashReport(inv));
    await spool.remove(a);
    await spool.remove(a);
    assert.equal(spool.size, 1);
    assert.equal(readdirSync(dir).length, 1);
    assert.equal(spool.newestFullHash(), null);
  });

  it('newestFullHash names the newest full inventory, not a later hash-only report', async (t) => {
    const spool = await Spool.open(tempDir(t), 64 * 1024 * 1024, () => undefined);
    await spool.add(fulls[0]!);
    await spool.add(fulls[3]!);
    await spool.add(hashReport(withoutFirstPackages(inv, 3)));
    assert.equal(spool.newestFullHash(), fulls[3]!.hash);
  });
});

describe('Spool: the bound', () => {
  it(`five full reports of ${fullBytes} bytes in a spool of 2.5 of them: the three oldest are dropped with a warning each`, async (t) => {
    const { warnings, warn } = collect();
    const spool = await Spool.open(tempDir(t), Math.floor(fullBytes * 2.5), warn);
    for (const r of fulls) await spool.add(r);
    assert.deepEqual(await readAll(spool), [fulls[3], fulls[4]]);
    assert.ok(spool.bytes <= spool.maxBytes);
    assert.deepEqual(
      warnings.map((w) => w.code),
      ['PW_WARN_SPOOL_DROPPED', 'PW_WARN_SPOOL_DROPPED', 'PW_WARN_SPOOL_DROPPED'],
    );
    assert.match(warnings[0]!.message, new RegExp(`dropped the oldest report ${fulls[0]!.id} \\(full`));
  });

  it('the newest full inventory is kept even when it alone is over the bound; older reports and later hash-only ones go', async (t) => {
    const { warnings, warn } = collect();
    const spool = await Spool.open(tempDir(t), 1000, warn);
    await spool.add(hashReport(inv));
    await spool.add(fulls[0]!);
    await spool.add(fulls[1]!);
    await spool.add(hashReport(withoutFirstPackages(inv, 1)));
    assert.deepEqual(await readAll(spool), [fulls[1]]);
    const codes = warnings.map((w) => w.code);
    assert.ok(codes.includes('PW_WARN_SPOOL_OVER_LIMIT'));
    assert.equal(codes.filter((c) => c === 'PW_WARN_SPOOL_DROPPED').length, 3);
  });

  it('reopened with a smaller bound, the spool drops its oldest reports at once', async (t) => {
    const dir = tempDir(t);
    const big = await Spool.open(dir, 64 * 1024 * 1024, () => undefined);
    for (const r of fulls) await big.add(r);
    const small = await Spool.open(dir, Math.floor(fullBytes * 1.5), () => undefined);
    assert.deepEqual(await readAll(small), [fulls[4]]);
    assert.equal(readdirSync(dir).length, 1);
  });
});

describe('Spool: bad files are skipped with a warning, never a crash', () => {
  const damage: [string, (text: string) => string | Buffer][] = [
    ['truncated in the middle (disk full during a write by hand)', (s) => s.slice(0, Math.floor(s.length / 2))],
    ['empty', () => ''],
    ['binary garbage', () => Buffer.from([0, 0xff, 0xfe, 0x7f, 0x45, 0x4c, 0x46, 1, 2, 3])],
    ['JSON that is not a report', () => JSON.stringify({ type: 'ack', id: 'x' })],
    ['a report whose package name carries SQL', (s) => s.replace(/"name":"[^"]+"/, `"name":"x'; DROP TABLE hosts;--"`)],
    ['a valid report whose id does not match the file name', (s) => s.replace(/"id":"[0-9a-f-]{36}"/, `"id":"${fulls[4]!.id}"`)],
    ['a valid report whose package version was edited (its hash no longer matches)', (s) => s.replace(/"version":"[^"]+"/, '"version":"0.0.1"')],
  ];
  for (const [name, damageFn] of damage) {
    it(`${name}: read() gives null, PW_WARN_SPOOL_CORRUPT, the file is set aside as .bad, the next report is delivered`, async (t) => {
      const dir = tempDir(t);
      const { warnings, warn } = collect();
      const spool = await Spool.open(dir, 64 * 1024 * 1024, warn);
      const a = await spool.add(fulls[0]!);
      await spool.add(fulls[1]!);
      writeFileSync(join(dir, a.name), damageFn(JSON.stringify(fulls[0])));
      const reopened = await Spool.open(dir, 64 * 1024 * 1024, warn);
      assert.deepEqual(await readAll(reopened), [null, fulls[1]]);
      assert.deepEqual(await readAll(reopened), [fulls[1]]);
      assert.deepEqual(
        warnings.map((w) => w.code),
        ['PW_WARN_SPOOL_CORRUPT'],
      );
      assert.ok(warnings[0]!.message.includes(join(dir, a.name)), warnings[0]!.message);
      assert.ok(readdirSync(dir).includes(`${a.name}.bad`));
    });
  }

  it('set-aside files count against the bound and are dropped before any report', async (t) => {
    const dir = tempDir(t);
    const spool = await Spool.open(dir, Math.floor(fullBytes * 2.5), () => undefined);
    const a = await spool.add(fulls[0]!);
    writeFileSync(join(dir, a.name), 'x'.repeat(fullBytes));
    assert.equal(await spool.read(a), null);
    await spool.add(fulls[1]!);
    await spool.add(fulls[2]!);
    assert.deepEqual(await readAll(spool), [fulls[1], fulls[2]]);
    assert.ok(!readdirSync(dir).some((f) => f.endsWith('.bad')));
  });

  it('a file deleted by hand since it was listed is forgotten without a warning', async (t) => {
    const dir = tempDir(t);
    const { warnings, warn } = collect();
    const spool = await Spool.open(dir, 64 * 1024 * 1024, warn);
    const a = await spool.add(fulls[0]!);
    rmSync(join(dir, a.name));
    assert.equal(await spool.read(a), null);
    assert.equal(spool.size, 0);
    assert.deepEqual(warnings, []);
  });

  it('leftover temporary files of a crashed write are removed at open; files that are not ours are left alone and not counted', async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, `.tmp-${entryName(1, 'full', fulls[0]!.hash, fulls[0]!.id)}-abcdef`), '{"type":"rep');
    writeFileSync(join(dir, 'README'), 'operator notes');
    const spool = await Spool.open(dir, 1000, () => undefined);
    assert.equal(spool.size, 0);
    assert.equal(spool.bytes, 0);
    assert.deepEqual(readdirSync(dir), ['README']);
  });

  it('a spool directory removed under the running agent: reports are kept in memory with PW_WARN_SPOOL_UNWRITABLE and still delivered', async (t) => {
    const dir = join(tempDir(t), 'spool');
    const { warnings, warn } = collect();
    const spool = await Spool.open(dir, 64 * 1024 * 1024, warn);
    rmSync(dir, { recursive: true });
    const e = await spool.add(fulls[0]!);
    assert.deepEqual(warnings.map((w) => w.code), ['PW_WARN_SPOOL_UNWRITABLE']);
    assert.match(warnings[0]!.message, /ENOENT.*kept in memory only/);
    assert.deepEqual(await spool.read(e), fulls[0]);
    await spool.remove(e);
    assert.equal(spool.size, 0);
  });
});
