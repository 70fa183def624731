/**
 * Every file the collector makes is 0600 whatever the umask (issue 10, defect 9): outside
 * systemd (UMask=0077) the database, its -wal and -shm, and the files carried to
 * air-gapped sites were 0644 under the usual umask 022.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { type Instruction, signInstruction } from '../shared/instructions.ts';
import { generateKeyPair } from '../shared/signing.ts';
import { dataPath } from '../shared/testing/data.ts';
import { exportInstructions } from './services/airgap/instruction-export.ts';
import { feedCommand } from './commands/feed.ts';
import { importFeedPath } from './services/feeds/store-import.ts';
import { createLogger } from './logger.ts';
import { createCollector } from './server.ts';
import { asyncAdvisories } from '../shared/testing/store-fixtures.ts';

describe('files the collector makes', () => {
  it('under umask 022: database, -wal, -shm, collector key, exported instruction files and feed bundle are all 0600', async (t) => {
    const umask = process.umask(0o022);
    const dir = await mkdtemp(join(tmpdir(), 'pw-modes-'));
    t.after(async () => {
      process.umask(umask);
      await rm(dir, { recursive: true, force: true });
    });
    const dbPath = join(dir, 'collector.db');
    const collector = await createCollector({ dbPath, listen: '127.0.0.1:0', logger: createLogger({ level: 'silent' }) });
    let closed = false;
    t.after(async () => {
      if (!closed) await collector.close();
    });
    await collector.store.tokens.create({ uses: 1, ttlMs: 60_000, createdBy: 'test' });
    const agentId = await collector.store.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: 'web-1', machineId: null, tokenId: null });
    const now = new Date();
    const i: Instruction = { schema: 'patchwarden.instruction/1', kind: 'refresh', id: randomUUID(), agentId, issuedAt: now.toISOString(), notBefore: now.toISOString(), expiresAt: new Date(now.getTime() + 3600_000).toISOString(), rolloutId: null, dryRun: false };
    const key = await readFile(join(dir, 'collector.key'), 'utf8');
    const signed = signInstruction(i, key);
    await collector.outbox.enqueue({ id: i.id, agentId, payload: signed.payload, signature: signed.signature, expiresAt: i.expiresAt, rolloutId: null }, now);
    const out = join(dir, 'carry');
    await mkdir(out, { mode: 0o700 });
    assert.equal((await exportInstructions({ store: collector.store, actor: 'cli:test', dir: out, key, now })).length, 1);
    await importFeedPath(asyncAdvisories(collector.sqlite!.db), dataPath('kev', 'known_exploited_vulnerabilities.json.gz'));
    const io = { stdout: new PassThrough(), stderr: new PassThrough() };
    assert.equal(await feedCommand(['export', '--db', dbPath, '--out', join(out, 'feeds.pwfeeds')], io), 0);

    const files = readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
    for (const f of ['collector.db', 'collector.db-wal', 'collector.db-shm', 'collector.key', 'carry/feeds.pwfeeds']) assert.ok(files.includes(f), `${f} in ${files.join(' ')}`);
    assert.ok(files.some((f) => f.startsWith('carry/') && f.endsWith('.pwinstr')));
    for (const f of files) assert.equal((statSync(join(dir, f)).mode & 0o777).toString(8), '600', f);
    closed = true;
    await collector.close();
  });
});
