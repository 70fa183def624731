/**
 * `patchwarden-agent execute`: a signed instruction file run through the enrolled config's
 * pinned key, agent id and ledger. In-process for the cases, and once as a real process
 * through agent/main.ts for the registration and the exit code.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { UsageError } from '../../shared/errors.ts';
import { InstructionResultSchema, type InstructionResult, MAX_INSTRUCTION_BYTES, type ResultStatus } from '../../shared/instructions.ts';
import { tempDir } from '../../shared/testing/daemon-fixtures.ts';
import { LEDGER_FILE_NAME } from '../executor/ledger.ts';
import { fixture, patchInstruction, refreshInstruction, saveEnrolledConfig, sign, signRaw, type Fixture } from '../../shared/testing/executor-fixtures.ts';
import { MAX_ENVELOPE_BYTES, REFUSAL_CODES } from '../executor/verify.ts';
import { executeCommand, exitCodeFor } from './execute.ts';

const repo = join(import.meta.dirname, '..', '..');

interface Site {
  fx: Fixture;
  dir: string;
  config: string;
  /** An empty root: no package manager, so a patch is refused by the handler resolver. */
  root: string;
}

async function site(t: { after: (fn: () => void) => void }): Promise<Site> {
  const fx = fixture(new Date());
  const dir = tempDir(t, 'pw-execute-');
  const config = join(dir, 'agent.json');
  await saveEnrolledConfig(config, fx);
  const root = join(dir, 'root');
  mkdirSync(root);
  return { fx, dir, config, root };
}

async function execute(s: Site, file: string, extra: string[] = []): Promise<{ code: number; result: InstructionResult; stderr: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (d: Buffer) => (stdout += d.toString()));
  err.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await executeCommand(['--instruction', file, '--config', s.config, '--root', s.root, '--json', ...extra], out, err);
  const result = InstructionResultSchema.parse(JSON.parse(stdout));
  return { code, result, stderr };
}

function writeFile(s: Site, content: string | Buffer): string {
  const file = join(s.dir, `instruction-${randomUUID()}.json`);
  writeFileSync(file, content);
  return file;
}

