/**
 * One WebSocket connection to the collector, seen as a queue of validated messages.
 *
 * Everything the collector sends is checked with CollectorMessageSchema before the agent
 * looks at it; a frame that is not JSON or not a known message closes the connection
 * with 4000 (the collector cannot be trusted to be speaking our protocol any more).
 * Whatever ends the connection (an `error` message, a close frame, a dead TCP
 * connection, a timeout) rejects the pending and all later `next()` calls with one
 * ProtocolError that carries the collector's own code when it sent one, so callers
 * branch on `code` and `closeCode`, never on text.
 */
import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import WebSocket from 'ws';
import { CLOSE, ProtocolError } from '../../shared/errors.ts';
import { type AgentMessage, type CollectorMessage, CollectorMessageSchema } from '../../shared/protocol.ts';

/** The collector's messages are small (acks, errors of at most 4 KiB); a bigger frame is not one of them. */
export const AGENT_MAX_PAYLOAD = 1024 * 1024;
/** What to call a close that came without an `error` message first (a proxy, a collector that only closed). */
const CLOSE_CODES: Record<number, string> = {
  [CLOSE.protocol]: 'PW_ERR_PROTOCOL',
  [CLOSE.unauthenticated]: 'PW_ERR_UNAUTHENTICATED',
  [CLOSE.revoked]: 'PW_ERR_AGENT_REVOKED',
  [CLOSE.tokenRefused]: 'PW_ERR_TOKEN_REFUSED',
  [CLOSE.version]: 'PW_ERR_PROTOCOL_VERSION',
  [CLOSE.timeout]: 'PW_ERR_HANDSHAKE_TIMEOUT',
  [CLOSE.tooBig]: 'PW_ERR_INPUT_TOO_LARGE',
};
/** After an `error` message the collector closes at once; wait this long for the close code. */
const ERROR_CLOSE_WAIT_MS = 2000;

export interface ConnectOptions {
  url: string;
  /** Extra CA certificates (PEM) trusted besides the system's, for a collector with a private CA. */
  ca?: string | Buffer;
  maxPayload?: number;
  /** TCP + TLS + HTTP upgrade. */
  openTimeoutMs?: number;
}

export async function readCaFile(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return undefined;
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new ProtocolError(`cannot read the CA file ${file}: ${(err as Error).message}`, 'PW_ERR_CONNECT', 1006, { cause: err });
  }
}

function malformed(message: string): ProtocolError {
  return new ProtocolError(message, 'PW_ERR_MALFORMED_INPUT', CLOSE.protocol);
}

interface Waiter {
  resolve: (m: CollectorMessage) => void;
  reject: (e: ProtocolError) => void;
  timer: NodeJS.Timeout | undefined;
}

export class CollectorConnection {
  readonly url: string;
  private readonly ws: WebSocket;
  private readonly queue: CollectorMessage[] = [];
  private waiter: Waiter | null = null;
  private failure: ProtocolError | null = null;
  private lastError: { code: string; message: string } | null = null;
  private errorTimer: NodeJS.Timeout | undefined;
  private resolveClosed!: (err: ProtocolError) => void;
  /** Resolves (never rejects) with the error that ended the connection. */
  readonly closed: Promise<ProtocolError>;
  /** Whether the collector ended the connection (an `error` message or its close frame), not us or the network. */
  endedByCollector = false;
  /** Date.now() of the last frame of any kind from the collector (messages, pings, pongs). */
  lastHeard = Date.now();
  /**
   * Instructions come whenever the collector has one, between acks; they go here instead
   * of to next(). Unset (before welcome), one is refused as out of order.
   */
  onInstruction: ((msg: Extract<CollectorMessage, { type: 'instruction' }>) => void) | null = null;

  private constructor(url: string, ws: WebSocket) {
    this.url = url;
    this.ws = ws;
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    ws.on('message', (data, isBinary) => {
      this.lastHeard = Date.now();
      this.onFrame(data, isBinary);
    });
    ws.on('ping', () => {
      this.lastHeard = Date.now();
    });
    ws.on('pong', () => {
      this.lastHeard = Date.now();
    });
    ws.on('close', (code, reason) => {
      this.onClose(code, reason.toString('utf8'));
    });
    // Frames over maxPayload, bad UTF-8, a reset TCP connection: ws closes the socket
    // itself and 'close' follows; without this listener the error would crash the agent.
    ws.on('error', (err: Error & { code?: string }) => {
      this.failure ??= new ProtocolError(`connection to ${url} failed: ${err.message}`, err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'PW_ERR_INPUT_TOO_LARGE' : 'PW_ERR_CONNECTION_CLOSED', 1006, { cause: err });
    });
  }

