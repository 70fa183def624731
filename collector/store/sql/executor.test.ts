import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { startPostgres } from '../../../shared/testing/postgres.ts';
import { needs, TOOLS } from '../../../shared/testing/system-tools.ts';
import type { SqlDatabase } from './executor.ts';
import { PostgresDatabase } from './postgres.ts';
import { numberPlaceholders, sql } from './query.ts';
import { SqliteDatabase } from './sqlite.ts';

describe('numberPlaceholders', () => {
  const cases: [string, string, string][] = [
    ['parameters in order', 'SELECT a FROM t WHERE a = ? AND b > ?', 'SELECT a FROM t WHERE a = $1 AND b > $2'],
    ['a ? in a string literal is text', "SELECT 'what?' FROM t WHERE a = ?", "SELECT 'what?' FROM t WHERE a = $1"],
    ['a doubled quote does not end the literal', "SELECT 'it''s ?' WHERE a = ?", "SELECT 'it''s ?' WHERE a = $1"],
    ['a quoted identifier', 'SELECT "odd?name" FROM t WHERE a = ?', 'SELECT "odd?name" FROM t WHERE a = $1'],
    ['a line comment', 'SELECT 1 -- why?\nWHERE a = ?', 'SELECT 1 -- why?\nWHERE a = $1'],
    ['a block comment', 'SELECT /* ? */ a WHERE a = ?', 'SELECT /* ? */ a WHERE a = $1'],
    ['an unterminated literal stays as it is', "SELECT 'open ?", "SELECT 'open ?"],
    ['no parameters', 'SELECT 1', 'SELECT 1'],
  ];
  for (const [name, input, expected] of cases) {
    test(name, () => {
      assert.equal(numberPlaceholders(input), expected);
    });
  }

  test('a query has one name per PostgreSQL text, and each dialect its own text', () => {
    const both = sql('SELECT a FROM t WHERE a = ?');
    assert.equal(both.sqlite, 'SELECT a FROM t WHERE a = ?');
    assert.equal(both.postgres, 'SELECT a FROM t WHERE a = $1');
    assert.equal(sql('SELECT a FROM t WHERE a = ?').name, both.name);
    assert.notEqual(sql('SELECT b FROM t WHERE a = ?').name, both.name);
    const split = sql({ sqlite: 'SELECT max(a, ?) FROM t', postgres: 'SELECT greatest(a, ?) FROM t' });
    assert.equal(split.sqlite, 'SELECT max(a, ?) FROM t');
    assert.equal(split.postgres, 'SELECT greatest(a, $1) FROM t');
  });
});

test('SQLite keeps one statement per SQLite text, even where two queries share their PostgreSQL text', async () => {
  const db = new SqliteDatabase(new Database(':memory:'));
  const one = sql({ sqlite: 'SELECT 1 AS v', postgres: 'SELECT v FROM same' });
  const two = sql({ sqlite: 'SELECT 2 AS v', postgres: 'SELECT v FROM same' });
  assert.equal(one.name, two.name);
  assert.deepEqual([await db.get(one), await db.get(two)], [{ v: 1 }, { v: 2 }]);
  await assert.rejects(db.get(sql({ postgres: 'SELECT pg_backend_pid()' })), /PostgreSQL-only statement on SQLite/);
  await db.close();
});

const CREATE = 'CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL)';
const insert = sql('INSERT INTO notes (id, body) VALUES (?, ?)');
const byId = sql('SELECT id, body FROM notes WHERE id = ?');
const everything = sql('SELECT id, body FROM notes ORDER BY id');
const count = sql("SELECT count(*) AS n, 'really?' AS q FROM notes");
const rename = sql('UPDATE notes SET body = ? WHERE id > ?');
const withReturning = sql('DELETE FROM notes WHERE id = ? RETURNING id');

