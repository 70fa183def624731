/**
 * Opaque page cursors: the keyset position and the filters it was issued for, signed with
 * HMAC-SHA256. A client cannot edit a position or reuse a cursor under other filters (it
 * would silently skip or repeat hosts); either is refused with PW_ERR_BAD_CURSOR. The key
 * lives in memory, so cursors do not outlive the collector process: a client whose
 * cursor is refused after a restart starts again from the first page.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { badCursor } from './errors.ts';

/** Far above any cursor we issue (a 253-byte host name and a uuid); longer input is refused unread. */
export const MAX_CURSOR_LENGTH = 1024;
const MAC_BYTES = 16;

export class CursorCodec {
  readonly #key: Buffer;

  constructor(key: Buffer = randomBytes(32)) {
    if (key.length < 16) throw new RangeError('a cursor key needs at least 16 bytes');
    this.#key = key;
  }

  #mac(scope: string, payload: string): Buffer {
    return createHmac('sha256', this.#key).update(scope).update('\0').update(payload).digest().subarray(0, MAC_BYTES);
  }

  /** `scope` names the listing and its filters; a cursor only decodes under the same scope. */
  encode(scope: string, position: unknown): string {
    const payload = Buffer.from(JSON.stringify(position), 'utf8').toString('base64url');
    return `${payload}.${this.#mac(scope, payload).toString('base64url')}`;
  }

  decode(scope: string, cursor: string): unknown {
    if (cursor.length > MAX_CURSOR_LENGTH) throw badCursor(`cursor is longer than ${MAX_CURSOR_LENGTH} characters`);
    const m = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(cursor);
    if (m === null) throw badCursor('cursor is not one this collector issued: start again from the first page');
    const [, payload = '', mac = ''] = m;
    const given = Buffer.from(mac, 'base64url');
    const want = this.#mac(scope, payload);
    if (given.length !== want.length || !timingSafeEqual(given, want)) {
      throw badCursor('cursor was not issued for this listing and these filters, was altered, or predates a collector restart: start again from the first page');
    }
    try {
      return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as unknown;
    } catch {
      throw badCursor('cursor is not one this collector issued: start again from the first page');
    }
  }
}
