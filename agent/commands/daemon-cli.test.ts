/**
 * `patchwarden-agent enroll` and `run` as an operator runs them: separate processes (the
 * sources through tsx, and dist/agent.js alone on Node 18), against a real WebSocket
 * collector in this process. Exit codes, messages, files, signals.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ensureBuilt } from '../../scripts/dist-fresh.ts';
import { NODE18_BIN } from '../../scripts/node18-path.ts';
import { FakeCollector } from '../../shared/testing/fake-collector.ts';
import { tempDir } from '../../shared/testing/daemon-fixtures.ts';

const root = join(import.meta.dirname, '..', '..');
const bundle = join(root, 'dist', 'agent.js');

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

type Runner = (args: string[], env?: NodeJS.ProcessEnv) => ChildProcess;

const sources: Runner = (args, env) => spawn(process.execPath, ['--import', 'tsx', join(root, 'agent', 'main.ts'), ...args], { cwd: root, env: { ...process.env, ...env } });

async function finish(child: ChildProcess): Promise<Result> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const [status] = (await once(child, 'exit')) as [number | null];
  return { status, stdout, stderr };
}

/** Reads the child's JSON log lines until one matches. */
function waitForLog(child: ChildProcess, match: (line: Record<string, unknown>) => boolean, timeoutMs = 20_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      reject(new Error(`no matching log line within ${timeoutMs} ms; got:\n${buf}`));
    }, timeoutMs);
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      for (const text of buf.split('\n')) {
        if (!text.startsWith('{')) continue;
        try {
          const line = JSON.parse(text) as Record<string, unknown>;
          if (match(line)) {
            clearTimeout(timer);
            resolve(line);
            return;
          }
        } catch {
          // a partial line: wait for the rest
        }
      }
    });
  });
}

async function collector(t: { after: (fn: () => unknown) => void }): Promise<FakeCollector> {
  const c = await FakeCollector.start();
  t.after(() => c.stop());
  return c;
}

