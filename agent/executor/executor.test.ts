import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { type Instruction, InstructionResultSchema, type InstructionResult, MAX_INSTRUCTION_BYTES } from '../../shared/instructions.ts';
import { readData } from '../../shared/testing/data.ts';
import { DEFAULT_COMMAND_TIMEOUT_MS, Executor, type ExecutorOptions, IN_PROGRESS_CODE, packageChanges, readInstalledPackages } from './executor.ts';
import type { CommandRecord, Handler, HandlerContext, HandlerOutcome } from './handler.ts';
import { LEDGER_CODE, Ledger } from './ledger.ts';
import { fixture, patchInstruction, realSecurityUpgrades, sign, signRaw, type Fixture } from '../../shared/testing/executor-fixtures.ts';
import { REFUSAL_CODES } from './verify.ts';

const base = mkdtempSync(join(tmpdir(), 'pw-executor-'));
after(() => {
  rmSync(base, { recursive: true, force: true });
});
let n = 0;
const HOUR = 3600_000;
const STATUS = readData('host-inventory', 'debian12-host.dpkg-status.gz');

/** The real status file with the named packages moved to their real bookworm-security versions. */
function upgradedStatus(names: readonly string[]): string {
  const candidate = new Map(realSecurityUpgrades().map((u) => [u.name, u]));
  return STATUS.split('\n\n')
    .map((stanza) => {
      const name = /^Package: (\S+)$/m.exec(stanza)?.[1];
      const up = name === undefined || !names.includes(name) ? undefined : candidate.get(name);
      return up === undefined ? stanza : stanza.replace(`\nVersion: ${up.installed}\n`, `\nVersion: ${up.candidate}\n`);
    })
    .join('\n\n');
}

function runReal(file: string, args: string[], ctx: HandlerContext): Promise<CommandRecord> {
  const started = performance.now();
  return new Promise((resolve) => {
    execFile(file, args, { timeout: ctx.timeoutMs, maxBuffer: 1 << 20, signal: ctx.signal }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: unknown; signal?: string | null }) | null;
      resolve({
        argv: [file, ...args],
        exitCode: e === null ? 0 : typeof e.code === 'number' ? e.code : null,
        signal: e?.signal ?? null,
        durationMs: performance.now() - started,
        outputTail: (stdout + stderr).slice(-1000),
      });
    });
  });
}

/**
 * A handler that does something real and harmless: "upgrades" by copying a prepared dpkg
 * status file over the root's (with `cp`, through execFile), so the executor's real
 * package reader sees real version changes. It records every call.
 */
class RecordingHandler implements Handler {
  readonly name = 'cp-status';
  readonly calls: { instruction: Instruction; ctx: HandlerContext; ledgerHad: boolean; at: number }[] = [];
  active = 0;
  maxActive = 0;
  constructor(
    private readonly stateDir: string,
    private readonly root: string,
    private readonly upgraded: string | null,
    private readonly delayMs = 0,
    private readonly fail = false,
  ) {}

  async run(instruction: Instruction, ctx: HandlerContext): Promise<HandlerOutcome> {
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      const ledgerHad = (await Ledger.open(this.stateDir)).has(instruction.id);
      this.calls.push({ instruction, ctx, ledgerHad, at: Date.now() });
      // With a U+0000, as an error quoting a file or a command's output may have: the collector refuses it in a message.
      if (this.fail) throw new Error('handler bug: read "\u0000"');
      const commands: CommandRecord[] = [];
      if (this.delayMs > 0) commands.push(await runReal('sleep', [String(this.delayMs / 1000)], ctx));
      if (!ctx.dryRun && this.upgraded !== null) commands.push(await runReal('cp', [this.upgraded, join(this.root, 'var/lib/dpkg/status')], ctx));
      else commands.push(await runReal('true', [], ctx));
      const ok = commands.every((c) => c.exitCode === 0);
      return { status: ok ? 'succeeded' : 'failed', code: ok ? null : 'PW_ERR_COMMAND_FAILED', message: ok ? 'done' : 'a command failed', commands };
    } finally {
      this.active--;
    }
  }
}

