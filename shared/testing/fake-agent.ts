/**
 * A test agent that speaks the wire protocol with a real ws client and real ed25519 keys,
 * one frame at a time as a test drives it. Tests and benches only; the real agent is
 * agent/daemon, which these tests do not wait for.
 */
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { inventoryHash, packageSetHash } from '../inventory-hash.ts';
import { type CollectorMessage, CollectorMessageSchema, type Inventory, PROTOCOL_VERSION } from '../protocol.ts';
import { generateKeyPair, type KeyPair } from '../signing.ts';
import { type EnrollMessage, enrollMessage, fullReport, type HelloMessage, helloMessage, packageSetReport, unchangedReport } from '../messages.ts';

export type Close = { code: number; reason: string };

/** See TestAgent.listen. `binary`: a binary frame came (without it, one throws: the collector sends text only). */
export interface Listener {
  message(m: CollectorMessage): void;
  binary?(): void;
}

export class TestAgent {
  readonly ws: WebSocket;
  readonly #queue: CollectorMessage[] = [];
  readonly #waiters: ((m: CollectorMessage | Close) => void)[] = [];
  #listener: Listener | null = null;
  readonly closed: Promise<Close>;
  #close: Close | undefined;
  /** Every frame the collector sent, as text (binary frames as `<binary>`). */
  readonly received: string[] = [];

