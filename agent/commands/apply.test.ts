/**
 * `patchwarden-agent apply --from DIR`: instruction files from `collector instructions
 * export` checked against the pinned collector key, run through the Executor, and the
 * results and a fresh report written back as signed files. In-process, on an enrolled
 * config whose root is an empty directory (nothing on this machine can change).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, statSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { type Instruction, type ResultBundle, ResultBundleSchema, type SignedInstruction } from '../../shared/instructions.ts';
import { COLLECTOR_SIGNER, encodeSignedFile, FILE_SUFFIX, parseSignedBody, readSignedFile, signedFilesIn } from '../../shared/signed-file.ts';
import { generateKeyPair, type KeyPair } from '../../shared/signing.ts';
import { savePrivateKey } from '../daemon/config.ts';
import { Spool } from '../daemon/spool.ts';
import { tempDir } from '../../shared/testing/daemon-fixtures.ts';
import { fixture, refreshInstruction, saveEnrolledConfig, sign, type Fixture } from '../../shared/testing/executor-fixtures.ts';
import { REFUSAL_CODES } from '../executor/verify.ts';
import { mkfifo } from '../../shared/testing/fifo.ts';
import { applyCommand } from './apply.ts';

const HOUR = 3600_000;

interface Site {
  fx: Fixture;
  agentKey: KeyPair;
  config: string;
  from: string;
  out: string;
}

async function site(t: { after: (fn: () => void) => void }): Promise<Site> {
  const fx = fixture(new Date());
  const dir = tempDir(t, 'pw-apply-');
  const agentKey = generateKeyPair();
  const config = join(dir, 'agent.json');
  mkdirSync(join(dir, 'root'));
  await saveEnrolledConfig(config, fx, { root: join(dir, 'root') });
  await savePrivateKey(join(dir, 'agent.key'), agentKey.privateKeyPem);
  const from = join(dir, 'from');
  const out = join(dir, 'out');
  mkdirSync(from);
  mkdirSync(out);
  return { fx, agentKey, config, from, out };
}

const refresh = (fx: Fixture, overrides: Partial<Instruction> = {}): Instruction => refreshInstruction(fx, { id: randomUUID(), ...overrides });

/** An instructions file as `collector instructions export` writes it. */
async function bundle(s: Site, instructions: SignedInstruction[], opts: { agentId?: string; key?: string; name?: string } = {}): Promise<string> {
  const body = Buffer.from(JSON.stringify({ agentId: opts.agentId ?? s.fx.agentId, instructions }));
  const file = join(s.from, opts.name ?? `${randomUUID()}${FILE_SUFFIX.instructions}`);
  await writeFile(file, encodeSignedFile({ kind: 'instructions', signer: COLLECTOR_SIGNER, createdAt: new Date(), body, key: opts.key ?? s.fx.collector.privateKeyPem }));
  return file;
}

async function apply(s: Site): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (d: Buffer) => (stdout += d.toString()));
  err.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await applyCommand(['--from', s.from, '--out', s.out, '--config', s.config], out, err);
  return { code, stdout, stderr };
}

/** The results file in --out, checked with the agent's key as the collector checks it. */
async function writtenResults(s: Site): Promise<ResultBundle | null> {
  const [file] = await signedFilesIn(s.out, ['results']);
  if (file === undefined) return null;
  const { body } = await readSignedFile(file, file, { kind: 'results', maxBodyBytes: 1 << 20, keyOf: (id) => (id === s.fx.agentId ? s.agentKey.publicKey : undefined) });
  return parseSignedBody(body, ResultBundleSchema, 'a results bundle').value;
}

