import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { InstructionRefusedError } from '../../shared/errors.ts';
import { LEDGER_CODE, LEDGER_FILE_NAME, Ledger, RETAIN_AFTER_EXPIRY_MS } from './ledger.ts';

const base = mkdtempSync(join(tmpdir(), 'pw-ledger-'));
after(() => {
  rmSync(base, { recursive: true, force: true });
});
let n = 0;
const freshDir = (): string => join(base, `s${++n}`);
const NOW = new Date('2026-11-26T18:00:00.000Z');
const now = (): Date => NOW;
const iso = (ms: number): string => new Date(NOW.getTime() + ms).toISOString();
const HOUR = 3600_000;

function lines(dir: string): string[] {
  return readFileSync(join(dir, LEDGER_FILE_NAME), 'utf8').split('\n').filter((l) => l !== '');
}

describe('Ledger', () => {
  it('remembers an id across a reopen (an agent restart)', async () => {
    const dir = freshDir();
    const id = randomUUID();
    const a = await Ledger.open(dir, { now });
    assert.equal(a.has(id), false);
    await a.record(id, iso(HOUR));
    assert.equal(a.has(id), true);
    await a.close();
    const b = await Ledger.open(dir, { now });
    assert.equal(b.has(id), true);
    assert.equal(b.has(id.toUpperCase()), true);
    assert.equal(b.has(randomUUID()), false);
  });

  it('has the line on disk when record() resolves', async () => {
    const dir = freshDir();
    const l = await Ledger.open(dir, { now });
    const id = randomUUID();
    await l.record(id, iso(HOUR));
    assert.deepEqual(
      lines(dir).map((x) => JSON.parse(x) as unknown),
      [{ id, expiresAt: iso(HOUR) }],
    );
  });

  it('keeps every one of concurrent records', async () => {
    const dir = freshDir();
    const l = await Ledger.open(dir, { now });
    const ids = Array.from({ length: 20 }, () => randomUUID());
    await Promise.all(ids.map((id) => l.record(id, iso(HOUR))));
    const reopened = await Ledger.open(dir, { now });
    assert.equal(reopened.size, 20);
    for (const id of ids) assert.ok(reopened.has(id));
  });

  const modes: { name: string; before: number | null }[] = [
    { name: 'a new file', before: null },
    { name: 'an existing file left 0644', before: 0o644 },
    { name: 'an existing file left 0666', before: 0o666 },
  ];
  for (const m of modes) {
    it(`is mode 0600: ${m.name}`, async () => {
      const dir = freshDir();
      if (m.before !== null) {
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, LEDGER_FILE_NAME), JSON.stringify({ id: randomUUID(), expiresAt: iso(HOUR) }) + '\n');
        chmodSync(join(dir, LEDGER_FILE_NAME), m.before);
      }
      const l = await Ledger.open(dir, { now });
      await l.record(randomUUID(), iso(HOUR));
      assert.equal(statSync(join(dir, LEDGER_FILE_NAME)).mode & 0o777, 0o600);
    });
  }

  const damaged: { name: string; tail: string | Buffer; skipped: number }[] = [
    { name: 'a torn last line (crash while appending)', tail: '{"id":"6f1c1a8e-0d3b-4c1e-9a53-1f0e2a3b4c5d","expiresAt":"2026-11-2', skipped: 1 },
    { name: 'a torn last line cut inside the id', tail: '{"id":"6f1c1a8e-0d3b', skipped: 1 },
    { name: 'a line that is binary garbage, then a torn one', tail: Buffer.concat([randomBytes(200).map((b) => (b === 10 ? 0 : b)), Buffer.from('\n{"id":')]), skipped: 2 },
    { name: 'a JSON line that is not an entry', tail: '{"id":"not-a-uuid","expiresAt":"2026-11-27T00:00:00Z"}\n', skipped: 1 },
    { name: 'an entry with a date that is not one', tail: `{"id":"${randomUUID()}","expiresAt":"tomorrow"}\n`, skipped: 1 },
  ];
  for (const d of damaged) {
    it(`keeps the good entries and appends cleanly after ${d.name}`, async () => {
      const dir = freshDir();
      const good = [randomUUID(), randomUUID()];
      const first = await Ledger.open(dir, { now });
      for (const id of good) await first.record(id, iso(HOUR));
      appendFileSync(join(dir, LEDGER_FILE_NAME), d.tail);
      const l = await Ledger.open(dir, { now });
      assert.equal(l.openStats.skipped, d.skipped);
      for (const id of good) assert.ok(l.has(id));
      const next = randomUUID();
      await l.record(next, iso(HOUR));
      // Every line on disk is whole: the damage was compacted away before the append.
      const onDisk = lines(dir).map((x) => (JSON.parse(x) as { id: string }).id);
      assert.deepEqual(onDisk, [...good, next]);
    });
  }

  const ages: { name: string; expiresAt: number; kept: boolean }[] = [
    { name: 'not yet expired', expiresAt: HOUR, kept: true },
    { name: 'expired a minute ago (inside the clock-skew margin)', expiresAt: -60_000, kept: true },
    { name: 'expired 23 hours ago', expiresAt: -23 * HOUR, kept: true },
    { name: 'expired just over a day ago', expiresAt: -RETAIN_AFTER_EXPIRY_MS - 1000, kept: false },
    { name: 'expired a year ago', expiresAt: -365 * 24 * HOUR, kept: false },
  ];
  for (const a of ages) {
    it(`${a.kept ? 'keeps' : 'drops'} an id ${a.name} when reopened`, async () => {
      const dir = freshDir();
      const id = randomUUID();
      const keep = randomUUID();
      const l = await Ledger.open(dir, { now });
      await l.record(id, iso(a.expiresAt));
      await l.record(keep, iso(HOUR));
      const r = await Ledger.open(dir, { now });
      assert.equal(r.has(id), a.kept);
      assert.equal(r.openStats.expired, a.kept ? 0 : 1);
      assert.equal(lines(dir).length, a.kept ? 2 : 1, 'the file is compacted');
      assert.ok(r.has(keep));
    });
  }

  it('stays bounded: 3,000 instructions expiring over time leave only the live ids on disk', async () => {
    const dir = freshDir();
    let clock = NOW.getTime();
    const l = await Ledger.open(dir, { now: () => new Date(clock) });
    for (let i = 0; i < 3000; i++) {
      clock += 60_000;
      await l.record(randomUUID(), new Date(clock + HOUR).toISOString());
    }
    // Live: expiring within the last day plus the retention margin, about 1,500 minutes'
    // worth; expired ones are dropped at each compaction, every 1,024 appends.
    assert.ok(l.size < 1600 + 1024, `${l.size} ids kept`);
    assert.ok(lines(dir).length < 1600 + 1024, `${lines(dir).length} lines on disk`);
  });

  it('refuses an id or a date that is not one', async () => {
    const l = await Ledger.open(freshDir(), { now });
    await assert.rejects(l.record('../../etc/passwd', iso(HOUR)), (e: unknown) => e instanceof InstructionRefusedError && e.code === LEDGER_CODE);
    await assert.rejects(l.record(randomUUID(), 'soon'), (e: unknown) => e instanceof InstructionRefusedError && e.code === LEDGER_CODE);
    assert.equal(l.size, 0);
  });

  const unusable: { name: string; make: (dir: string) => void }[] = [
    {
      name: 'the state directory is a file',
      make: (dir) => {
        writeFileSync(dir, 'x');
      },
    },
    { name: 'the ledger is a directory', make: (dir) => mkdirSync(join(dir, LEDGER_FILE_NAME), { recursive: true }) },
    {
      name: 'the ledger is over 64 MiB',
      make: (dir) => {
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, LEDGER_FILE_NAME), '');
        truncateSync(join(dir, LEDGER_FILE_NAME), 65 * 1024 * 1024);
      },
    },
  ];
  for (const u of unusable) {
    it(`fails closed with ${LEDGER_CODE} when ${u.name}`, async () => {
      const dir = freshDir();
      u.make(dir);
      await assert.rejects(Ledger.open(dir, { now }), (e: unknown) => e instanceof InstructionRefusedError && e.code === LEDGER_CODE && e.message.includes(dir));
    });
  }

  it('has the id after the process is killed right after record() resolved', async () => {
    const dir = freshDir();
    const id = randomUUID();
    const script = `
      import { Ledger } from ${JSON.stringify(join(import.meta.dirname, 'ledger.ts'))};
      const l = await Ledger.open(${JSON.stringify(dir)});
      await l.record(${JSON.stringify(id)}, ${JSON.stringify(new Date(Date.now() + HOUR).toISOString())});
      process.kill(process.pid, 'SIGKILL');
    `;
    const signal = await new Promise<string | null>((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 30_000 }, (err) => {
        resolve((err as { signal?: string } | null)?.signal ?? null);
      });
    });
    assert.equal(signal, 'SIGKILL');
    assert.ok((await Ledger.open(dir)).has(id));
  });
});