interface Harness {
  fx: Fixture;
  stateDir: string;
  root: string;
  handler: RecordingHandler;
  executor: Executor;
  results: InstructionResult[];
  refreshes: number;
  packageReads: number;
  resolves: number;
  /** Resolves once `count` results have arrived. */
  results$: (count: number) => Promise<InstructionResult[]>;
}

function harness(options: { fx?: Fixture; stateDir?: string; upgrade?: string[]; delayMs?: number; fail?: boolean; reboot?: boolean | null; resolverRefuses?: boolean; exec?: Partial<ExecutorOptions> } = {}): Harness {
  const fx = options.fx ?? fixture(new Date());
  const dir = join(base, `h${++n}`);
  const stateDir = options.stateDir ?? join(dir, 'state');
  const root = join(dir, 'root');
  mkdirSync(join(root, 'var/lib/dpkg'), { recursive: true });
  writeFileSync(join(root, 'var/lib/dpkg/status'), STATUS);
  let upgraded: string | null = null;
  if (options.upgrade !== undefined) {
    upgraded = join(dir, 'status.upgraded');
    writeFileSync(upgraded, upgradedStatus(options.upgrade));
  }
  const handler = new RecordingHandler(stateDir, root, upgraded, options.delayMs, options.fail);
  const waiters: { count: number; resolve: (r: InstructionResult[]) => void }[] = [];
  const h: Harness = {
    fx,
    stateDir,
    root,
    handler,
    results: [],
    refreshes: 0,
    packageReads: 0,
    resolves: 0,
    results$: (count) =>
      new Promise((resolve) => {
        if (h.results.length >= count) resolve(h.results);
        else waiters.push({ count, resolve });
      }),
    executor: undefined as unknown as Executor,
  };
  h.executor = new Executor({
    collectorPublicKey: fx.collector.publicKey,
    agentId: fx.agentId,
    stateDir,
    root,
    resolveHandler: (): Promise<Handler | HandlerOutcome> => {
      h.resolves++;
      if (options.resolverRefuses === true) return Promise.resolve({ status: 'refused', code: 'PW_ERR_NO_PACKAGE_MANAGER', message: 'no package manager', commands: [] });
      return Promise.resolve(handler);
    },
    readPackages: (r) => {
      h.packageReads++;
      return readInstalledPackages(r);
    },
    readRebootRequired: () => Promise.resolve(options.reboot === undefined ? false : options.reboot),
    onResult: (r) => {
      h.results.push(r);
      for (const w of waiters.filter((x) => h.results.length >= x.count)) w.resolve(h.results);
    },
    onRefresh: () => {
      h.refreshes++;
    },
    ...options.exec,
  });
  return h;
}

function assertValid(r: InstructionResult): void {
  const parsed = InstructionResultSchema.safeParse(r);
  assert.ok(parsed.success, parsed.success ? '' : JSON.stringify(parsed.error.issues));
}