describe('agent apply', () => {
  it('runs a due refresh: exit 0, a signed results file with its result and a signed report file', async (t) => {
    const s = await site(t);
    const i = refresh(s.fx);
    await bundle(s, [sign(s.fx, i)]);
    const r = await apply(s);
    assert.equal(r.code, 0, r.stderr);
    const results = await writtenResults(s);
    assert.deepEqual(results?.results.map((x) => [x.instructionId, x.status]), [[i.id, 'succeeded']]);
    assert.equal((await readdir(s.out)).filter((n) => n.endsWith(FILE_SUFFIX.report)).length, 1);
  });

  it('under umask 022 every file the agent leaves is 0600: config, key, results and report files, ledger, result outbox, spool', async (t) => {
    const umask = process.umask(0o022);
    t.after(() => process.umask(umask));
    const s = await site(t);
    const root = join(s.config, '..');
    await bundle(s, [sign(s.fx, refresh(s.fx))]);
    assert.equal((await apply(s)).code, 0);
    const spool = await Spool.open(join(root, 'spool'), 1 << 20, () => undefined);
    await spool.add({ type: 'report', id: randomUUID(), hash: 'a'.repeat(64), inventory: null });
    const made = (await readdir(root, { recursive: true, withFileTypes: true }))
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name))
      .filter((f) => !f.startsWith(s.from)); // the instruction bundle is the test's, not the agent's
    const kinds = new Set(made.map((f) => (f.endsWith('.json') || f.endsWith('.key') ? f.slice(root.length) : f.split('.').pop())));
    for (const kind of ['/agent.json', '/agent.key', 'pwresults', 'pwreport']) assert.ok(kinds.has(kind), `${kind} in ${[...kinds].join(' ')}`);
    assert.ok(made.some((f) => f.includes(`${join(root, 'spool')}/`)), 'a spool file');
    assert.ok(made.length >= 7, made.join(' '));
    for (const f of made) assert.equal((statSync(f).mode & 0o777).toString(8), '600', f);
  });

  it('leaves an instruction that is not due yet: nothing runs, nothing is written', async (t) => {
    const s = await site(t);
    const notBefore = new Date(Date.now() + 2 * HOUR);
    await bundle(s, [sign(s.fx, refresh(s.fx, { notBefore: notBefore.toISOString(), expiresAt: new Date(Date.now() + 5 * HOUR).toISOString() }))]);
    const r = await apply(s);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`waits until ${notBefore.toISOString()}: run apply again then\\nnothing to run for agent`));
    assert.deepEqual(await readdir(s.out), []);
  });

  it('a FIFO named like an instructions file is refused with PW_ERR_NOT_REGULAR_FILE, never opened for a read that blocks; the real file still runs', { timeout: 20_000 }, async (t) => {
    const s = await site(t);
    await bundle(s, [sign(s.fx, refresh(s.fx))]);
    const fifo = await mkfifo(join(s.from, `0-fifo${FILE_SUFFIX.instructions}`));
    const r = await apply(s);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^refused    ${fifo}: ${fifo} is a FIFO, not a regular file: refused without reading it \\(PW_ERR_NOT_REGULAR_FILE\\)$`, 'm'));
    assert.equal((await readdir(s.out)).filter((f) => f.endsWith(FILE_SUFFIX.results)).length, 1);
  });

  it('skips a file for another agent: one directory can be carried to many hosts', async (t) => {
    const s = await site(t);
    const other = randomUUID();
    await bundle(s, [sign(s.fx, refresh(s.fx, { agentId: other }))], { agentId: other });
    const r = await apply(s);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`^skipped +\\S+: for agent ${other}, not this one\\n$`));
    assert.deepEqual(await readdir(s.out), []);
  });

  it('an expired instruction is refused by the Executor: exit 2, the refusal goes back in the results', async (t) => {
    const s = await site(t);
    const i = refresh(s.fx, { expiresAt: new Date(Date.now() - HOUR).toISOString(), notBefore: new Date(Date.now() - 2 * HOUR).toISOString() });
    await bundle(s, [sign(s.fx, i)]);
    const r = await apply(s);
    assert.equal(r.code, 2, r.stderr);
    assert.deepEqual((await writtenResults(s))?.results.map((x) => [x.instructionId, x.code]), [[i.id, REFUSAL_CODES.expired]]);
  });

  const badFiles: [string, (s: Site) => Promise<unknown>, RegExp][] = [
    ['signed by another key than the pinned one', (s) => bundle(s, [sign(s.fx, refresh(s.fx))], { key: s.fx.stranger.privateKeyPem }), /header signature does not verify with collector's key \(PW_ERR_FILE_TAMPERED\)/],
    ['that is not a signed file', (s) => writeFile(join(s.from, `x${FILE_SUFFIX.instructions}`), '{"instructions": []}\n'), /invalid header.*\(PW_ERR_MALFORMED_INPUT\)/],
    ['whose signed body is not a bundle', (s) => bundle(s, []), /not an instruction bundle.*\(PW_ERR_MALFORMED_INPUT\)/],
  ];
  for (const [name, make, message] of badFiles) {
    it(`refuses a file ${name}: exit 2, nothing runs`, async (t) => {
      const s = await site(t);
      await make(s);
      const r = await apply(s);
      assert.equal(r.code, 2);
      assert.match(r.stderr, message);
      assert.deepEqual(await readdir(s.out), []);
    });
  }
});