/** The same behaviour asked of both engines. */
function behaviour(name: string, open: () => Promise<SqlDatabase>, skip: string | false): void {
  describe(`${name}: the shared executor`, { skip }, () => {
    let db: SqlDatabase;
    before(async () => {
      db = await open();
    });
    after(() => db.close());

    test('runs, reads one row, reads all, counts as a number, and says how many rows changed', async () => {
      await db.run(sql('DELETE FROM notes'));
      assert.equal(await db.run(insert, [1, 'one']), 1);
      assert.equal(await db.run(insert, [2, "two's"]), 1);
      assert.deepEqual(await db.get(byId, [2]), { id: 2, body: "two's" });
      assert.equal(await db.get(byId, [9]), undefined);
      assert.deepEqual(await db.all(everything), [
        { id: 1, body: 'one' },
        { id: 2, body: "two's" },
      ]);
      assert.deepEqual(await db.get(count), { n: 2, q: 'really?' });
      assert.equal(await db.run(rename, ['x', 0]), 2);
      assert.equal(await db.run(withReturning, [1]), 1);
      assert.equal(await db.run(withReturning, [1]), 0);
    });

    test('a transaction commits what it did when it resolves', async () => {
      await db.run(sql('DELETE FROM notes'));
      const got = await db.transaction(async (tx) => {
        await tx.run(insert, [10, 'ten']);
        return tx.get<{ body: string }>(byId, [10]);
      });
      assert.deepEqual(got, { id: 10, body: 'ten' });
      assert.deepEqual(await db.get(byId, [10]), { id: 10, body: 'ten' });
    });

    test('a transaction that rejects leaves nothing behind and passes its error on', async () => {
      await db.run(sql('DELETE FROM notes'));
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.run(insert, [20, 'twenty']);
          throw new Error('changed my mind');
        }),
        /changed my mind/,
      );
      assert.equal(await db.get(byId, [20]), undefined);
      // A constraint error inside is the same: the first row goes with it.
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.run(insert, [21, 'a']);
          await tx.run(insert, [21, 'b']);
        }),
      );
      assert.equal(await db.get(byId, [21]), undefined);
      // And the database is usable afterwards.
      assert.equal(await db.run(insert, [22, 'fine']), 1);
    });

    test('a savepoint that rejects rolls back alone, even after a constraint error; the transaction goes on and commits', async () => {
      await db.run(sql('DELETE FROM notes'));
      await db.transaction(async (tx) => {
        await tx.run(insert, [30, 'kept']);
        await assert.rejects(
          tx.savepoint(async () => {
            await tx.run(insert, [31, 'dropped']);
            // On PostgreSQL a failed statement aborts the whole transaction unless a savepoint holds it.
            await tx.run(insert, [30, 'duplicate']);
          }),
        );
        const inner = await tx.savepoint(async () => {
          await tx.run(insert, [32, 'kept too']);
          return tx.savepoint(() => tx.run(insert, [33, 'nested']));
        });
        assert.equal(inner, 1);
      });
      assert.deepEqual(await db.all(everything), [
        { id: 30, body: 'kept' },
        { id: 32, body: 'kept too' },
        { id: 33, body: 'nested' },
      ]);
    });

    test('a transaction handle kept past its end refuses statements', async () => {
      let kept: Parameters<Parameters<SqlDatabase['transaction']>[0]>[0] | undefined;
      await db.transaction(async (tx) => {
        kept = tx;
        await Promise.resolve();
      });
      await assert.rejects(kept!.get(byId, [1]), /transaction that has ended/);
    });

    test('statements outside a transaction are not part of it, even while it waits', async () => {
      await db.run(sql('DELETE FROM notes'));
      const tx = db.transaction(async (t) => {
        await t.run(insert, [30, 'in the transaction']);
        await sleep(50);
        throw new Error('rolled back');
      });
      // Issued while the transaction is open; on SQLite it waits for the end, on PostgreSQL
      // it runs on another connection. Either way the rollback does not take it.
      const outside = db.run(insert, [31, 'outside']);
      await assert.rejects(tx, /rolled back/);
      await outside;
      assert.deepEqual(await db.all(everything), [{ id: 31, body: 'outside' }]);
    });

    test('transactions started together both commit, one after the other or side by side', async () => {
      await db.run(sql('DELETE FROM notes'));
      await Promise.all(
        [40, 41, 42].map((id) =>
          db.transaction(async (tx) => {
            await tx.run(insert, [id, 'a']);
            await sleep(10);
            await tx.run(rename, ['b', id - 1]);
          }),
        ),
      );
      assert.deepEqual((await db.all<{ id: number }>(everything)).map((r) => r.id), [40, 41, 42]);
    });
  });
}

/** `db`, whose close() also removes what the test made for it (its file, its cluster). */
function closingAlso(db: SqlDatabase, cleanup: () => Promise<void>): SqlDatabase {
  return {
    dialect: db.dialect,
    get: db.get.bind(db),
    all: db.all.bind(db),
    run: db.run.bind(db),
    transaction: db.transaction.bind(db),
    close: async () => {
      await db.close();
      await cleanup();
    },
  };
}

behaviour(
  'SQLite',
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'pw-sql-'));
    const raw = new Database(join(dir, 'notes.db'));
    raw.exec(CREATE);
    const removeDir = (): Promise<void> => {
      rmSync(dir, { recursive: true, force: true });
      return Promise.resolve();
    };
    return Promise.resolve(closingAlso(new SqliteDatabase(raw), removeDir));
  },
  false,
);

describe('PostgreSQL: a transaction that lost to a concurrent one', { skip: needs(TOOLS.postgres) }, () => {
  test('is run again, and a real conflict is still passed on', async (t) => {
    const cluster = await startPostgres();
    t.after(() => cluster.stop());
    const db = new PostgresDatabase({ url: cluster.url, max: 4 });
    t.after(() => db.close());
    await db.runScript(CREATE);
    // Both read "not there" before either inserts; the loser's insert meets the winner's
    // committed row (23505), and its second run reads it and inserts nothing.
    let runs = 0;
    const storeOnce = (id: number) =>
      db.transaction(async (tx) => {
        runs++;
        const there = await tx.get(byId, [id]);
        await sleep(30);
        if (there === undefined) await tx.run(insert, [id, `by ${runs}`]);
      });
    await Promise.all([storeOnce(1), storeOnce(1)]);
    assert.equal(runs, 3);
    assert.equal((await db.all(everything)).length, 1);
    // A duplicate of a committed row conflicts at every run: refused in the end, with its code.
    await assert.rejects(db.transaction((tx) => tx.run(insert, [1, 'again'])), { code: '23505' });
  });
});

behaviour(
  'PostgreSQL',
  async () => {
    const cluster = await startPostgres();
    const db = new PostgresDatabase({ url: cluster.url, max: 4 });
    await db.runScript(CREATE);
    return closingAlso(db, () => cluster.stop());
  },
  needs(TOOLS.postgres),
);
