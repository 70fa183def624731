import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { commandArgv, findProgram, HANDLER_ENV, handlerEnv, runCommand } from './run.ts';

const node = process.execPath;

/** Dead or a zombie (killed, not yet reaped by whoever inherited it), within `ms`. */
async function gone(pid: number, ms: number): Promise<boolean> {
  for (const until = Date.now() + ms; Date.now() < until; await new Promise((res) => setTimeout(res, 50))) {
    try {
      if ((await readFile(`/proc/${pid}/stat`, 'utf8')).replace(/^.*\) /s, '').startsWith('Z')) return true;
    } catch {
      return true;
    }
  }
  return false;
}
const live = (timeoutMs = 10_000, signal = new AbortController().signal) => ({ root: '/', timeoutMs, signal });

describe('runCommand exit codes', () => {
  const cases: [string, string[], number][] = [
    ['true', ['true'], 0],
    ['false', ['false'], 1],
    ['node exiting 3', [node, '-e', 'process.exit(3)'], 3],
    ['node exiting 100 (apt-get error)', [node, '-e', 'process.exit(100)'], 100],
  ];
  for (const [label, argv, code] of cases) {
    it(`${label} -> ${code}`, async () => {
      const r = await runCommand(argv, live());
      assert.equal(r.record.exitCode, code);
      assert.equal(r.record.signal, null);
      assert.deepEqual(r.record.argv, argv);
      assert.deepEqual([r.timedOut, r.aborted, r.notFound], [false, false, false]);
      assert.ok(r.record.durationMs > 0);
    });
  }
});

describe('runCommand arguments', () => {
  it('passes shell metacharacters as literal argument text', async () => {
    const args = ['$(id)', 'a b', ';rm -rf /', '`id`', '*'];
    const r = await runCommand([node, '-e', 'process.stdout.write(JSON.stringify(process.argv.slice(1)))', ...args], live());
    assert.deepEqual(JSON.parse(r.record.outputTail), args);
  });
});

describe('runCommand timeout, signal and abort', () => {
  it('sleep 30 with a 300 ms timeout: SIGTERM, timedOut', async () => {
    const r = await runCommand(['sleep', '30'], live(300));
    assert.equal(r.timedOut, true);
    assert.equal(r.record.signal, 'SIGTERM');
    assert.equal(r.record.exitCode, null);
    assert.ok(r.record.durationMs < 5_000, `${r.record.durationMs} ms`);
    assert.match(r.record.outputTail, /timed out after 300 ms/);
  });
  it('a command that ignores SIGTERM: SIGKILL after the grace', async () => {
    const r = await runCommand([node, '-e', "process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000)"], live(500), { killGraceMs: 300 });
    assert.equal(r.timedOut, true);
    assert.equal(r.record.signal, 'SIGKILL');
    assert.ok(r.record.durationMs < 5_000);
  });
  it('the timeout stops the whole process group (a child of the command)', async () => {
    const script = "const c = require('node:child_process').spawn('sleep', ['30'], { stdio: 'ignore' }); console.log(c.pid); setInterval(() => {}, 1000)";
    // 2 s: node must start and print the grandchild's pid before the timeout; 300 ms was
    // too short on a loaded machine (CI failed once with an empty output).
    const r = await runCommand([node, '-e', script], live(2_000));
    assert.equal(r.timedOut, true);
    const grandchild = Number(/^(\d+)$/m.exec(r.record.outputTail)?.[1]);
    assert.ok(grandchild > 0, r.record.outputTail);
    assert.ok(await gone(grandchild, 2_000), `sleep ${grandchild} outlived the timeout`);
  });
  it('a command killed by a signal of its own reports it', async () => {
    const r = await runCommand([node, '-e', "process.kill(process.pid, 'SIGTERM'); setInterval(() => {}, 1000)"], live());
    assert.equal(r.record.signal, 'SIGTERM');
    assert.equal(r.record.exitCode, null);
    assert.equal(r.timedOut, false);
  });
  it('aborting the signal stops a running sleep', async () => {
    const ac = new AbortController();
    setTimeout(() => {
      ac.abort();
    }, 200);
    const r = await runCommand(['sleep', '30'], live(10_000, ac.signal));
    assert.equal(r.aborted, true);
    assert.equal(r.record.signal, 'SIGTERM');
  });
  it('an aborted signal starts nothing', async () => {
    const r = await runCommand(['touch', '/nonexistent-dir/x'], live(10_000, AbortSignal.abort()));
    assert.equal(r.aborted, true);
    assert.equal(r.record.exitCode, null);
    assert.match(r.record.outputTail, /not started/);
  });
});

