import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { atExit, OwnedChild, ownedTempDir } from './owned-child.ts';

const node = (code: string): OwnedChild => new OwnedChild(spawn(process.execPath, ['-e', code], { stdio: 'ignore' }));

describe('atExit', () => {
  it('one exit listener serves any number of hooks, and goes when the last is forgotten', () => {
    const before = process.listenerCount('exit');
    const forgets = Array.from({ length: 20 }, () => atExit(() => undefined));
    assert.equal(process.listenerCount('exit'), before + 1);
    for (const forget of forgets) forget();
    assert.equal(process.listenerCount('exit'), before);
  });
});

describe('OwnedChild', () => {
  it('says how a child that ends by itself ended', async () => {
    const c = node('process.exit(3)');
    assert.equal(await c.exited, 'exit 3');
    assert.equal(c.exit, 'exit 3');
    assert.equal(await c.stop(1000), 'exit 3', 'stop after the end only reports it');
  });

  it('stop: SIGTERM, and SIGKILL after the grace when SIGTERM is ignored', async () => {
    assert.equal(await node('setInterval(() => {}, 1000)').stop(5000), 'signal SIGTERM');
    const stubborn = node("process.on('SIGTERM', () => {}); setInterval(() => {}, 1000); process.stdout.write('')");
    // Give it time to install its handler, or SIGTERM ends it before it can ignore it.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await stubborn.stop(200), 'signal SIGKILL');
  });

  it('stop runs the given request instead of SIGTERM', async () => {
    const c = node('setInterval(() => {}, 1000)');
    let asked = 0;
    const exit = await c.stop(200, () => {
      asked++;
    });
    assert.equal(asked, 1);
    assert.equal(exit, 'signal SIGKILL');
  });

  it('a command that cannot start ends as spawn failed, without an unhandled error', async () => {
    const c = new OwnedChild(spawn('/nonexistent/patchwarden-no-such-binary', [], { stdio: 'ignore' }));
    assert.match(await c.exited, /^spawn failed: .*ENOENT/);
  });
});

describe('ownedTempDir', () => {
  it('remove() deletes the directory and what is in it', () => {
    const d = ownedTempDir('pw-owned-test-');
    writeFileSync(join(d.path, 'f'), 'x');
    assert.equal(existsSync(d.path), true);
    d.remove();
    assert.equal(existsSync(d.path), false);
  });
});
