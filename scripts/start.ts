/**
 * `npm start`: the whole system on this machine, as a new user first sees it. Builds
 * dist/, starts the collector on an embedded SQLite file (.patchwarden/collector.db),
 * enrolls a local agent once (its config and key in .patchwarden/agent/), runs it so it
 * reports this machine, creates a viewer API token for the dashboard and prints the URL.
 * Ctrl-C stops both. State is kept between runs; delete .patchwarden/ to start over.
 *
 * PATCHWARDEN_LISTEN overrides 127.0.0.1:8443 (use 127.0.0.1:0 for any free port).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const root = join(import.meta.dirname, '..');
const state = join(root, '.patchwarden');
const db = join(state, 'collector.db');
const agentConfig = join(state, 'agent', 'agent.json');
const collectorJs = join(root, 'dist', 'collector.js');
const agentJs = join(root, 'dist', 'agent.js');
const listen = process.env.PATCHWARDEN_LISTEN ?? '127.0.0.1:8443';

function cli(script: string, args: string[]): string {
  return execFileSync(process.execPath, [script, ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 }).trim();
}

execFileSync(process.execPath, ['--import', 'tsx', join(root, 'scripts', 'build.ts')], { cwd: root, stdio: 'inherit' });
mkdirSync(join(state, 'agent'), { recursive: true, mode: 0o700 });

const children: ChildProcess[] = [];
function stop(code: number): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  process.exitCode = code;
}
process.on('SIGINT', () => {
  stop(0);
});
process.on('SIGTERM', () => {
  stop(0);
});

const collector = spawn(process.execPath, [collectorJs, 'serve', '--db', db, '--listen', listen], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
children.push(collector);
collector.on('exit', (code) => {
  process.stderr.write(`collector exited (${code ?? 'signal'})\n`);
  stop(code ?? 1);
});

// The collector prints "listening on URL (agents: WSURL)" once it serves; its JSON logs follow.
const lines = createInterface({ input: collector.stdout });
let started = false;
lines.on('line', (line) => {
  const m = /listening on (\S+) \(agents: (\S+)\)/.exec(line);
  if (started || m === null) {
    if (!line.startsWith('{')) process.stdout.write(`${line}\n`);
    return;
  }
  started = true;
  const [, url = '', agentUrl = ''] = m;
  try {
    if (!existsSync(agentConfig)) {
      const { token } = JSON.parse(cli(collectorJs, ['token', 'create', '--db', db, '--uses', '1', '--ttl', '10m', '--note', 'npm start: this machine', '--json'])) as { token: string };
      cli(agentJs, ['enroll', '--collector', agentUrl, '--token', token, '--config', agentConfig, '--spool-dir', join(state, 'agent', 'spool')]);
    }
    const { token: apiToken } = JSON.parse(cli(collectorJs, ['api-token', 'create', '--db', db, '--name', `npm-start-${Date.now()}`, '--role', 'viewer', '--json'])) as { token: string };
    const agent = spawn(process.execPath, [agentJs, 'run', '--config', agentConfig], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(agent);
    agent.on('exit', (code) => {
      process.stderr.write(`agent exited (${code ?? 'signal'})\n`);
    });
    process.stdout.write(
      `\npatchwarden is running: a collector on ${db} and an agent reporting this machine.\n` +
        `  dashboard: ${url}/\n` +
        `  sign in with this viewer token: ${apiToken}\n` +
        `  API:       curl -H 'Authorization: Bearer <token>' ${url}/api/v1/hosts\n` +
        `Ctrl-C stops both.\n`,
    );
  } catch (err) {
    process.stderr.write(`npm start: ${(err as Error).message}\n`);
    stop(1);
  }
});
