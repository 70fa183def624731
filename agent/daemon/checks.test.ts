import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { CheckScheduler, PACKAGE_DATABASES } from './checks.ts';
import { tempDir } from '../../shared/testing/daemon-fixtures.ts';

/** A dpkg admin directory with this host's real status file, for the real dpkg to rewrite. */
function dpkgAdminDir(t: { after: (fn: () => void) => void }): string {
  const dir = tempDir(t, 'pw-dpkg-');
  for (const d of ['updates', 'info', 'triggers']) mkdirSync(join(dir, d));
  copyFileSync('/var/lib/dpkg/status', join(dir, 'status'));
  writeFileSync(join(dir, 'available'), '');
  return dir;
}

/** A real dpkg write of the status file (temporary file + rename, as apt-get install does). */
function dpkgSetSelection(admindir: string, line: string): void {
  execFileSync('dpkg', [`--admindir=${admindir}`, '--set-selections'], { input: `${line}\n`, timeout: 30_000 });
}

function recorder(): { reasons: string[]; errors: string[]; run: (r: string) => Promise<void>; onError: (e: unknown, r: string) => void } {
  const reasons: string[] = [];
  const errors: string[] = [];
  return {
    reasons,
    errors,
    run: (r) => {
      reasons.push(r);
      return Promise.resolve();
    },
    onError: (e, r) => errors.push(`${r}: ${(e as Error).message}`),
  };
}

describe('CheckScheduler: package database watch', () => {
  it('three real dpkg status rewrites in a row give one check, after the database is quiet', async (t) => {
    const admin = dpkgAdminDir(t);
    const rec = recorder();
    const s = new CheckScheduler({ intervalMs: 3_600_000, debounceMs: 300, watch: [{ dir: admin, files: ['status'] }], ...rec });
    t.after(() => s.stop());
    s.start();
    assert.equal(s.watching, 1);
    for (const line of ['bash hold', 'bash install', 'dpkg hold']) dpkgSetSelection(admin, line);
    await sleep(100);
    assert.deepEqual(rec.reasons, [], 'still inside the quiet period');
    await sleep(600);
    await s.idle();
    assert.deepEqual(rec.reasons, [`${admin} changed`]);
  });

  it('files that are not the database (dpkg lock, available) trigger nothing', async (t) => {
    const admin = dpkgAdminDir(t);
    const rec = recorder();
    const s = new CheckScheduler({ intervalMs: 3_600_000, debounceMs: 50, watch: [{ dir: admin, files: ['status'] }], ...rec });
    t.after(() => s.stop());
    s.start();
    writeFileSync(join(admin, 'lock'), '');
    writeFileSync(join(admin, 'available'), 'Package: x\n');
    await sleep(300);
    assert.deepEqual(rec.reasons, []);
  });

  it('a database that keeps changing is checked at the latest maxWaitMs after its first change', async (t) => {
    const admin = dpkgAdminDir(t);
    const rec = recorder();
    const s = new CheckScheduler({ intervalMs: 3_600_000, debounceMs: 400, maxWaitMs: 600, watch: [{ dir: admin, files: null }], ...rec });
    t.after(() => s.stop());
    s.start();
    const start = Date.now();
    while (Date.now() - start < 1000) {
      writeFileSync(join(admin, 'status'), `changing ${Date.now()}\n`);
      await sleep(100);
    }
    await s.idle();
    assert.ok(rec.reasons.length >= 1, 'checked during a second of constant changes');
  });

  it('directories that do not exist (no rpm on Debian) are skipped without an error', (t) => {
    const errors: string[] = [];
    const s = new CheckScheduler({
      intervalMs: 3_600_000,
      watch: [{ dir: join(tempDir(t), 'absent'), files: null }],
      run: () => Promise.resolve(),
      onError: () => undefined,
      onWatchError: (dir) => errors.push(dir),
    });
    s.start();
    assert.equal(s.watching, 0);
    assert.deepEqual(errors, []);
    return s.stop();
  });

  it('the default targets include /var/lib/dpkg, which this Debian host has', async () => {
    const s = new CheckScheduler({ intervalMs: 3_600_000, run: () => Promise.resolve(), onError: () => undefined });
    s.start();
    assert.ok(PACKAGE_DATABASES.some((d) => d.dir === '/var/lib/dpkg'));
    assert.ok(s.watching >= 1);
    await s.stop();
  });
});

describe('CheckScheduler: timer and serialisation', () => {
  it('the timer triggers checks every intervalMs', async (t) => {
    const rec = recorder();
    const s = new CheckScheduler({ intervalMs: 100, watch: [], ...rec });
    t.after(() => s.stop());
    s.start();
    await sleep(550);
    await s.stop();
    assert.ok(rec.reasons.length >= 3 && rec.reasons.length <= 6, `${rec.reasons.length} checks`);
    assert.ok(rec.reasons.every((r) => r === 'timer'));
  });

  it('five triggers during a running check give exactly one more check, never two at once', async () => {
    let running = 0;
    let most = 0;
    const reasons: string[] = [];
    const s = new CheckScheduler({
      intervalMs: 3_600_000,
      watch: [],
      run: async (r) => {
        running++;
        most = Math.max(most, running);
        reasons.push(r);
        await sleep(100);
        running--;
      },
      onError: () => undefined,
    });
    s.trigger('first');
    for (let i = 0; i < 5; i++) s.trigger(`again ${i}`);
    await s.idle();
    assert.deepEqual(reasons, ['first', 'again 4']);
    assert.equal(most, 1);
    await s.stop();
  });

  it('a failing check goes to onError and the scheduler keeps going', async () => {
    const errors: string[] = [];
    let n = 0;
    const s = new CheckScheduler({
      intervalMs: 3_600_000,
      watch: [],
      run: () => (++n === 1 ? Promise.reject(new Error('dpkg-query timed out')) : Promise.resolve()),
      onError: (e, r) => errors.push(`${r}: ${(e as Error).message}`),
    });
    s.trigger('one');
    await s.idle();
    s.trigger('two');
    await s.idle();
    assert.deepEqual(errors, ['one: dpkg-query timed out']);
    assert.equal(n, 2);
    await s.stop();
  });

  it('after stop() triggers run nothing', async () => {
    const rec = recorder();
    const s = new CheckScheduler({ intervalMs: 3_600_000, watch: [], ...rec });
    await s.stop();
    s.trigger('late');
    await s.idle();
    assert.deepEqual(rec.reasons, []);
  });
});
