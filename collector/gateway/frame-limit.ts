/**
 * A frame size limit per connection, on ws 8 (pinned exactly in package.json).
 *
 * ws takes `maxPayload` per WebSocketServer, and checks it in its Receiver as soon as a
 * frame header has announced the payload length (`haveLength`: the running total of the
 * message's fragments against `this._maxPayload`), before one byte of the payload is
 * buffered. The check reads the field at every header, so changing it on a connection's
 * Receiver changes the limit for that connection's next frame. That is the only way to
 * refuse at the header with a limit that differs by connection state:
 *  - a second WebSocketServer for unauthenticated peers cannot hand the connection over
 *    after hello (the Receiver is made once, in setSocket);
 *  - checking `message` events is too late (the payload is buffered and joined by then);
 *  - parsing frame headers ourselves in front of ws would duplicate its frame parser.
 * The server is made with the small limit, so a connection is refused at the header
 * unless it has been raised; raising it is the one step taken after authentication.
 *
 * Both fields used here are private to ws. `assertFrameLimitSupported` checks them once at
 * start-up on ws's own Receiver, so a ws whose Receiver changed stops the collector with a
 * clear message instead of silently keeping the server-wide limit.
 */
import type { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import * as wsModule from 'ws';
import type WebSocket from 'ws';

interface ReceiverInternals extends EventEmitter {
  _maxPayload: number;
}

// @types/ws does not declare the Receiver that ws exports.
const { Receiver } = wsModule as unknown as { Receiver: new (options: { maxPayload: number }) => ReceiverInternals };

/** ws's code for a frame over the limit (close 1009), on the error its Receiver emits. */
export const WS_FRAME_TOO_LARGE = 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';

function receiverOf(ws: WebSocket): ReceiverInternals {
  const receiver = (ws as unknown as { _receiver?: ReceiverInternals })._receiver;
  if (receiver === undefined || typeof receiver._maxPayload !== 'number') throw new Error('this ws WebSocket has no Receiver with _maxPayload (is it connected? did ws change?)');
  return receiver;
}

/** Throws when the installed ws has no per-Receiver `_maxPayload` (see the module comment). */
export function assertFrameLimitSupported(): void {
  const probe = new Receiver({ maxPayload: 4321 });
  if (probe._maxPayload !== 4321) {
    throw new Error('ws Receiver has no _maxPayload: the per-connection frame limit cannot be applied with this ws version (package.json pins the one it was written for)');
  }
}

/** The largest frame (message) this connection's peer may send from its next frame header on. */
export function setFrameLimit(ws: WebSocket, bytes: number): void {
  if (!Number.isInteger(bytes) || bytes < 1) throw new RangeError(`a frame limit is a whole number of bytes from 1 (got ${bytes})`);
  receiverOf(ws)._maxPayload = bytes;
}

export function frameLimitOf(ws: WebSocket): number {
  return receiverOf(ws)._maxPayload;
}

/**
 * Calls `fn` when the peer announces a frame over the limit, before ws reacts: ws closes
 * with 1009 and no reason right after its Receiver's error, so this is the one moment the
 * collector can still send `error {code}` and close with its own reason first.
 *
 * ws then resumes the socket to read and drop whatever the peer still sends, up to the
 * length it announced: at loopback speed, 64 peers announcing 32 MiB each made the
 * collector read 2 GiB, and that churn alone grew its RSS by 45 MiB. The socket is paused
 * once ws is done instead (ws resumes it on the next tick, so the pause waits for the
 * event loop's next turn): the rest stays in the kernel, TCP flow control stops the peer,
 * and the caller's close deadline ends the connection.
 */
export function onFrameTooLarge(ws: WebSocket, socket: Duplex, fn: (err: Error) => void): void {
  receiverOf(ws).prependListener('error', (err: Error & { code?: string }) => {
    if (err.code !== WS_FRAME_TOO_LARGE) return;
    fn(err);
    setImmediate(() => {
      socket.pause();
    });
  });
}
