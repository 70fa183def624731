/**
 * Host cursors that decode to something other than a host position are refused. These
 * rows were the store's own cursor tests (PW_ERR_MALFORMED_INPUT) until the store's one
 * host paging API took positions instead of cursor strings: the cursor a client can send
 * is the API's, and it is refused here with the API's code.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { CursorCodec } from './cursor.ts';
import { cursorScope, decodeHostCursor } from './query.ts';

describe('decodeHostCursor', () => {
  const codec = new CursorCodec();
  const scope = cursorScope('hosts', {});
  const rows: { name: string; cursor: () => string }[] = [
    { name: 'not-base64-json', cursor: () => 'not-base64-json' },
    { name: 'an object, signed', cursor: () => codec.encode(scope, { a: 1 }) },
    { name: 'two numbers, signed', cursor: () => codec.encode(scope, [1, 2]) },
  ];
  for (const r of rows) {
    it(`${r.name} is refused with PW_ERR_BAD_CURSOR`, () => {
      assert.throws(() => decodeHostCursor(codec, scope, r.cursor()), { code: 'PW_ERR_BAD_CURSOR' });
    });
  }

  it('a position it issued comes back', () => {
    const at: [string, string] = ['web-1', randomUUID()];
    assert.deepEqual(decodeHostCursor(codec, scope, codec.encode(scope, at)), at);
  });
});
