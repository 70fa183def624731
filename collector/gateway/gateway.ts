/**
 * The agents' WebSocket endpoint (`/v1/agent`), on the collector's HTTP(S) server.
 *
 *   collector: challenge {nonce}                      (a fresh 32-byte nonce per connection)
 *   agent:     hello {agentId, signature}  -> welcome {heartbeatSeconds, inventoryHash}
 *          or  enroll {token, publicKey}   -> enrolled {agentId, collectorPublicKey}, welcome
 *   agent:     report {id, hash, inventory|null} -> ack {id, status}   (after the commit)
 *          or  report {id, hash, packageSet, inventory without packages}
 *                                               -> ack {id, stored | packages-unknown}
 *
 * Every frame is validated with the wire schemas before anything else looks at it; a frame
 * that fails, or a step out of order, gets `error {code}` and a 4xxx close, and nothing of
 * it is stored. One bad peer never affects the others: each connection's failures end
 * that connection only.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { type AgentRefusal, AgentRefusedError, CLOSE, ProtocolError } from '../../shared/errors.ts';
import { inventoryHash, packageSetRef } from '../../shared/inventory-hash.ts';
import type { InstructionResult } from '../../shared/instructions.ts';
import { ackMessage, challengeMessage, enrolledMessage, instructionMessage, welcomeMessage, wireError } from '../../shared/messages.ts';
import { acceptsProtocol, PROTOCOL_MAJOR } from '../../shared/protocol-version.ts';
import {
  AgentMessageSchema,
  type CollectorMessage,
  DEFAULT_MAX_MESSAGE_BYTES,
  type Inventory,
  PROTOCOL_VERSION,
} from '../../shared/protocol.ts';
import { helloPayload, verifyBytes } from '../../shared/signing.ts';
import type { Logger } from '../logger.ts';
import type { AsyncStore } from '../store/store.ts';
import type { IngestItem, IngestResult, PackageSetRef } from '../store/reports.ts';
import { assertFrameLimitSupported, onFrameTooLarge, setFrameLimit, WS_FRAME_TOO_LARGE } from './frame-limit.ts';
import { splitKnownPackageSet } from './known-set.ts';
import { assertFrameWithinPackageLimit, assertReportWithinPackageLimit } from './report-limit.ts';
import { addressKey, PendingHandshakes } from './pending.ts';

export const AGENT_PATH = '/v1/agent';

/**
 * Largest frame before hello or enroll is accepted. The largest enroll the schema allows is
 * about 1.2 KB (a 256-byte token, a 253-byte host name, a 64-character agent version with
 * every character JSON-escaped), a hello about 250 bytes: 4 KiB leaves room for both and
 * for fields a later minor version adds, and holds 64 strangers to 256 KiB, not 2 GiB.
 */
export const PRE_AUTH_MAX_PAYLOAD = 4096;

/** Connections one read of the outbox serves at most (its agent ids are one parameter). */
const DELIVERY_RUN = 1000;

/** Where the gateway finds instructions to send and puts their results (the rollout outbox). */
export interface InstructionChannel {
  /** Signed instructions for these agents that have no result yet and have not expired, oldest first. */
  pendingFor(agentIds: readonly string[], now: Date): Promise<readonly { id: string; agentId: string; payload: string; signature: string }[]>;
  markSent(ids: readonly string[], now: Date): Promise<void>;
  /** false when the instruction is unknown or another agent's (the result is logged, not stored). */
  recordResult(agentId: string, result: InstructionResult, now: Date): Promise<boolean>;
}

