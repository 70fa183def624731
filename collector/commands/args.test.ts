/**
 * An argument holding U+0000 is a usage error (main.ts: exit 2) before anything is opened:
 * the commands below write their arguments to the store, whose PostgreSQL `text` cannot hold
 * it. In process, since execve (and so the real CLI) cannot pass such an argument at all.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it, type TestContext } from 'node:test';
import { openDatabase } from '../store/db.ts';
import { apiTokenCommand } from './api-token.ts';
import { parse } from './args.ts';
import { exceptionCommand } from './exception.ts';
import { tokenCommand } from './token.ts';

type Command = (argv: string[], io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream }) => Promise<number>;

const sink = (): Writable =>
  new Writable({
    write(_chunk, _encoding, done) {
      done();
    },
  });

async function tempDb(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-args-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return join(dir, 'c.db');
}

/** Each command that writes an argument to the store, the table it writes, and its argv with `v` where the free text goes. */
const CASES: { name: string; command: Command; table: string; argv: (db: string, v: (text: string) => string) => string[] }[] = [
  {
    name: 'exception add --reason',
    command: exceptionCommand,
    table: 'exceptions',
    argv: (db, v) => ['add', '--db', db, '--advisory', 'ALSA-2025:1', '--fleet-wide', '--owner', 'sec', '--reason', v('behind the WAF'), '--expires', '2099-01-01'],
  },
  { name: 'api-token create --name', command: apiTokenCommand, table: 'api_tokens', argv: (db, v) => ['create', '--db', db, '--name', v('ops'), '--role', 'viewer'] },
  { name: 'token create --note', command: tokenCommand, table: 'enrollment_tokens', argv: (db, v) => ['create', '--db', db, '--uses', '1', '--ttl', '1h', '--note', v('lab hosts')] },
];

describe('CLI arguments with U+0000', () => {
  for (const c of CASES) {
    it(`${c.name}: refused with PW_ERR_USAGE and nothing opened; without the NUL it is stored`, async (t) => {
      const db = await tempDb(t);
      const io = { stdout: sink(), stderr: sink() };
      for (const nul of [(s: string) => `${s}\u0000`, (s: string) => `\u0000${s}`, (s: string) => `${s.slice(0, 1)}\u0000${s.slice(1)}`]) {
        await assert.rejects(c.command(c.argv(db, nul), io), { code: 'PW_ERR_USAGE', message: /^argument \d+ contains U\+0000 \(NUL\)/ });
      }
      assert.equal(existsSync(db), false, 'the store was not even opened');
      assert.equal(await c.command(c.argv(db, (s) => s), io), 0);
      const conn = openDatabase(db);
      try {
        assert.equal((conn.prepare(`SELECT count(*) AS n FROM ${c.table}`).get() as { n: number }).n, 1);
      } finally {
        conn.close();
      }
    });
  }

  it('parse names the argument that holds it, option or positional', () => {
    const table: [string[], number][] = [
      [['--db', 'a\u0000'], 2],
      [['\u0000'], 1],
      [['--db', 'x', 'rest', 'more\u0000'], 4],
    ];
    for (const [argv, n] of table) {
      assert.throws(() => parse(argv, { db: { type: 'string' } }, true), { code: 'PW_ERR_USAGE', message: `argument ${n} contains U+0000 (NUL), which the store cannot hold` });
    }
    assert.equal(parse(['--db', 'x'], { db: { type: 'string' } }).values.db, 'x');
  });
});