describe('Executor refuses, runs nothing, and reports the refusal', () => {
  const fx = fixture(new Date());
  const at = (ms: number): string => new Date(Date.now() + ms).toISOString();
  const withName = (name: string): unknown => {
    const raw = JSON.parse(sign(fx, patchInstruction(fx)).payload) as Record<string, unknown>;
    return signRaw(fx.collector.privateKeyPem, JSON.stringify({ ...raw, packages: [{ name, version: null }] }));
  };
  const cases: { name: string; signed: () => unknown; code: string }[] = [
    { name: 'unsigned', signed: () => patchInstruction(fx), code: REFUSAL_CODES.signature },
    { name: 'wrongly signed', signed: () => ({ ...sign(fx, patchInstruction(fx)), signature: randomBytes(64).toString('base64url') }), code: REFUSAL_CODES.signature },
    { name: 'signed by another key', signed: () => signRaw(fx.stranger.privateKeyPem, sign(fx, patchInstruction(fx)).payload), code: REFUSAL_CODES.signature },
    {
      name: 'a tampered payload (dryRun true made false)',
      signed: () => {
        const s = sign(fx, patchInstruction(fx, { dryRun: true }));
        return { ...s, payload: s.payload.replace('"dryRun":true', '"dryRun":fals') };
      },
      code: REFUSAL_CODES.signature,
    },
    { name: "another agent's", signed: () => sign(fx, patchInstruction(fx, { agentId: randomUUID() })), code: REFUSAL_CODES.target },
    { name: 'expired', signed: () => sign(fx, patchInstruction(fx, { expiresAt: at(-HOUR) })), code: REFUSAL_CODES.expired },
    {
      name: 'an unknown kind',
      signed: () => {
        const raw = JSON.parse(sign(fx, patchInstruction(fx)).payload) as Record<string, unknown>;
        return signRaw(fx.collector.privateKeyPem, JSON.stringify({ ...raw, kind: 'exec', argv: ['/bin/sh', '-c', 'id'] }));
      },
      code: REFUSAL_CODES.kind,
    },
    { name: "the name '-oAPT::Update::Pre-Invoke::=touch /tmp/pw'", signed: () => withName('-oAPT::Update::Pre-Invoke::=touch /tmp/pw'), code: REFUSAL_CODES.unsafeName },
    { name: "the name 'foo;rm -rf /'", signed: () => withName('foo;rm -rf /'), code: REFUSAL_CODES.unsafeName },
    { name: "the name 'foo$(reboot)'", signed: () => withName('foo$(reboot)'), code: REFUSAL_CODES.unsafeName },
    { name: 'an oversize payload', signed: () => signRaw(fx.collector.privateKeyPem, JSON.stringify({ pad: 'x'.repeat(MAX_INSTRUCTION_BYTES) })), code: REFUSAL_CODES.tooLarge },
    { name: 'a non-JSON payload', signed: () => signRaw(fx.collector.privateKeyPem, 'patch openssl now'), code: REFUSAL_CODES.malformed },
  ];
  for (const c of cases) {
    it(`${c.name}: ${c.code}`, async () => {
      const h = harness({ fx });
      h.executor.submit(c.signed());
      const [r] = await h.results$(1);
      await h.executor.close();
      assert.ok(r !== undefined);
      assert.equal(r.status, 'refused');
      assert.equal(r.code, c.code, r.message);
      assert.deepEqual(r.commands, []);
      assertValid(r);
      assert.deepEqual({ handlerCalls: h.handler.calls.length, resolves: h.resolves, packageReads: h.packageReads, refreshes: h.refreshes }, { handlerCalls: 0, resolves: 0, packageReads: 0, refreshes: 0 });
    });
  }

  it('replayed after a new Executor on the same state directory (an agent restart): PW_ERR_INSTRUCTION_REPLAYED', async () => {
    const first = harness({ fx });
    const signed = sign(fx, patchInstruction(fx, { dryRun: true }));
    first.executor.submit(signed);
    const [ran] = await first.results$(1);
    await first.executor.close();
    assert.equal(ran?.status, 'succeeded', ran?.message);
    assert.equal(first.handler.calls.length, 1);

    const second = harness({ fx, stateDir: first.stateDir });
    second.executor.submit(signed);
    second.executor.submit(JSON.stringify(signed));
    const results = await second.results$(2);
    await second.executor.close();
    for (const r of results) {
      assert.equal(r.status, 'refused');
      assert.equal(r.code, REFUSAL_CODES.replayed);
      assert.equal(r.instructionId, (JSON.parse(signed.payload) as { id: string }).id);
    }
    assert.equal(second.handler.calls.length, 0);
  });

  it('replayed within one Executor after it ran', async () => {
    const h = harness({ fx });
    const signed = sign(fx, patchInstruction(fx, { dryRun: true }));
    h.executor.submit(signed);
    await h.results$(1);
    h.executor.submit(signed);
    const [, r] = await h.results$(2);
    await h.executor.close();
    assert.equal(r?.code, REFUSAL_CODES.replayed);
    assert.equal(h.handler.calls.length, 1);
  });

  it('a second copy while the first is held: PW_ERR_INSTRUCTION_IN_PROGRESS, and it runs once', async () => {
    const h = harness({ fx });
    const signed = sign(fx, patchInstruction(fx, { dryRun: true, notBefore: at(300) }));
    h.executor.submit(signed);
    h.executor.submit(signed);
    const [first, second] = await h.results$(2);
    await h.executor.close();
    assert.equal(first?.code, IN_PROGRESS_CODE);
    assert.equal(second?.status, 'succeeded');
    assert.equal(h.handler.calls.length, 1);
  });

  it('an unusable ledger (the state directory is a file): PW_ERR_INSTRUCTION_LEDGER, nothing runs', async () => {
    const stateDir = join(base, `file-${++n}`);
    writeFileSync(stateDir, 'not a directory');
    const h = harness({ fx, stateDir });
    h.executor.submit(sign(fx, patchInstruction(fx)));
    const [r] = await h.results$(1);
    await h.executor.close();
    assert.equal(r?.status, 'refused');
    assert.equal(r.code, LEDGER_CODE);
    assert.equal(h.handler.calls.length, 0);
  });

  it("a resolver's refusal (no package manager) is reported with its code; nothing runs and the id is not spent", async () => {
    const h = harness({ fx, resolverRefuses: true });
    const signed = sign(fx, patchInstruction(fx));
    h.executor.submit(signed);
    const [r] = await h.results$(1);
    h.executor.submit(signed);
    const [, again] = await h.results$(2);
    await h.executor.close();
    for (const x of [r, again]) {
      assert.equal(x?.status, 'refused');
      assert.equal(x.code, 'PW_ERR_NO_PACKAGE_MANAGER');
      assertValid(x);
    }
    assert.equal(h.resolves, 2);
    assert.equal(h.handler.calls.length, 0);
    assert.equal((await Ledger.open(h.stateDir)).size, 0);
  });
});