describe('execute', () => {
  const cases: { name: string; content: (fx: Fixture) => string | Buffer; status: ResultStatus; code: string | null }[] = [
    { name: 'a signed refresh', content: (fx) => JSON.stringify(sign(fx, refreshInstruction(fx))), status: 'succeeded', code: null },
    { name: 'a signed patch on a root with no package manager', content: (fx) => JSON.stringify(sign(fx, patchInstruction(fx))), status: 'refused', code: 'PW_ERR_NO_PACKAGE_MANAGER' },
    { name: 'an unsigned instruction', content: (fx) => JSON.stringify(refreshInstruction(fx)), status: 'refused', code: REFUSAL_CODES.signature },
    { name: 'one signed by another key', content: (fx) => JSON.stringify(signRaw(fx.stranger.privateKeyPem, sign(fx, refreshInstruction(fx)).payload)), status: 'refused', code: REFUSAL_CODES.signature },
    { name: "another agent's", content: (fx) => JSON.stringify(sign(fx, refreshInstruction(fx, { agentId: randomUUID() }))), status: 'refused', code: REFUSAL_CODES.target },
    { name: 'an expired one', content: (fx) => JSON.stringify(sign(fx, refreshInstruction(fx, { expiresAt: new Date(Date.now() - 3600_000).toISOString() }))), status: 'refused', code: REFUSAL_CODES.expired },
    { name: 'a file that is not JSON', content: () => 'payload=patch everything\n', status: 'refused', code: REFUSAL_CODES.malformed },
    { name: 'binary garbage', content: () => randomBytes(4096), status: 'refused', code: REFUSAL_CODES.malformed },
    { name: 'an empty file', content: () => '', status: 'refused', code: REFUSAL_CODES.malformed },
    { name: 'a file over the limit', content: () => 'x'.repeat(MAX_ENVELOPE_BYTES + 10), status: 'refused', code: REFUSAL_CODES.tooLarge },
    { name: 'an oversize signed payload', content: (fx) => JSON.stringify(signRaw(fx.collector.privateKeyPem, 'x'.repeat(MAX_INSTRUCTION_BYTES + 1))), status: 'refused', code: REFUSAL_CODES.tooLarge },
  ];
  for (const c of cases) {
    it(`${c.name}: ${c.status}${c.code === null ? '' : ` ${c.code}`}, exit ${exitCodeFor(c.status)}`, async (t) => {
      const s = await site(t);
      const r = await execute(s, writeFile(s, c.content(s.fx)));
      assert.equal(r.result.status, c.status, r.result.message);
      assert.equal(r.result.code, c.code);
      assert.equal(r.code, exitCodeFor(c.status));
    });
  }

  it('the same file twice: the second is refused as replayed; the ledger is beside the spool', async (t) => {
    const s = await site(t);
    const file = writeFile(s, JSON.stringify(sign(s.fx, refreshInstruction(s.fx))));
    assert.equal((await execute(s, file)).code, 0);
    const again = await execute(s, file);
    assert.equal(again.code, 2);
    assert.equal(again.result.code, REFUSAL_CODES.replayed);
    assert.ok(existsSync(join(s.dir, 'state', LEDGER_FILE_NAME)), "the ledger is in the spool directory's parent");
  });

  it('--dry-run forces a dry run', async (t) => {
    const s = await site(t);
    const r = await execute(s, writeFile(s, JSON.stringify(sign(s.fx, refreshInstruction(s.fx)))), ['--dry-run']);
    assert.equal(r.result.dryRun, true);
  });

  it('waits for a not-yet-due instruction, saying so on stderr', async (t) => {
    const s = await site(t);
    const notBefore = Date.now() + 500;
    const r = await execute(s, writeFile(s, JSON.stringify(sign(s.fx, refreshInstruction(s.fx, { notBefore: new Date(notBefore).toISOString() })))));
    assert.equal(r.code, 0);
    assert.ok(Date.parse(r.result.startedAt) >= notBefore);
    assert.match(r.stderr, /not due yet: waiting until/);
  });

  const usage: { name: string; argv: (s: Site) => string[]; message: RegExp }[] = [
    { name: 'no --instruction', argv: (s) => ['--config', s.config], message: /needs --instruction FILE/ },
    { name: 'a missing instruction file', argv: (s) => ['--config', s.config, '--instruction', join(s.dir, 'nope.json')], message: /cannot open the instruction file/ },
    { name: 'a missing config', argv: (s) => ['--config', join(s.dir, 'nope.json'), '--instruction', s.config], message: /cannot open the agent config/ },
    { name: 'a --root that is not a directory', argv: (s) => ['--config', s.config, '--instruction', s.config, '--root', s.config], message: /is not a directory/ },
    { name: 'an unknown option', argv: (s) => ['--config', s.config, '--instruction', s.config, '--yes'], message: /--yes/ },
  ];
  for (const u of usage) {
    it(`${u.name}: a usage error`, async (t) => {
      const s = await site(t);
      await assert.rejects(executeCommand(u.argv(s), new PassThrough(), new PassThrough()), (e: unknown) => e instanceof UsageError && u.message.test(e.message));
    });
  }

  it('runs as `patchwarden-agent execute` (agent/main.ts): a refusal exits 2 with the result on stdout', async (t) => {
    const s = await site(t);
    const file = writeFile(s, JSON.stringify(sign(s.fx, refreshInstruction(s.fx, { agentId: randomUUID() }))));
    const { status, stdout } = await new Promise<{ status: number | null; stdout: string }>((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', join(repo, 'agent', 'main.ts'), 'execute', '--instruction', file, '--config', s.config, '--json'], { cwd: repo, timeout: 60_000 }, (err, out) => {
        resolve({ status: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout: out });
      });
    });
    assert.equal(status, 2);
    const result = InstructionResultSchema.parse(JSON.parse(stdout));
    assert.equal(result.code, REFUSAL_CODES.target);
  });
});
