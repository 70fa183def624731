/**
 * The air-gapped report path as an operator runs it: an agent enrolled once, then
 * `patchwarden-agent report --out DIR` (a real process, this machine's real inventory),
 * the file carried over, `patchwarden-collector reports import DIR` (a real process on the
 * database a collector is serving), and the serving collector correlating the host.
 */
import assert from 'node:assert/strict';
import { execFile, type ExecFileException } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { ensureBuilt } from '../../../scripts/dist-fresh.ts';
import { NODE18_BIN } from '../../../scripts/node18-path.ts';
import { signInstruction } from '../../../shared/instructions.ts';
import { encodeSignedFile } from '../../../shared/signed-file.ts';
import { generateKeyPair } from '../../../shared/signing.ts';
import { startCollector } from '../../../shared/testing/collector-harness.ts';

const root = join(import.meta.dirname, '..', '..', '..');
const run = promisify(execFile);

interface Result {
  status: number;
  stdout: string;
  stderr: string;
}

async function exec(file: string, args: string[], cwd = root): Promise<Result> {
  try {
    const { stdout, stderr } = await run(file, args, { cwd, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
    return { status: 0, stdout, stderr };
  } catch (err) {
    const e = err as ExecFileException & { stdout: string; stderr: string };
    return { status: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout, stderr: e.stderr };
  }
}

function cli(main: 'agent' | 'collector', args: string[]): Promise<Result> {
  return exec(process.execPath, ['--import', 'tsx', join(root, main, 'main.ts'), ...args]);
}

async function tempDir(t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function installedCount(): Promise<number> {
  const { stdout } = await run('dpkg-query', ['-W', '-f', '${db:Status-Status}\\t${binary:Package}\\n'], { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 });
  return stdout.split('\n').filter((l) => l.startsWith('installed\t')).length;
}

type AgentCli = (t: TestContext, args: string[]) => Promise<Result>;
const agents: [string, AgentCli][] = [
  ['the agent from its sources', (_t, args) => cli('agent', args)],
  [
    'dist/agent.js alone on Node 18',
    async (t, args) => {
      assert.ok(existsSync(NODE18_BIN), `${NODE18_BIN} is missing: \`npm test\` fetches it (or \`npm run node18\`)`);
      ensureBuilt('agent');
      const lone = await tempDir(t, 'pw-lone-');
      await copyFile(join(root, 'dist', 'agent.js'), join(lone, 'agent.js'));
      return exec(NODE18_BIN, [join(lone, 'agent.js'), ...args], lone);
    },
  ],
];

/** A serving collector (fast tick) and an agent enrolled with it once, as before a host goes behind the gap. */
async function enrolledBehindGap(t: TestContext, agentCli: AgentCli) {
  const tc = await startCollector(t, { rolloutTickMs: 100 });
  const { collector } = tc;
  const carry = await tempDir(t, 'pw-carry-');
  const config = join(await tempDir(t, 'pw-agent-'), 'agent.json');
  const { token } = await collector.store.tokens.create({ uses: 1, ttlMs: 3600_000, createdBy: 'test' });
  const enrolled = await agentCli(t, ['enroll', '--collector', collector.agentUrl, '--token', token, '--config', config]);
  assert.equal(enrolled.status, 0, enrolled.stderr);
  const agentId = /enrolled as agent ([0-9a-f-]{36})/.exec(enrolled.stdout)?.[1] ?? '';
  return { tc, collector, carry, config, agentId };
}

describe('air-gapped reports, end to end', () => {
  for (const [runtime, agentCli] of agents) {
    it(`${runtime}: agent report --out, reports import on a serving collector: the host appears with dpkg-query’s package count and is correlated`, async (t) => {
      const { tc, collector, carry, config, agentId } = await enrolledBehindGap(t, agentCli);

      const written = await agentCli(t, ['report', '--out', carry, '--config', config]);
      assert.ok(written.status === 0 || written.status === 3, written.stderr);
      const [name, ...more] = await readdir(carry);
      assert.equal(more.length, 0);
      assert.match(name ?? '', new RegExp(`^\\d{8}T\\d{6}Z-${agentId}-[0-9a-f]{8}\\.pwreport$`));
      assert.match(written.stdout, new RegExp(`^wrote ${carry}/${name}\\n\\d+ packages, \\d+ bytes, report [0-9a-f-]{36}\\n`));

      const imported = await cli('collector', ['reports', 'import', '--db', tc.dbPath, carry]);
      assert.equal(imported.status, 0, imported.stderr);
      assert.match(imported.stdout, new RegExp(`^stored +${carry}/${name}: \\S+ \\(agent ${agentId}\\), \\d+ packages, written \\d{4}-`));
      assert.match(imported.stdout, /\n1 file: 1 imported or known, 0 refused\n$/);

      // The serving collector picks the import up at its next tick and correlates the host.
      const { token: apiToken } = await collector.store.apiTokens.create({ name: 'e2e', role: 'viewer', createdBy: 'test' });
      const deadline = Date.now() + 20_000;
      while (collector.findings.stats.correlated === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(collector.findings.stats.correlated, 1, 'the serving collector correlated the imported host');
      assert.ok(tc.logs.some((l) => l.includes('imported reports: correlating their hosts')));
      const res = await fetch(`${collector.url}/api/v1/hosts/${agentId}`, { headers: { authorization: `Bearer ${apiToken}` } });
      assert.equal(res.status, 200);
      const { host, inventory, findings } = (await res.json()) as { host: { packageCount: number }; inventory: { packages: unknown[] }; findings: { schema: string; host: string; findings: unknown[] } };
      const installed = await installedCount();
      assert.deepEqual([host.packageCount, inventory.packages.length], [installed, installed], 'the same package count as dpkg-query -W');
      assert.equal(findings.schema, 'patchwarden.findings/1');
      assert.ok(Array.isArray(findings.findings));

      // Carried across again (an operator re-running the import): nothing changes.
      const again = await cli('collector', ['reports', 'import', '--db', tc.dbPath, carry]);
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.stdout, /^imported already /);

      // A file edited on the way: refused, exit 1, the host keeps its stored inventory.
      const tampered = join(carry, name ?? '');
      const bytes = await readFile(tampered);
      bytes[bytes.length - 2] = (bytes[bytes.length - 2] ?? 0) ^ 0x20;
      await writeFile(tampered, bytes);
      const refused = await cli('collector', ['reports', 'import', '--db', tc.dbPath, tampered]);
      assert.equal(refused.status, 1);
      assert.match(refused.stderr, /^refused +\S+\.pwreport: the file's body does not match its signed sha256 \(PW_ERR_FILE_TAMPERED\)\n$/);
      assert.equal((await collector.store.hosts.get(agentId))?.packageCount, host.packageCount);
    });
  }

  for (const [runtime, agentCli] of agents) {
    it(`${runtime}: a rollout to a host behind the gap: instructions export, agent apply, reports import move the host to succeeded; a replay changes nothing; a forged file runs nothing`, async (t) => {
      const { tc, collector, carry, config, agentId } = await enrolledBehindGap(t, agentCli);
      assert.ok([0, 3].includes((await agentCli(t, ['report', '--out', carry, '--config', config])).status));
      assert.equal((await cli('collector', ['reports', 'import', '--db', tc.dbPath, carry])).status, 0);

      // A rollout as an operator makes one: it enqueues a signed refresh for the host.
      const rolloutId = await collector.rollouts.create({ name: 'behind the gap', target: { agentIds: [agentId] }, action: { kind: 'refresh' }, waves: { canary: { hosts: 1 } } }, 'cli:alice');
      await collector.rollouts.submit(rolloutId, 'cli:alice');
      assert.equal((await collector.outbox.pendingFor(agentId, new Date())).length, 1);

      const out = await tempDir(t, 'pw-instr-');
      const exported = await cli('collector', ['instructions', 'export', '--db', tc.dbPath, '--out', out]);
      assert.equal(exported.status, 0, exported.stderr);
      assert.match(exported.stdout, new RegExp(`^wrote ${out}/\\d{8}T\\d{6}Z-${agentId}-1\\.pwinstr: 1 instruction for agent ${agentId}\\n$`));

      const applied = await agentCli(t, ['apply', '--from', out, '--config', config]);
      assert.equal(applied.status, 0, applied.stderr);
      assert.match(applied.stdout, /^succeeded: inventory refresh requested\ninstruction [0-9a-f-]{36}\n/);
      assert.match(applied.stdout, /wrote \S+\.pwresults\nwrote \S+\.pwreport\ncarry both back/);

      const imported = await cli('collector', ['reports', 'import', '--db', tc.dbPath, out]);
      assert.equal(imported.status, 0, imported.stderr);
      assert.match(imported.stdout, new RegExp(`stored +\\S+\\.pwresults: 1 result of agent ${agentId} recorded`));
      const rollout = await collector.rollouts.get(rolloutId);
      assert.deepEqual(
        rollout.hosts.map((h) => [h.agentId, h.state]),
        [[agentId, 'succeeded']],
      );
      assert.equal(rollout.state, 'completed');

      // The same directory applied again (the operator ran it twice): the ledger refuses the
      // replay, and the results file carries the first run's result, which the collector knows.
      const again = await agentCli(t, ['apply', '--from', out, '--config', config]);
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.stdout, /^ran here before; its result goes back again:\nsucceeded: inventory refresh requested\n/);
      const reimported = await cli('collector', ['reports', 'import', '--db', tc.dbPath, out]);
      assert.equal(reimported.status, 0, reimported.stderr);
      assert.match(reimported.stdout, /imported already +\S+\.pwresults: 0 results of agent .* recorded \(1 known already\)/);
      assert.equal((await collector.rollouts.get(rolloutId)).hosts[0]?.state, 'succeeded');

      // An instruction file signed with another key: refused, nothing runs.
      const forged = await tempDir(t, 'pw-forged-');
      const fake = generateKeyPair();
      const instruction = { schema: 'patchwarden.instruction/1', kind: 'refresh', id: randomUUID(), agentId, issuedAt: new Date().toISOString(), notBefore: new Date().toISOString(), expiresAt: new Date(Date.now() + 3600_000).toISOString(), rolloutId: null, dryRun: false } as const;
      const bundle = { agentId, instructions: [signInstruction(instruction, fake.privateKeyPem)] };
      await writeFile(join(forged, 'x.pwinstr'), encodeSignedFile({ kind: 'instructions', signer: 'collector', createdAt: new Date(), body: Buffer.from(JSON.stringify(bundle)), key: fake.privateKeyPem }));
      const refused = await agentCli(t, ['apply', '--from', forged, '--config', config]);
      assert.equal(refused.status, 2);
      assert.match(refused.stderr, /^refused +\S+x\.pwinstr: the file's header signature does not verify with collector's key \(PW_ERR_FILE_TAMPERED\)\n$/);
      assert.deepEqual(await readdir(forged), ['x.pwinstr']);
    });
  }

  it('usage errors exit 2: report and apply without their directory or with one that is not, import without a path, export without --out or with a bad agent id', async (t) => {
    const dir = await tempDir(t, 'pw-usage-');
    const cases: [Result, RegExp][] = [
      [await cli('agent', ['report', '--config', join(dir, 'agent.json')]), /report needs --out DIR/],
      [await cli('agent', ['report', '--out', join(dir, 'nope')]), /--out .*nope is not a directory/],
      [await cli('collector', ['reports', 'import', '--db', join(dir, 'c.db')]), /reports import needs at least one PATH/],
      [await cli('collector', ['reports', 'export']), /reports export: expected import/],
      [await cli('agent', ['apply', '--config', join(dir, 'agent.json')]), /apply needs --from DIR/],
      [await cli('agent', ['apply', '--from', dir, '--out', join(dir, 'nope')]), /--out .*nope is not a directory/],
      [await cli('collector', ['instructions', 'export', '--db', join(dir, 'c.db')]), /instructions export needs --out DIR/],
      [await cli('collector', ['instructions', 'export', '--db', join(dir, 'c.db'), '--out', dir, '--agent', "x' OR 1=1"]), /--agent x' OR 1=1 is not an agent id/],
    ];
    for (const [r, message] of cases) {
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
    }
  });
});