describe('Executor runs', () => {
  const targets = ['openssl', 'libssl3'];
  const security = new Map(realSecurityUpgrades().map((u) => [u.name, u]));

  it('a patch: records the id before the handler runs, reads packages before and after, reports the real changes', async () => {
    const fx = fixture(new Date());
    const h = harness({ fx, upgrade: targets, reboot: true });
    const instruction = patchInstruction(fx, { packages: targets.map((name) => ({ name, version: security.get(name)?.candidate ?? null })) });
    h.executor.submit(sign(fx, instruction));
    const [r] = await h.results$(1);
    await h.executor.close();
    assert.ok(r !== undefined);
    assertValid(r);
    assert.equal(r.status, 'succeeded', r.message);
    assert.equal(r.instructionId, instruction.id);
    assert.equal(h.handler.calls[0]?.ledgerHad, true, 'the ledger had the id before the handler ran');
    assert.equal(h.packageReads, 2);
    assert.deepEqual(
      r.changes,
      targets.sort().map((name) => ({ name, before: security.get(name)?.installed, after: security.get(name)?.candidate })),
    );
    assert.deepEqual(r.commands[0]?.argv.slice(0, 1), ['cp']);
    assert.equal(r.rebootRequired, true);
    assert.equal(h.handler.calls[0].ctx.timeoutMs, DEFAULT_COMMAND_TIMEOUT_MS);
  });

  const dry: { name: string; instruction: boolean; forced: boolean; want: boolean }[] = [
    { name: 'the instruction asks for a dry run', instruction: true, forced: false, want: true },
    { name: 'the executor forces a dry run', instruction: false, forced: true, want: true },
    { name: 'neither asks', instruction: false, forced: false, want: false },
  ];
  for (const d of dry) {
    it(`dryRun is ${String(d.want)} when ${d.name}`, async () => {
      const fx = fixture(new Date());
      const h = harness({ fx, upgrade: targets, exec: { dryRun: d.forced } });
      h.executor.submit(sign(fx, patchInstruction(fx, { dryRun: d.instruction, packages: [{ name: 'openssl', version: null }] })));
      const [r] = await h.results$(1);
      await h.executor.close();
      assert.equal(h.handler.calls[0]?.ctx.dryRun, d.want);
      assert.equal(r?.dryRun, d.want);
      // A dry run changes nothing; a real one moves openssl to its security version.
      const openssl = r.changes.find((c) => c.name === 'openssl');
      assert.equal(openssl?.after, d.want ? security.get('openssl')?.installed : security.get('openssl')?.candidate);
    });
  }

  it('refresh: calls onRefresh and succeeds without a handler', async () => {
    const fx = fixture(new Date());
    const h = harness({ fx });
    const { packages: _p, advisories: _a, ...common } = patchInstruction(fx) as Extract<Instruction, { kind: 'patch' }>;
    h.executor.submit(sign(fx, { ...common, kind: 'refresh' }));
    const [r] = await h.results$(1);
    await h.executor.close();
    assert.equal(r?.status, 'succeeded');
    assert.equal(h.refreshes, 1);
    assert.equal(h.resolves, 0);
    assertValid(r);
  });

  const reboots: { name: string; onlyIfNeeded: boolean; required: boolean | null; status: string; runs: number }[] = [
    { name: 'onlyIfNeeded and not needed: skipped', onlyIfNeeded: true, required: false, status: 'succeeded', runs: 0 },
    { name: 'onlyIfNeeded and needed: runs', onlyIfNeeded: true, required: true, status: 'succeeded', runs: 1 },
    { name: 'onlyIfNeeded and unknown: not rebooted, failed', onlyIfNeeded: true, required: null, status: 'failed', runs: 0 },
    { name: 'unconditional and not needed: runs', onlyIfNeeded: false, required: false, status: 'succeeded', runs: 1 },
  ];
  for (const c of reboots) {
    it(`reboot, ${c.name}`, async () => {
      const fx = fixture(new Date());
      const h = harness({ fx, reboot: c.required });
      const { packages: _p, advisories: _a, ...common } = patchInstruction(fx) as Extract<Instruction, { kind: 'patch' }>;
      h.executor.submit(sign(fx, { ...common, kind: 'reboot', onlyIfNeeded: c.onlyIfNeeded, dryRun: true }));
      const [r] = await h.results$(1);
      await h.executor.close();
      assert.equal(r?.status, c.status, r?.message);
      assert.equal(h.handler.calls.length, c.runs);
      if (c.runs === 0 && c.status === 'succeeded') assert.match(r.message, /not needed/);
      assertValid(r);
    });
  }

  it('one at a time, first in first out', async () => {
    const fx = fixture(new Date());
    const h = harness({ fx, delayMs: 100 });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const ins = patchInstruction(fx, { dryRun: true });
      ids.push(ins.id);
      h.executor.submit(sign(fx, ins));
    }
    const results = await h.results$(4);
    await h.executor.close();
    assert.equal(h.handler.maxActive, 1);
    assert.deepEqual(results.map((r) => r.instructionId), ids);
    assert.deepEqual(h.handler.calls.map((c) => c.instruction.id), ids);
  });

  it('holds a not-yet-due instruction until notBefore, while a due one behind it runs', async () => {
    const fx = fixture(new Date());
    const h = harness({ fx });
    const notBefore = Date.now() + 400;
    const held = patchInstruction(fx, { dryRun: true, notBefore: new Date(notBefore).toISOString() });
    const due = patchInstruction(fx, { dryRun: true });
    h.executor.submit(sign(fx, held));
    h.executor.submit(sign(fx, due));
    const results = await h.results$(2);
    await h.executor.close();
    assert.deepEqual(results.map((r) => r.instructionId), [due.id, held.id]);
    assert.ok((h.handler.calls[1]?.at ?? 0) >= notBefore, 'ran at or after notBefore');
  });

  it('re-checks expiry at its turn: one that expired while queued is refused, not run', async () => {
    const fx = fixture(new Date());
    const h = harness({ fx, delayMs: 600, exec: { maxClockSkewMs: 0 } });
    const slow = patchInstruction(fx, { dryRun: true });
    const late = patchInstruction(fx, { dryRun: true, expiresAt: new Date(Date.now() + 300).toISOString() });
    h.executor.submit(sign(fx, slow));
    h.executor.submit(sign(fx, late));
    const [first, second] = await h.results$(2);
    await h.executor.close();
    assert.equal(first?.status, 'succeeded');
    assert.equal(second?.status, 'refused');
    assert.equal(second.code, REFUSAL_CODES.expired);
    assert.equal(h.handler.calls.length, 1);
  });

  it('a handler that throws: failed with a code, and the queue goes on', async () => {
    const fx = fixture(new Date());
    const h = harness({ fx, fail: true });
    h.executor.submit(sign(fx, patchInstruction(fx, { dryRun: true })));
    h.executor.submit(sign(fx, patchInstruction(fx, { dryRun: true })));
    const results = await h.results$(2);
    await h.executor.close();
    assert.deepEqual(results.map((r) => [r.status, r.code]), [['failed', 'PW_ERR_COMMAND_FAILED'], ['failed', 'PW_ERR_COMMAND_FAILED']]);
    for (const r of results) {
      assertValid(r);
      assert.equal(r.message, 'the patch handler failed: handler bug: read "\ufffd"', 'U+0000 replaced, so the collector takes the result');
    }
  });

  it('close() aborts the running command', async () => {
    const fx = fixture(new Date());
    const h = harness({ fx, delayMs: 5000 });
    h.executor.submit(sign(fx, patchInstruction(fx, { dryRun: true })));
    while (h.handler.calls.length === 0) await new Promise((r) => setTimeout(r, 10));
    const t = Date.now();
    await h.executor.close();
    assert.ok(Date.now() - t < 2000, 'close did not wait for the 5 s command');
    assert.equal(h.handler.calls[0]?.ctx.signal.aborted, true);
  });
});