describe('runCommand output tail', () => {
  const cases: [string, number, number][] = [
    ['200 kB on stdout, 1 kB tail', 200_000, 1024],
    ['3 MB on stdout, 16 KiB tail', 3_000_000, 16 * 1024],
  ];
  for (const [label, size, tailBytes] of cases) {
    it(label, async () => {
      const r = await runCommand([node, '-e', `process.stdout.write('x'.repeat(${size}) + 'END')`], live(), { tailBytes });
      assert.equal(r.record.exitCode, 0);
      assert.ok(r.record.outputTail.endsWith('END'));
      assert.match(r.record.outputTail, new RegExp(`^\\[${size + 3 - tailBytes} earlier bytes not kept\\]\\n`));
      assert.ok(r.record.outputTail.length <= tailBytes + 64);
    });
  }
  it('stdout and stderr interleave as they arrive', async () => {
    const r = await runCommand([node, '-e', "process.stdout.write('out1\\n'); setTimeout(() => { process.stderr.write('err2\\n'); setTimeout(() => process.stdout.write('out3\\n'), 50); }, 50)"], live());
    assert.equal(r.record.outputTail, 'out1\nerr2\nout3\n');
  });
  it('short output is kept whole, without a marker', async () => {
    const r = await runCommand(['echo', 'hello'], live());
    assert.equal(r.record.outputTail, 'hello\n');
  });
});

describe('runCommand environment', () => {
  it('is HANDLER_ENV only: nothing of the agent’s environment leaks', async () => {
    process.env.PW_TEST_SECRET = 'hunter2';
    try {
      const r = await runCommand(['env'], live());
      const seen = Object.fromEntries(r.record.outputTail.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
      // handlerEnv(): HANDLER_ENV, plus a proxy only if this test runs behind one.
      assert.deepEqual(seen, handlerEnv());
      assert.equal(seen.PW_TEST_SECRET, undefined);
      assert.equal(seen.DEBIAN_FRONTEND, 'noninteractive');
    } finally {
      delete process.env.PW_TEST_SECRET;
    }
  });

  it('passes on the proxy variables the agent was started with, and nothing else', async () => {
    process.env.https_proxy = 'http://proxy.example:3128';
    process.env.PW_TEST_SECRET = 'hunter2';
    try {
      const r = await runCommand(['env'], live());
      const seen = Object.fromEntries(r.record.outputTail.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
      assert.deepEqual(seen, { ...HANDLER_ENV, https_proxy: 'http://proxy.example:3128' });
    } finally {
      delete process.env.https_proxy;
      delete process.env.PW_TEST_SECRET;
    }
  });
});

describe('runCommand missing programs', () => {
  it('not on PATH: notFound, no throw', async () => {
    const r = await runCommand(['pw-no-such-program'], live());
    assert.equal(r.notFound, true);
    assert.equal(r.record.exitCode, null);
  });
  it('inside a chroot that lacks it: chroot exit 127, notFound', { skip: process.getuid?.() !== 0 ? 'chroot needs root' : false }, async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'pw-empty-root-'));
    t.after(() => rm(root, { recursive: true, force: true }));
    const r = await runCommand(['systemctl', 'reboot'], { ...live(), root });
    assert.deepEqual(r.record.argv, ['chroot', root, 'systemctl', 'reboot']);
    assert.equal(r.record.exitCode, 127);
    assert.equal(r.notFound, true);
  });
});

describe('commandArgv', () => {
  const cases: [string, string[], string[]][] = [
    ['/', ['apt-get', 'update'], ['apt-get', 'update']],
    ['/srv/img', ['apt-get', 'update'], ['chroot', '/srv/img', 'apt-get', 'update']],
  ];
  for (const [root, argv, want] of cases) {
    it(`${root}: ${argv.join(' ')}`, () => {
      assert.deepEqual(commandArgv(argv, root), want);
    });
  }
});

describe('findProgram in a root', () => {
  it('follows an absolute symlink inside the root (/usr/bin/yum -> /usr/bin/dnf-3), ignores directories and non-executables', async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'pw-find-root-'));
    t.after(() => rm(root, { recursive: true, force: true }));
    await mkdir(join(root, 'usr/bin'), { recursive: true });
    await mkdir(join(root, 'usr/sbin/zypper'), { recursive: true });
    await writeFile(join(root, 'usr/bin/dnf-3'), '#!/usr/bin/python3\n');
    await chmod(join(root, 'usr/bin/dnf-3'), 0o755);
    await symlink('/usr/bin/dnf-3', join(root, 'usr/bin/yum'));
    await writeFile(join(root, 'usr/bin/apk'), 'not executable');
    assert.equal(await findProgram(root, 'yum'), '/usr/bin/yum');
    assert.equal(await findProgram(root, 'dnf-3'), '/usr/bin/dnf-3');
    assert.equal(await findProgram(root, 'zypper'), null);
    assert.equal(await findProgram(root, 'apk'), null);
    assert.equal(await findProgram(root, 'dpkg'), null);
  });
  it('this Debian host has dpkg and apt-get', async () => {
    assert.notEqual(await findProgram('/', 'dpkg'), null);
    assert.notEqual(await findProgram('/', 'apt-get'), null);
  });
});