  /** Connects; rejects with PW_ERR_CONNECT (close code 1006) when no WebSocket could be opened. */
  static open(options: ConnectOptions): Promise<CollectorConnection> {
    const { url } = options;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, {
        maxPayload: options.maxPayload ?? AGENT_MAX_PAYLOAD,
        handshakeTimeout: options.openTimeoutMs ?? 30_000,
        // `ca` replaces Node's trusted roots; a private CA is trusted in addition to them.
        ...(options.ca === undefined ? {} : { ca: [...rootCertificates, options.ca.toString()] }),
        // The collector refuses compression (a small deflated frame can inflate past every limit).
        perMessageDeflate: false,
        followRedirects: false,
      });
      const fail = (message: string, cause?: unknown): void => {
        ws.removeAllListeners();
        ws.on('error', () => undefined);
        ws.terminate();
        reject(new ProtocolError(`cannot connect to the collector at ${url}: ${message}`, 'PW_ERR_CONNECT', 1006, { cause }));
      };
      ws.once('open', () => {
        ws.removeAllListeners();
        resolve(new CollectorConnection(url, ws));
      });
      ws.once('unexpected-response', (_req, res) => {
        fail(`HTTP ${res.statusCode ?? '?'} ${res.statusMessage ?? ''}`.trim() + ' instead of a WebSocket (is the path /v1/agent?)');
      });
      ws.once('error', (err: Error & { code?: string }) => {
        fail(err.code === undefined ? err.message : `${err.message} (${err.code})`, err);
      });
    });
  }

  /** The next message, validated; rejects when the connection ends or nothing comes within `timeoutMs`. */
  next(timeoutMs: number): Promise<CollectorMessage> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.failure !== null && this.ws.readyState === WebSocket.CLOSED) return Promise.reject(this.failure);
    if (this.waiter !== null) return Promise.reject(new Error('next() is already waiting'));
    return new Promise((resolve, reject) => {
      const timer =
        timeoutMs > 0 && Number.isFinite(timeoutMs)
          ? setTimeout(() => {
              this.waiter = null;
              const err = new ProtocolError(`the collector did not answer within ${timeoutMs} ms`, 'PW_ERR_TIMEOUT', CLOSE.timeout);
              this.abort(err);
              reject(err);
            }, timeoutMs)
          : undefined;
      this.waiter = { resolve, reject, timer };
    });
  }

  /** Resolves once the frame is handed to the kernel; rejects if the socket is closed. */
  send(message: AgentMessage | string): Promise<void> {
    const text = typeof message === 'string' ? message : JSON.stringify(message);
    return new Promise((resolve, reject) => {
      if (this.ws.readyState !== WebSocket.OPEN) {
        reject(this.failure ?? new ProtocolError('the connection to the collector is closed', 'PW_ERR_CONNECTION_CLOSED', 1006));
        return;
      }
      // ws passes null, not undefined, on success (its types say undefined).
      this.ws.send(text, (err?: Error | null) => {
        if (err instanceof Error) reject(this.failure ?? new ProtocolError(`sending to the collector failed: ${err.message}`, 'PW_ERR_CONNECTION_CLOSED', 1006, { cause: err }));
        else resolve();
      });
    });
  }

  ping(): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.ping();
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Ends the connection with our own close code (1000 normal, 1001 going away, 4xxx on a collector fault). */
  close(code = 1000, reason = ''): void {
    this.failure ??= new ProtocolError(`closed by the agent${reason === '' ? '' : `: ${reason}`}`, 'PW_ERR_CONNECTION_CLOSED', code);
    if (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) {
      this.ws.close(code, reason);
      // A collector that never answers the close frame must not hold the agent for ws's 30 s.
      setTimeout(() => {
        this.ws.terminate();
      }, 2000).unref();
    }
  }

  /** Drops the TCP connection at once (a dead peer, a timeout). */
  terminate(): void {
    this.ws.terminate();
  }

  private abort(err: ProtocolError): void {
    this.failure ??= err;
    this.close(err.closeCode ?? CLOSE.protocol, err.code);
  }

  private onFrame(data: WebSocket.RawData, isBinary: boolean): void {
    if (this.failure !== null) return;
    if (isBinary) {
      this.abort(malformed('the collector sent a binary frame; the protocol is JSON text frames'));
      return;
    }
    const text = (Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer)).toString('utf8');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      this.abort(malformed(`the collector sent a frame that is not JSON: ${(err as Error).message}`));
      return;
    }
    const parsed = CollectorMessageSchema.safeParse(json);
    if (!parsed.success) {
      const issues = parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(message)'}: ${i.message}`);
      this.abort(malformed(`the collector sent a message that is not in the protocol: ${issues.join('; ')}`));
      return;
    }
    const msg = parsed.data;
    if (msg.type === 'error') {
      // The close frame with its code follows; report both together. A collector that
      // sends an error and keeps the connection open is closed by us after a moment.
      this.lastError = { code: msg.code, message: msg.message };
      this.errorTimer = setTimeout(() => {
        this.abort(new ProtocolError(`the collector refused: ${msg.message}`, msg.code, CLOSE.protocol));
      }, ERROR_CLOSE_WAIT_MS);
      return;
    }
    if (msg.type === 'instruction') {
      if (this.onInstruction === null) this.abort(malformed('the collector sent an instruction before welcome'));
      else this.onInstruction(msg);
      return;
    }
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      clearTimeout(w.timer);
      w.resolve(msg);
    } else {
      this.queue.push(msg);
    }
  }

  private onClose(code: number, reason: string): void {
    clearTimeout(this.errorTimer);
    let err: ProtocolError;
    this.endedByCollector = this.lastError !== null || (this.failure === null && code !== 1006);
    if (this.lastError !== null) {
      err = new ProtocolError(`the collector refused: ${this.lastError.message}`, this.lastError.code, code);
    } else if (this.failure !== null) {
      err = this.failure.closeCode === code || code === 1006 ? this.failure : new ProtocolError(this.failure.message, this.failure.code, code, { cause: this.failure });
    } else {
      const name = CLOSE_CODES[code] ?? 'PW_ERR_CONNECTION_CLOSED';
      err = new ProtocolError(`the collector closed the connection (${code}${reason === '' ? '' : ` ${reason}`})`, name, code);
    }
    this.failure = err;
    const w = this.waiter;
    this.waiter = null;
    if (w !== null) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.resolveClosed(err);
  }
}