describe('patchwarden-agent enroll (CLI)', () => {
  it('enrolls with --token: exit 0, prints the agent id and the files, key mode 0600', async (t) => {
    const c = await collector(t);
    const config = join(tempDir(t), 'agent.json');
    const r = await finish(sources(['enroll', '--collector', c.url, '--token', c.createToken(), '--config', config]));
    assert.equal(r.status, 0, r.stderr);
    const id = /enrolled as agent ([0-9a-f-]{36}) with /.exec(r.stdout)?.[1];
    assert.ok(id !== undefined && c.agents.has(id), r.stdout);
    assert.match(r.stdout, /key +.*agent\.key \(mode 0600\)/);
    assert.equal(statSync(join(config, '..', 'agent.key')).mode & 0o777, 0o600);
  });

  it('takes the token from PATCHWARDEN_ENROLL_TOKEN, keeping it out of ps', async (t) => {
    const c = await collector(t);
    const config = join(tempDir(t), 'agent.json');
    const r = await finish(sources(['enroll', '--collector', c.url, '--config', config], { PATCHWARDEN_ENROLL_TOKEN: c.createToken() }));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(c.agents.size, 1);
  });

  it("takes a --token that starts with '-', as older collectors made one time in 64", async (t) => {
    const c = await collector(t);
    const config = join(tempDir(t), 'agent.json');
    const r = await finish(sources(['enroll', '--collector', c.url, '--token', c.createToken(1, '-Xk2pQ9vT_0aLm3nB7cD1eF4gH6jJ8'), '--config', config]));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(c.agents.size, 1);
  });

  const failures: [string, (c: FakeCollector, dir: string) => string[], number, RegExp][] = [
    ['a used-up token: exit 1 with PW_ERR_TOKEN_REFUSED', (c, dir) => ['--collector', c.url, '--token', 'x'.repeat(32), '--config', join(dir, 'a.json')], 1, /the collector refused: enroll: the enrollment token is used up \(PW_ERR_TOKEN_REFUSED\)/],
    ['no --collector: exit 2 with the usage', (c, dir) => ['--token', c.createToken(), '--config', join(dir, 'a.json')], 2, /enroll needs --collector URL[\s\S]*usage:/],
    ['no token at all: exit 2', (c, dir) => ['--collector', c.url, '--config', join(dir, 'a.json')], 2, /enroll needs --token T/],
    ['--token followed by another option: exit 2, not that option taken as the token', (c, dir) => ['--token', '--collector', c.url, '--config', join(dir, 'a.json')], 2, /--token.*argument is ambiguous/],
    ['an ftp:// collector: exit 2', (c, dir) => ['--collector', 'ftp://x', '--token', c.createToken(), '--config', join(dir, 'a.json')], 2, /must start with wss:\/\/ or ws:\/\//],
    ['an unknown option: exit 2', (c) => ['--collector', c.url, '--bogus'], 2, /Unknown option '--bogus'/],
    ['a collector that is down: exit 1 with PW_ERR_CONNECT', (c, dir) => ['--collector', 'ws://127.0.0.1:1', '--token', c.createToken(), '--config', join(dir, 'a.json')], 1, /ECONNREFUSED.*\(PW_ERR_CONNECT\)/],
  ];
  for (const [name, args, status, pattern] of failures) {
    it(name, async (t) => {
      const c = await collector(t);
      const dir = tempDir(t);
      const r = await finish(sources(['enroll', ...args(c, dir)]));
      assert.equal(r.status, status, r.stderr);
      assert.match(r.stderr, pattern);
      assert.deepEqual(readdirSync(dir), []);
    });
  }
});

describe('patchwarden-agent run (CLI)', () => {
  it('without a config: exit 2, telling the operator to enroll first', async () => {
    const r = await finish(sources(['run', '--config', '/nonexistent/agent.json']));
    assert.equal(r.status, 2);
    assert.match(r.stderr, /cannot open the agent config \/nonexistent\/agent\.json.*run `patchwarden-agent enroll/);
  });

  it('a spool directory that cannot be created: exit 2 naming it', async (t) => {
    const c = await collector(t);
    const dir = tempDir(t);
    const config = join(dir, 'agent.json');
    assert.equal((await finish(sources(['enroll', '--collector', c.url, '--token', c.createToken(), '--config', config, '--spool-dir', join(dir, 'agent.json', 'spool')]))).status, 0);
    const r = await finish(sources(['run', '--config', config]));
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /cannot open the spool directory .*agent\.json\/spool: .*ENOTDIR.*\(PW_ERR_USAGE\)/);
  });

  it('revoked: exit 4 with a message that says how to re-enroll', async (t) => {
    const c = await collector(t);
    const config = join(tempDir(t), 'agent.json');
    assert.equal((await finish(sources(['enroll', '--collector', c.url, '--token', c.createToken(), '--config', config]))).status, 0);
    c.revoke([...c.agents.keys()][0]!);
    const r = await finish(sources(['run', '--config', config]));
    assert.equal(r.status, 4, r.stderr);
    assert.match(r.stderr, /revoked agent .* \(PW_ERR_AGENT_REVOKED\); it will not reconnect\. Re-enroll: patchwarden-agent enroll .* --force/);
    assert.ok(r.stdout.split('\n').some((l) => l.includes('"code":"PW_ERR_AGENT_REVOKED"') && l.includes('"level":50')));
  });

  const runtimes: [string, (t: { after: (fn: () => unknown) => void }) => Runner][] = [
    ['sources (tsx)', () => sources],
    [
      'dist/agent.js copied alone into an empty directory, on Node 18',
      (t) => {
        assert.ok(existsSync(NODE18_BIN), `${NODE18_BIN} is missing: \`npm test\` fetches it (or \`npm run node18\`)`);
        ensureBuilt('agent');
        const lone = tempDir(t, 'pw-lone-');
        copyFileSync(bundle, join(lone, 'agent.js'));
        return (args, env) => spawn(NODE18_BIN, [join(lone, 'agent.js'), ...args], { cwd: lone, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env } });
      },
    ],
  ];
  for (const [name, runner] of runtimes) {
    it(`${name}: enroll, run reports this host's full inventory, SIGTERM stops it with exit 0`, async (t) => {
      const run = runner(t);
      const c = await collector(t);
      const config = join(tempDir(t), 'agent.json');
      const enrolled = await finish(run(['enroll', '--collector', c.url, '--token', c.createToken(), '--config', config]));
      assert.equal(enrolled.status, 0, enrolled.stderr);
      const child = run(['run', '--config', config]);
      const done = finish(child);
      await waitForLog(child, (l) => l.msg === 'report acknowledged');
      const [report] = await c.waitForReports(1);
      assert.equal(report!.full, true);
      const dpkg = execFileSync('dpkg-query', ['-W', '-f=${db:Status-Abbrev}\\n'], { encoding: 'utf8' });
      assert.equal(report!.packages, dpkg.split('\n').filter((l) => l[1] === 'i').length);
      child.kill('SIGTERM');
      const r = await done;
      assert.equal(r.status, 0, r.stderr);
      assert.ok(r.stdout.includes('"msg":"agent stopped"'), r.stdout);
      assert.equal(c.connected, 0);
    });
  }
});