describe('packageChanges', () => {
  const p = (name: string, version: string, arch = 'amd64') => ({ name, version, arch, source: name, sourceVersion: version });
  const cases: { name: string; before: ReturnType<typeof p>[]; after: ReturnType<typeof p>[]; targets?: string[]; want: unknown[] }[] = [
    { name: 'an upgrade', before: [p('openssl', '3.0.19-1~deb12u2')], after: [p('openssl', '3.0.22-1~deb12u2')], want: [{ name: 'openssl', before: '3.0.19-1~deb12u2', after: '3.0.22-1~deb12u2' }] },
    { name: 'a new dependency', before: [], after: [p('libfoo1', '1.0-1')], want: [{ name: 'libfoo1', before: null, after: '1.0-1' }] },
    { name: 'a removal', before: [p('libfoo1', '1.0-1')], after: [], want: [{ name: 'libfoo1', before: '1.0-1', after: null }] },
    { name: 'no change', before: [p('bash', '5.2.15-2+b2')], after: [p('bash', '5.2.15-2+b2')], want: [] },
    { name: 'an unchanged target', before: [p('bash', '5.2.15-2+b2')], after: [p('bash', '5.2.15-2+b2')], targets: ['bash'], want: [{ name: 'bash', before: '5.2.15-2+b2', after: '5.2.15-2+b2' }] },
    { name: 'a target not installed', before: [], after: [], targets: ['nginx'], want: [{ name: 'nginx', before: null, after: null }] },
    {
      name: 'multi-arch: only the upgraded architecture',
      before: [p('libc6', '2.36-9+deb12u10'), p('libc6', '2.36-9+deb12u10', 'i386')],
      after: [p('libc6', '2.36-9+deb12u13'), p('libc6', '2.36-9+deb12u10', 'i386')],
      want: [{ name: 'libc6', before: '2.36-9+deb12u10', after: '2.36-9+deb12u13' }],
    },
    {
      name: 'a second kernel installed beside the first (rpm)',
      before: [p('kernel-core', '5.14.0-503.11.1.el9_5', 'x86_64')],
      after: [p('kernel-core', '5.14.0-503.11.1.el9_5', 'x86_64'), p('kernel-core', '5.14.0-503.15.1.el9_5', 'x86_64')],
      want: [{ name: 'kernel-core', before: null, after: '5.14.0-503.15.1.el9_5' }],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(packageChanges(c.before, c.after, c.targets), c.want);
    });
  }
});