export interface GatewayOptions {
  /** Instructions for agents; without it the collector sends none and refuses results. */
  instructions?: InstructionChannel;
  /** The agents and their reports. */
  store: Pick<AsyncStore, 'kind' | 'agents' | 'reports'>;
  /** This collector among those sharing the store (services/replicas/duties.ts): the owner of the connection marks it writes. */
  replica: string;
  /** Sent in `enrolled`; the agent pins it to check the collector's signed instructions. */
  collectorPublicKey: string;
  logger: Logger;
  /** Called after a new inventory was committed and acknowledged (correlation). */
  onInventory?: (agentId: string, inventory: Inventory, contentHash: string) => void;
  /** Called per report: its ack status and the seconds from its arrival to the ack; `rejected` when it was refused. */
  onReport?: (status: 'stored' | 'unchanged' | 'duplicate' | 'packages-unknown' | 'rejected', seconds: number) => void;
  /** WebSocket ping interval, told to agents in `welcome`; no pong for two of them ends the connection. Default 30. */
  heartbeatSeconds?: number;
  /**
   * Time from the upgrade to a valid hello or enroll. As the first frame must be one of
   * them, this is also how long an idle upgrade holds a pending slot. Default 5 s (an
   * agent answers the challenge within one round trip).
   */
  handshakeTimeoutMs?: number;
  /** Largest frame an authenticated agent may send (a report); refused at the frame header with 1009 above it. Default DEFAULT_MAX_MESSAGE_BYTES (16 MiB). */
  maxPayload?: number;
  /** Largest frame before authentication; refused at the frame header with 1009 above it. Default PRE_AUTH_MAX_PAYLOAD (4 KiB). */
  preAuthMaxPayload?: number;
  /** Time a refused peer gets to answer our close frame before its socket is destroyed. Default 5 s. */
  closeGraceMs?: number;
  /**
   * Connections not yet authenticated, at most. When all are taken, a newcomer from a
   * source (IPv4 address, IPv6 /64) holding fewer than the busiest source closes that
   * source's oldest one; otherwise it is answered 503 at the upgrade. Default 1024.
   */
  maxPendingHandshakes?: number;
  /** Connections not yet authenticated from one source, at most; more are answered 503 at the upgrade. Default 256. */
  maxPendingPerAddress?: number;
  now?: () => Date;
}

export interface GatewayStats {
  connections: number;
  authenticated: number;
  enrolled: number;
  reports: { stored: number; unchanged: number; duplicate: number; 'packages-unknown': number };
  /** Full reports whose packages matched a set the store holds, so only the rest of the frame was parsed. */
  heldSetFrames: number;
  /**
   * Refusals by error code (PW_ERR_PROTOCOL, PW_ERR_INPUT_TOO_LARGE, ...), ws's own codes, `heartbeat-timeout`,
   * and at the upgrade `handshakes-full`, `handshakes-per-address` (answered 503) and `handshakes-evicted`
   * (a pending connection closed to make room).
   */
  refused: Record<string, number>;
}

interface Session {
  readonly id: number;
  readonly ws: WebSocket;
  /** The source its pending slot counts against (pending.ts). */
  readonly source: string;
  readonly nonce: string;
  log: Logger;
  agentId: string | null;
  closing: boolean;
  /** The frame being handled is a report (for the `rejected` count when it is refused). */
  reportPending: boolean;
  missedPongs: number;
  handshakeTimer: NodeJS.Timeout | undefined;
  /** Instruction ids sent on this connection (a reconnect sends the unanswered ones again). */
  sent: Set<string>;
  /**
   * Settles when the frames received so far are handled: each frame waits for the one
   * before it (hello before the report it authorizes), and the socket is paused meanwhile,
   * so a peer that floods frames is read no faster than they are handled.
   */
  handled: Promise<void>;
  /** Frames received and not yet handled. */
  queued: number;
}

/** A better-sqlite3 failure (disk full, I/O error, busy): the agent should retry later, it did nothing wrong. */
class StoreUnavailableError extends ProtocolError {
  constructor(cause: unknown) {
    super('the collector could not store this report; send it again later', 'PW_ERR_STORE', 1011, { cause });
  }
}

function protocolError(message: string): ProtocolError {
  return new ProtocolError(message, 'PW_ERR_PROTOCOL', CLOSE.protocol);
}

/** The close code of each store refusal: what the gateway sent when the store threw protocol errors itself. */
const REFUSAL_CLOSE: Readonly<Record<AgentRefusal, number>> = Object.freeze({
  'not-enrolled': CLOSE.unauthenticated,
  revoked: CLOSE.revoked,
  // The agent tells this one by its error code and sends its full inventory next (agent/daemon/agent.ts).
  'inventory-unknown': CLOSE.protocol,
  'already-enrolled': CLOSE.tokenRefused,
});

/** The refusal to send for an error met while handling a frame; undefined for a failure of the collector's own. */
export function asProtocolError(err: unknown): ProtocolError | undefined {
  if (err instanceof ProtocolError) return err;
  if (err instanceof AgentRefusedError) return new ProtocolError(err.message, err.code, REFUSAL_CLOSE[err.reason], { cause: err });
  return undefined;
}