  private constructor(ws: WebSocket) {
    this.ws = ws;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.#close = { code, reason: reason.toString('utf8') };
        for (const w of this.#waiters.splice(0)) w(this.#close);
        resolve(this.#close);
      });
    });
    ws.on('error', () => undefined);
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        this.received.push('<binary>');
        if (this.#listener?.binary === undefined) throw new Error('the collector sent a binary frame');
        this.#listener.binary();
        return;
      }
      const text = (data as Buffer).toString('utf8');
      this.received.push(text);
      // The collector's messages are checked like the real agent checks them: a collector
      // sending something off the contract fails the test here.
      const msg = CollectorMessageSchema.parse(JSON.parse(text));
      if (this.#listener !== null) {
        this.#listener.message(msg);
        return;
      }
      const w = this.#waiters.shift();
      if (w !== undefined) w(msg);
      else this.#queue.push(msg);
    });
  }

  /**
   * `localAddress`: the loopback address to connect from (127.0.0.2 looks like another
   * host to the collector). `zeroMask`: frames go out unmasked-in-effect, so a big Buffer
   * sent on many connections is never copied (ws skips masking for a zero key).
   */
  static connect(url: string, options: { autoPong?: boolean; maxPayload?: number; localAddress?: string; zeroMask?: boolean } = {}): Promise<TestAgent> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, {
        autoPong: options.autoPong ?? true,
        maxPayload: options.maxPayload ?? 64 * 1024 * 1024,
        perMessageDeflate: false,
        ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
        ...(options.zeroMask === true ? { generateMask: (mask: Buffer) => mask.fill(0) } : {}),
      });
      const agent = new TestAgent(ws);
      ws.once('open', () => {
        resolve(agent);
      });
      ws.once('unexpected-response', (_req, res) => {
        reject(new Error(`HTTP ${res.statusCode ?? '?'} instead of a WebSocket`));
      });
      ws.once('error', reject);
    });
  }

  /**
   * From now on every message goes to `listener.message` as it arrives, the queued ones
   * first, instead of waiting for next(): for doubles that react to what the collector
   * sends (SimAgent answering instructions) rather than wait for it frame by frame.
   */
  listen(listener: Listener): void {
    this.#listener = listener;
    for (const m of this.#queue.splice(0)) listener.message(m);
  }

  /** The next message; rejects when the connection closes first or nothing comes in time. */
  next(timeoutMs = 5000): Promise<CollectorMessage> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#close !== undefined) return Promise.reject(new Error(`connection closed (${this.#close.code} ${this.#close.reason}) before a message came`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`no message within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.push((m) => {
        clearTimeout(timer);
        if ('type' in m) resolve(m);
        else reject(new Error(`connection closed (${m.code} ${m.reason}) before a message came`));
      });
    });
  }

  async expect<T extends CollectorMessage['type']>(type: T, timeoutMs = 5000): Promise<Extract<CollectorMessage, { type: T }>> {
    const m = await this.next(timeoutMs);
    if (m.type !== type) throw new Error(`expected ${type}, got ${JSON.stringify(m)}`);
    return m as Extract<CollectorMessage, { type: T }>;
  }

  send(msg: unknown): void {
    this.ws.send(JSON.stringify(msg));
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  /** The error message (if one came) and the close code of a refused connection. */
  async refusal(timeoutMs = 5000): Promise<{ error: { code: string; message: string } | null; close: Close }> {
    const timer = setTimeout(() => {
      this.ws.terminate();
    }, timeoutMs);
    const close = await this.closed;
    clearTimeout(timer);
    const errors = this.#queue.filter((m) => m.type === 'error');
    const last = errors[errors.length - 1];
    return { error: last === undefined ? null : { code: last.code, message: last.message }, close };
  }

  async challenge(): Promise<string> {
    return (await this.expect('challenge')).nonce;
  }

  /** Enrolls on this connection (challenge, enroll, enrolled, welcome). */
  async enroll(token: string, keys: KeyPair, opts: { hostname?: string; machineId?: string | null } = {}): Promise<{ agentId: string; collectorPublicKey: string }> {
    await this.challenge();
    this.send(enrollFrame(token, keys, opts));
    const enrolled = await this.expect('enrolled');
    await this.expect('welcome');
    return { agentId: enrolled.agentId, collectorPublicKey: enrolled.collectorPublicKey };
  }

  /** Proves the key on this connection; returns the hello it sent (for replay tests) and the welcome. */
  async hello(agentId: string, keys: KeyPair): Promise<{ sent: HelloMessage; welcome: Extract<CollectorMessage, { type: 'welcome' }> }> {
    const nonce = await this.challenge();
    const sent = helloFrame(nonce, agentId, keys);
    this.send(sent);
    return { sent, welcome: await this.expect('welcome') };
  }

  /** Sends a report; null inventory with `hash` means unchanged. */
  sendReport(inventory: Inventory | null, hash = inventory === null ? '' : inventoryHash(inventory), id: string = randomUUID()): string {
    this.send(inventory === null ? unchangedReport(hash, id) : fullReport(inventory, hash, id));
    return id;
  }

  /** Sends a report that names its package set instead of carrying it (protocol 1.1). */
  async reportByReference(inventory: Inventory, packageSet = packageSetHash(inventory.packages), id: string = randomUUID()): Promise<Extract<CollectorMessage, { type: 'ack' }>> {
    this.send(packageSetReport({ id, hash: inventoryHash(inventory) }, inventory, packageSet));
    const ack = await this.expect('ack');
    if (ack.id !== id) throw new Error(`ack for ${ack.id}, sent ${id}`);
    return ack;
  }

  async report(inventory: Inventory | null, hash?: string, id?: string): Promise<Extract<CollectorMessage, { type: 'ack' }>> {
    const sent = this.sendReport(inventory, hash, id);
    const ack = await this.expect('ack');
    if (ack.id !== sent) throw new Error(`ack for ${ack.id}, sent ${sent}`);
    return ack;
  }

  close(): Promise<Close> {
    if (this.#close === undefined) this.ws.close(1000);
    return this.closed;
  }
}

/** The enroll frame (shared/messages.ts) for `keys`, from a host named test-agent unless the test names one. */
export function enrollFrame(token: string, keys: KeyPair, opts: { hostname?: string; machineId?: string | null; protocol?: string } = {}): EnrollMessage {
  return enrollMessage({
    token,
    publicKey: keys.publicKey,
    hostname: opts.hostname ?? 'test-agent',
    machineId: opts.machineId ?? null,
    ...(opts.protocol === undefined ? {} : { protocol: opts.protocol }),
  });
}

/** The hello frame (shared/messages.ts) proving `keys` for `agentId` against `nonce`. */
export function helloFrame(nonce: string, agentId: string, keys: KeyPair, protocol: string = PROTOCOL_VERSION): HelloMessage {
  return helloMessage(nonce, agentId, keys.privateKeyPem, { protocol });
}

export function newKeys(): KeyPair {
  return generateKeyPair();
}