export class Gateway {
  readonly #opts: Required<Omit<GatewayOptions, 'onInventory' | 'onReport' | 'instructions'>> & Pick<GatewayOptions, 'onInventory' | 'onReport' | 'instructions'>;
  readonly #wss: WebSocketServer;
  readonly #sessions = new Set<Session>();
  readonly #byAgent = new Map<string, Session>();
  readonly #pending: PendingHandshakes<Session>;
  readonly #heartbeat: NodeJS.Timeout;
  readonly #servers: (HttpServer | HttpsServer)[] = [];
  readonly #onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    this.#upgrade(req, socket, head);
  };
  #nextId = 1;
  #closed = false;
  /** Connections whose pending instructions are to be read: one read serves all of them (#deliverQueued). */
  readonly #toDeliver = new Set<Session>();
  /** The delivery run in progress, null when none is. */
  #delivering: Promise<void> | null = null;
  readonly stats: GatewayStats = { connections: 0, authenticated: 0, enrolled: 0, reports: { stored: 0, unchanged: 0, duplicate: 0, 'packages-unknown': 0 }, heldSetFrames: 0, refused: {} };

  constructor(options: GatewayOptions) {
    this.#opts = {
      heartbeatSeconds: 30,
      handshakeTimeoutMs: 5000,
      maxPayload: DEFAULT_MAX_MESSAGE_BYTES,
      preAuthMaxPayload: PRE_AUTH_MAX_PAYLOAD,
      closeGraceMs: 5000,
      maxPendingHandshakes: 1024,
      maxPendingPerAddress: 256,
      now: () => new Date(),
      ...options,
    };
    if (!Number.isInteger(this.#opts.heartbeatSeconds) || this.#opts.heartbeatSeconds < 1 || this.#opts.heartbeatSeconds > 3600) {
      throw new RangeError('heartbeatSeconds is a whole number from 1 to 3600');
    }
    for (const name of ['maxPayload', 'preAuthMaxPayload'] as const) {
      if (!Number.isInteger(this.#opts[name]) || this.#opts[name] < 1) throw new RangeError(`${name} is a whole number of bytes from 1`);
    }
    this.#pending = new PendingHandshakes({ total: this.#opts.maxPendingHandshakes, perAddress: this.#opts.maxPendingPerAddress });
    assertFrameLimitSupported();
    // Every connection starts with the pre-authentication limit, checked by ws at each frame
    // header (frame-limit.ts); #authenticated raises it to maxPayload. No compression: a
    // small compressed frame can inflate past every limit (a zip bomb).
    this.#wss = new WebSocketServer({ noServer: true, maxPayload: this.#opts.preAuthMaxPayload, perMessageDeflate: false, clientTracking: false });
    this.#heartbeat = setInterval(() => {
      this.#tick();
    }, this.#opts.heartbeatSeconds * 1000);
    this.#heartbeat.unref();
    // Whatever the last run left in the table, nobody is connected to a collector that
    // starts: done before the first frame is handled, so no new connection is undone by it.
    // Not on PostgreSQL, where the other replicas' agents are connected to them: each mark
    // names its replica, a stopping replica clears its own, and a dead one's are cleared by
    // the replica holding the housekeeping duty (store/replicas.ts).
    const stale = this.#opts.store.kind === 'postgres' ? Promise.resolve() : this.#opts.store.agents.markAllDisconnected();
    this.#ready = stale.then(
      () => undefined,
      (err: unknown) => {
        this.#opts.logger.error({ err }, 'could not mark the agents of the last run disconnected');
      },
    );
  }

  readonly #ready: Promise<void>;

  /** Serves agents on `path` of this server; other upgrade requests get 404. */
  attach(server: HttpServer | HttpsServer): void {
    server.on('upgrade', this.#onUpgrade);
    this.#servers.push(server);
  }

  get connectedAgents(): number {
    return this.#byAgent.size;
  }

  /** Connections upgraded and not yet authenticated, refused or closed. */
  get pendingHandshakes(): number {
    return this.#pending.size;
  }

  isConnected(agentId: string): boolean {
    return this.#byAgent.has(agentId);
  }

  /** The agents connected here now (their marks are written again after this replica was thought dead: store/replicas.ts). */
  connectedAgentIds(): string[] {
    return [...this.#byAgent.keys()];
  }

  /**
   * Each agent's connection marks are written in the order its connections came and went:
   * on PostgreSQL two statements on different pool connections could otherwise land the
   * other way round, and a reconnect's mark be cleared by the close of the connection it
   * replaced.
   */
  readonly #marks = new Map<string, Promise<void>>();

  #mark(agentId: string, write: () => Promise<unknown>): Promise<void> {
    const next = (this.#marks.get(agentId) ?? Promise.resolve()).then(async () => {
      await write();
    });
    // The chain goes on after a failure: each write reports its own.
    const settled = next.catch(() => undefined);
    this.#marks.set(agentId, settled);
    void settled.then(() => {
      if (this.#marks.get(agentId) === settled) this.#marks.delete(agentId);
    });
    return next;
  }

  /**
   * Marks written again from connectedAgentIds() (ReplicaLiveness) may name connections
   * that closed meanwhile, after their own clear had run: those are cleared now, in each
   * agent's order, unless the agent is connected here again by then.
   */
  async clearClosed(agentIds: readonly string[]): Promise<void> {
    const clear = async (agentId: string): Promise<void> => {
      if (!this.#byAgent.has(agentId)) await this.#opts.store.agents.markDisconnected(agentId, this.#opts.replica, this.#opts.now());
    };
    await Promise.all(
      agentIds
        .filter((id) => !this.#byAgent.has(id))
        .map((id) =>
          this.#mark(id, () => clear(id)).catch((err: unknown) => {
            this.#opts.logger.error({ err, agentId: id }, 'could not record the disconnection');
          }),
        ),
    );
  }

  /** Settles when every connection mark this gateway has begun is written (a closing collector clears its marks after them). */
  async marksWritten(): Promise<void> {
    while (this.#marks.size > 0) await Promise.all(this.#marks.values());
  }

  /** Ends an agent's connection (after a revocation through the API); false when it has none. */
  disconnect(agentId: string, error: ProtocolError): boolean {
    const s = this.#byAgent.get(agentId);
    if (s === undefined) return false;
    this.#refuse(s, error);
    return true;
  }

  /**
   * Sends the agent its pending instructions now, if it is connected (after a rollout
   * enqueued some); an offline agent gets them when it next connects.
   */
  deliverInstructions(agentId: string): void {
    const s = this.#byAgent.get(agentId);
    if (s !== undefined) this.#deliver(s);
  }

  /**
   * Queues the connection for the next delivery run. A burst of notifications or a reconnection wave costs a read of the
   * outbox per run, not per agent: per agent, 16,000 agents reconnecting to a replica queued
   * as many round trips in its pool, ahead of the instructions of the agents already there.
   */
  #deliver(s: Session): void {
    if (this.#opts.instructions === undefined || s.agentId === null || s.closing) return;
    this.#toDeliver.add(s);
    this.#delivering ??= this.#deliverQueued();
  }

  /** Delivery runs until nothing is queued; the connections queued while one reads wait for the next. */
  async #deliverQueued(): Promise<void> {
    for (;;) {
      // The rest of this event-loop turn's notifications and welcomes join the run.
      await new Promise<void>((resolve) => {
        setImmediate(resolve);
      });
      if (this.#toDeliver.size === 0) {
        this.#delivering = null;
        return;
      }
      const run = [...this.#toDeliver].slice(0, DELIVERY_RUN);
      for (const s of run) this.#toDeliver.delete(s);
      await this.#deliverRun(run);
    }
  }

  /** Never rejects: a failure is logged, and the instructions stay queued for the next connection or tick. */
  async #deliverRun(run: readonly Session[]): Promise<void> {
    const channel = this.#opts.instructions;
    if (channel === undefined) return;
    const byAgent = new Map<string, Session>();
    for (const s of run) if (s.agentId !== null && !s.closing) byAgent.set(s.agentId, s);
    if (byAgent.size === 0) return;
    const now = this.#opts.now();
    const sent: string[] = [];
    try {
      for (const entry of await channel.pendingFor([...byAgent.keys()], now)) {
        const s = byAgent.get(entry.agentId);
        // Closed or replaced while the outbox was read: its next connection is sent the entry.
        if (s === undefined || s.closing || s.sent.has(entry.id)) continue;
        s.sent.add(entry.id);
        this.#send(s, instructionMessage(entry));
        sent.push(entry.id);
        s.log.info({ instructionId: entry.id }, 'instruction sent');
      }
      await channel.markSent(sent, now);
    } catch (err) {
      this.#opts.logger.error({ err, agents: byAgent.size, sent: sent.length }, 'could not send the pending instructions; they stay queued for the next connection or tick');
    }
  }

  /** Closes every connection (1001 going away) and stops serving; the HTTP server is the caller's. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    // Reports waiting for their shared commit are stored and acked before the goodbye.
    if (this.#batch.length > 0) await this.#flush();
    await this.#flushing;
    await this.#delivering;
    for (const server of this.#servers) server.off('upgrade', this.#onUpgrade);
    const closed = [...this.#sessions].map(
      (s) =>
        new Promise<void>((resolve) => {
          s.ws.once('close', () => {
            resolve();
          });
          s.closing = true;
          s.ws.close(1001, 'collector shutting down');
          setTimeout(() => {
            s.ws.terminate();
          }, Math.min(this.#opts.closeGraceMs, 2000)).unref();
        }),
    );
    await Promise.all(closed);
    await new Promise<void>((resolve) => {
      this.#wss.close(() => {
        resolve();
      });
    });
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://collector').pathname;
    } catch {
      path = '';
    }
    const source = addressKey(req.socket.remoteAddress);
    const admission = path !== AGENT_PATH || this.#closed ? null : this.#pending.admit(source);
    if (admission === null || !admission.ok) {
      if (admission !== null) this.#count(admission.reason === 'full' ? 'handshakes-full' : 'handshakes-per-address');
      socket.end(`HTTP/1.1 ${path !== AGENT_PATH ? '404 Not Found' : '503 Service Unavailable'}\r\nConnection: close\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n`);
      socket.destroy();
      return;
    }
    if (admission.evict !== null) {
      this.#count('handshakes-evicted');
      this.#refuse(
        admission.evict,
        new ProtocolError(
          `closed before hello or enroll to make room: ${this.#opts.maxPendingHandshakes} connections are waiting for theirs, and this source held the most`,
          'PW_ERR_HANDSHAKE_TIMEOUT',
          CLOSE.timeout,
        ),
      );
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      this.#accept(ws, req, source);
    });
  }

  #accept(ws: WebSocket, req: IncomingMessage, source: string): void {
    const nonce = randomBytes(32).toString('base64url');
    const id = this.#nextId++;
    const log = this.#opts.logger.child({ conn: id, remote: req.socket.remoteAddress });
    const s: Session = {
      id,
      ws,
      source,
      nonce,
      log,
      agentId: null,
      closing: false,
      reportPending: false,
      missedPongs: 0,
      handshakeTimer: undefined,
      sent: new Set(),
      handled: this.#ready,
      queued: 0,
    };
    this.#sessions.add(s);
    this.#pending.add(source, s);
    this.stats.connections++;
    s.handshakeTimer = setTimeout(() => {
      this.#refuse(s, new ProtocolError(`no hello or enroll within ${this.#opts.handshakeTimeoutMs} ms`, 'PW_ERR_HANDSHAKE_TIMEOUT', CLOSE.timeout));
    }, this.#opts.handshakeTimeoutMs);
    ws.on('message', (data, isBinary) => {
      if (s.closing) return;
      const arrived = process.hrtime.bigint();
      if (s.queued++ === 0) ws.pause();
      s.handled = s.handled.then(async () => {
        if (!s.closing) {
          try {
            await this.#handle(s, data, isBinary, arrived);
          } catch (err) {
            if (s.reportPending) this.#opts.onReport?.('rejected', 0);
            this.#refuse(s, asProtocolError(err) ?? this.#internal(s, err));
          }
          s.reportPending = false;
        }
        // Resumed when refused too: the peer's close frame must be read for the close to complete.
        if (--s.queued === 0) ws.resume();
      });
    });
    ws.on('pong', () => {
      s.missedPongs = 0;
    });
    // Refused at the frame header, its payload never buffered (frame-limit.ts).
    onFrameTooLarge(ws, req.socket, () => {
      const limit = s.agentId === null ? `before hello or enroll a frame is at most ${this.#opts.preAuthMaxPayload} bytes` : `a frame is at most ${this.#opts.maxPayload} bytes`;
      this.#refuse(s, new ProtocolError(`frame too large: ${limit}`, 'PW_ERR_INPUT_TOO_LARGE', CLOSE.tooBig));
    });
    // ws reports bad UTF-8 (1007) or a bad frame here and closes the connection itself;
    // without a listener the error would crash the process.
    ws.on('error', (err: Error & { code?: string }) => {
      if (err.code === WS_FRAME_TOO_LARGE) return;
      this.#count(err.code ?? 'WS_ERR');
      log.warn({ code: err.code, agentId: s.agentId }, `connection refused by the WebSocket layer: ${err.message}`);
    });
    ws.on('close', (code, reason) => {
      this.#closedSession(s, code, reason.toString('utf8'));
    });
    log.debug('agent connection opened');
    this.#send(s, challengeMessage(nonce));
  }

  async #handle(s: Session, data: RawData, isBinary: boolean, arrived: bigint): Promise<void> {
    if (isBinary) throw protocolError('binary frames are not part of the protocol: send JSON text frames');
    const frame = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    // Counted before it is hashed or parsed: too many packages is refused in one pass (report-limit.ts).
    if (s.agentId !== null) assertFrameWithinPackageLimit(frame);
    // Only an authenticated agent's report can name a stored set; before that, parse it all.
    const known = s.agentId === null ? null : await splitKnownPackageSet(frame, (json) => this.#opts.store.reports.matchPackageSet(json));
    let json: unknown;
    try {
      json = JSON.parse(known?.rest ?? frame.toString('utf8'));
    } catch (err) {
      throw protocolError(`the frame is not JSON: ${(err as Error).message}`);
    }
    s.reportPending = (json as { type?: unknown } | null)?.type === 'report';
    assertReportWithinPackageLimit(json);
    const parsed = AgentMessageSchema.safeParse(json);
    if (!parsed.success) {
      const issues = parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(message)'}: ${i.message}`);
      throw protocolError(`the message does not match the protocol: ${issues.join('; ')}`);
    }
    const msg = parsed.data;
    if (msg.type === 'report' || msg.type === 'result') {
      if (s.agentId === null) throw new ProtocolError(`a ${msg.type} before hello or enroll`, 'PW_ERR_UNAUTHENTICATED', CLOSE.unauthenticated);
      if (msg.type === 'result') {
        await this.#result(s, s.agentId, msg.id, msg.result);
        return;
      }
      // The hash is checked on the inventory as it arrived (the agent's key order), the
      // same bytes the agent hashed; a report whose hash lies is refused, never stored.
      const raw = (json as { inventory: Inventory | null }).inventory;
      if (raw === null || msg.inventory === null) {
        if (msg.packageSet !== undefined) throw protocolError(`report ${msg.id}: packageSet without an inventory`);
        await this.#report(s, s.agentId, msg.id, msg.hash, null, undefined, arrived);
        return;
      }
      let set: PackageSetRef;
      let inventory = msg.inventory;
      if (known !== null) {
        if (msg.packageSet !== undefined) throw protocolError(`report ${msg.id}: packageSet names the packages, so the inventory's packages must be empty`);
        // Anything but our `[]` means the frame had a second packages key: not what it seemed.
        if (raw.packages.length !== 0) throw protocolError(`report ${msg.id}: the inventory has two packages keys`);
        set = { hash: known.hash, json: null };
        inventory = { ...inventory, packages: known.packages };
        this.stats.heldSetFrames++;
      } else if (msg.packageSet === undefined) {
        set = packageSetRef(raw.packages);
      } else {
        if (raw.packages.length !== 0) throw protocolError(`report ${msg.id}: packageSet names the packages, so the inventory's packages must be empty`);
        const packages = await this.#opts.store.reports.packageSet(msg.packageSet);
        if (packages === undefined) {
          this.#ack(s, msg.id, 'packages-unknown', arrived);
          return;
        }
        set = { hash: msg.packageSet, json: null };
        inventory = { ...inventory, packages };
      }
      if (inventoryHash(raw, set.hash) !== msg.hash) throw protocolError(`report ${msg.id}: hash ${msg.hash} is not the hash of its inventory`);
      await this.#report(s, s.agentId, msg.id, msg.hash, inventory, set, arrived);
      return;
    }
    if (s.agentId !== null) throw protocolError(`${msg.type} on a connection that is authenticated already`);
    if (!acceptsProtocol(msg.protocol)) {
      throw new ProtocolError(`protocol ${msg.protocol} is not accepted: this collector speaks ^${PROTOCOL_MAJOR} (${PROTOCOL_VERSION})`, 'PW_ERR_PROTOCOL_VERSION', CLOSE.version);
    }
    const agents = this.#opts.store.agents;
    const now = this.#opts.now();
    if (msg.type === 'hello') {
      let agent;
      try {
        agent = await agents.get(msg.agentId);
      } catch (err) {
        throw this.#internal(s, err);
      }
      // Unknown agent and bad signature look the same to the peer: nothing to probe ids with.
      if (agent === undefined || !verifyBytes(agent.publicKey, helloPayload(s.nonce, msg.agentId), msg.signature)) {
        throw new ProtocolError('hello: the signature does not prove this agent id', 'PW_ERR_UNAUTHENTICATED', CLOSE.unauthenticated);
      }
      if (agent.revokedAt !== null) throw new ProtocolError(`agent ${agent.id} was revoked at ${agent.revokedAt}`, 'PW_ERR_AGENT_REVOKED', CLOSE.revoked);
      try {
        if (agent.agentVersion !== msg.agentVersion) await agents.setVersion(agent.id, msg.agentVersion);
        await this.#authenticated(s, agent.id, agent.lastInventoryHash, now);
      } catch (err) {
        throw asProtocolError(err) ?? this.#internal(s, err);
      }
      return;
    }
    let result;
    try {
      result = await agents.enrollWithToken(msg.token, { publicKey: msg.publicKey, hostname: msg.hostname, machineId: msg.machineId, agentVersion: msg.agentVersion }, now);
    } catch (err) {
      throw asProtocolError(err) ?? this.#internal(s, err);
    }
    if (!result.ok) {
      throw new ProtocolError(`enroll: the enrollment token is ${result.reason === 'used-up' ? 'used up' : result.reason}`, 'PW_ERR_TOKEN_REFUSED', CLOSE.tokenRefused);
    }
    this.stats.enrolled++;
    s.log.info({ agentId: result.agentId, hostname: msg.hostname }, 'agent enrolled');
    this.#send(s, enrolledMessage(result.agentId, this.#opts.collectorPublicKey));
    try {
      await this.#authenticated(s, result.agentId, null, now);
    } catch (err) {
      throw asProtocolError(err) ?? this.#internal(s, err);
    }
  }

  async #authenticated(s: Session, agentId: string, inventoryHash: string | null, now: Date): Promise<void> {
    clearTimeout(s.handshakeTimer);
    this.#pending.delete(s.source, s);
    // Raised inside the message handler, so before ws's Receiver reads the next frame's header.
    setFrameLimit(s.ws, this.#opts.maxPayload);
    const older = this.#byAgent.get(agentId);
    if (older !== undefined) {
      // Two live connections for one key: a restarted agent whose old TCP connection is
      // not dead yet, or a cloned VM. The newest wins; the log tells the two apart.
      older.log.warn({ agentId, newer: s.id }, 'a newer connection of this agent replaces this one');
      older.closing = true;
      older.ws.close(1000, 'replaced by a newer connection');
    }
    s.agentId = agentId;
    s.log = s.log.child({ agentId });
    this.#byAgent.set(agentId, s);
    this.stats.authenticated++;
    await this.#mark(agentId, () => this.#opts.store.agents.markConnected(agentId, this.#opts.replica, now));
    s.log.info('agent connected');
    this.#send(s, welcomeMessage(agentId, this.#opts.heartbeatSeconds, inventoryHash));
    // Not awaited: the connection's next frame need not wait for a run serving other connections too.
    this.#deliver(s);
  }

  async #report(s: Session, agentId: string, id: string, hash: string, inventory: Inventory | null, set: PackageSetRef | undefined, arrived: bigint): Promise<void> {
    if (inventory !== null) {
      // Stored reports that arrive in the same event-loop turn share one commit (each in its
      // own savepoint); their acks go out after it, in arrival order.
      this.#batch.push({ s, item: { agentId, reportId: id, hash, inventory, set }, arrived });
      if (this.#batch.length === 1) {
        setImmediate(() => {
          void this.#flush();
        });
      }
      return;
    }
    let result;
    try {
      result = await this.#opts.store.reports.ingest(agentId, id, hash, inventory, this.#opts.now(), set);
    } catch (err) {
      throw asProtocolError(err) ?? this.#internal(s, err);
    }
    this.#ack(s, id, result.status, arrived);
  }

  readonly #batch: { s: Session; item: IngestItem; arrived: bigint }[] = [];
  /** Settles when the last batch's commit and acks are done (close() waits for it). */
  #flushing: Promise<void> = Promise.resolve();

  /** Never rejects: a failed commit refuses the batch's reports, each on its connection. */
  #flush(): Promise<void> {
    const done = this.#flushBatch(this.#batch.splice(0));
    this.#flushing = done;
    return done;
  }

  async #flushBatch(batch: { s: Session; item: IngestItem; arrived: bigint }[]): Promise<void> {
    if (batch.length === 0) return;
    let results: (IngestResult | { error: unknown })[];
    try {
      results = await this.#opts.store.reports.ingestBatch(
        batch.map((b) => b.item),
        this.#opts.now(),
      );
    } catch (err) {
      // The commit itself failed (disk full, I/O error): nothing of the batch is stored.
      results = batch.map(() => ({ error: err }));
    }
    batch.forEach(({ s, item, arrived }, i) => {
      const result = results[i] ?? { error: new Error('no result') };
      if ('error' in result) {
        this.#opts.onReport?.('rejected', 0);
        this.#refuse(s, asProtocolError(result.error) ?? this.#internal(s, result.error));
        return;
      }
      // The transaction has committed: only now may the agent forget the report. A session
      // closed meanwhile gets no ack; its agent sends the report again (answered duplicate).
      if (s.closing) return;
      this.#ack(s, item.reportId, result.status, arrived);
      if (result.status === 'stored' && this.#opts.onInventory !== undefined) {
        try {
          this.#opts.onInventory(item.agentId, item.inventory, result.contentHash);
        } catch (err) {
          s.log.error({ err }, 'correlating the new inventory failed; the report is stored');
        }
      }
    });
  }

  #ack(s: Session, id: string, status: 'stored' | 'unchanged' | 'duplicate' | 'packages-unknown', arrived: bigint): void {
    this.stats.reports[status]++;
    this.#send(s, ackMessage(id, status));
    s.reportPending = false;
    this.#opts.onReport?.(status, Number(process.hrtime.bigint() - arrived) / 1e9);
    s.log.debug({ reportId: id, status }, 'report acknowledged');
  }

  async #result(s: Session, agentId: string, id: string, result: InstructionResult): Promise<void> {
    const channel = this.#opts.instructions;
    if (channel === undefined) throw protocolError('this collector sends no instructions, so it takes no results');
    // An instruction sent again after a reconnect, before its result (spooled by the agent)
    // arrived, is refused by the agent as a replay: that says nothing about how it went.
    if (result.code === 'PW_ERR_INSTRUCTION_REPLAYED') {
      s.log.info({ instructionId: result.instructionId }, 'the agent had run this instruction already; waiting for its result');
      this.#send(s, ackMessage(id, 'stored'));
      return;
    }
    let known;
    try {
      known = await channel.recordResult(agentId, result, this.#opts.now());
    } catch (err) {
      throw this.#internal(s, err);
    }
    s.log[known ? 'info' : 'warn']({ instructionId: result.instructionId, status: result.status, code: result.code, known }, 'instruction result');
    this.#send(s, ackMessage(id, 'stored'));
  }

  #internal(s: Session, err: unknown): ProtocolError {
    s.log.error({ err }, 'the collector failed while handling a message');
    return new StoreUnavailableError(err);
  }

  #send(s: Session, msg: CollectorMessage): void {
    s.ws.send(JSON.stringify(msg));
  }

  #count(code: string): void {
    this.stats.refused[code] = (this.stats.refused[code] ?? 0) + 1;
  }

  #refuse(s: Session, err: ProtocolError): void {
    if (s.closing) return;
    s.closing = true;
    clearTimeout(s.handshakeTimer);
    this.#pending.delete(s.source, s);
    this.#count(err.code);
    const level = err.code === 'PW_ERR_STORE' ? 'error' : 'warn';
    s.log[level]({ code: err.code, closeCode: err.closeCode }, `agent connection refused: ${err.message}`);
    // No longer this agent's connection, even before the peer answers the close.
    this.#release(s);
    this.#send(s, wireError(err.code, err.message));
    s.ws.close(err.closeCode ?? CLOSE.protocol, err.code);
    // A peer that never answers the close frame must not hold a socket for ws's 30 s.
    setTimeout(() => {
      s.ws.terminate();
    }, this.#opts.closeGraceMs).unref();
  }

  #closedSession(s: Session, code: number, reason: string): void {
    clearTimeout(s.handshakeTimer);
    this.#sessions.delete(s);
    this.#pending.delete(s.source, s);
    s.closing = true;
    this.#release(s);
    s.log.info({ code, reason }, s.agentId === null ? 'connection closed before authentication' : 'agent disconnected');
  }

  #release(s: Session): void {
    if (s.agentId === null || this.#byAgent.get(s.agentId) !== s) return;
    const agentId = s.agentId;
    this.#byAgent.delete(agentId);
    this.#mark(agentId, () => this.#opts.store.agents.markDisconnected(agentId, this.#opts.replica, this.#opts.now())).catch((err: unknown) => {
      s.log.error({ err }, 'could not record the disconnection');
    });
  }

  #tick(): void {
    for (const s of this.#sessions) {
      if (s.missedPongs >= 2) {
        s.log.warn({ missed: s.missedPongs }, 'no pong for two heartbeats: connection terminated');
        this.#count('heartbeat-timeout');
        s.ws.terminate();
        continue;
      }
      s.missedPongs++;
      s.ws.ping();
    }
    if (this.#byAgent.size === 0) return;
    this.#opts.store.agents.touch([...this.#byAgent.keys()], this.#opts.now()).catch((err: unknown) => {
      this.#opts.logger.error({ err }, 'could not record last-seen of the connected agents');
    });
  }
}
