/**
 * The collector's side of the agent protocol, for the daemon's tests: a real WebSocket
 * server on 127.0.0.1 that speaks shared/protocol.ts exactly as collector/gateway does
 * (challenge with a fresh nonce, enroll against counted tokens, hello verified with the
 * agent's ed25519 key over helloPayload, reports checked against their hash, acks,
 * `error` + 4xxx close on refusal). It can be stopped and started again on the same port,
 * answer 503 while "starting", and revoke agents. Tests only.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { type IncomingMessage, type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { type WebSocket, WebSocketServer } from 'ws';
import { CLOSE } from '../errors.ts';
import { inventoryHash, packageSetHash } from '../inventory-hash.ts';
import type { InstructionResult, SignedInstruction } from '../instructions.ts';
import { AgentMessageSchema, type CollectorMessage, type Inventory } from '../protocol.ts';
import { ackMessage, challengeMessage, enrolledMessage, instructionMessage, welcomeMessage, wireError } from '../messages.ts';
import { generateKeyPair, helloPayload, verifyBytes } from '../signing.ts';

export interface TestAgentRecord {
  id: string;
  publicKey: string;
  hostname: string;
  machineId: string | null;
  revoked: boolean;
  lastHash: string | null;
}

export interface ReceivedReport {
  agentId: string;
  id: string;
  hash: string;
  full: boolean;
  status: 'stored' | 'unchanged' | 'duplicate' | 'packages-unknown';
  /** The packages the report carried; null for hash-only and by-reference reports. */
  packages: number | null;
  /** The package set it named instead of sending it, if it did. */
  packageSet: string | null;
  collectedAt: string | null;
}

class Refusal extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly closeCode: number,
  ) {
    super(message);
  }
}

export class FakeCollector {
  readonly collectorKey = generateKeyPair();
  readonly agents = new Map<string, TestAgentRecord>();
  readonly reports: ReceivedReport[] = [];
  /** Package sets stored (packageSetHash -> package count), as the collector's inventory_contents. */
  readonly packageSets = new Map<string, number>();
  readonly results: { agentId: string; result: InstructionResult }[] = [];
  /** Reports that named a package set this collector did not hold (answered packages-unknown, not in `reports`). */
  readonly unknownSets: ReceivedReport[] = [];
  /** Date.now() of every upgrade request, accepted or not. */
  readonly attempts: number[] = [];
  readonly refusals: string[] = [];
  heartbeatSeconds = 30;
  /** Answer upgrades with 503, as a collector that is starting or shutting down does. */
  unavailable = false;
  /** Do not ack reports (a collector stuck in its database). */
  holdAcks = false;
  /** Ping every heartbeatSeconds, as the gateway does; false: a collector (or a route) gone silent. */
  sendPings = true;
  /** Refuse every report with PW_ERR_PROTOCOL and close 4000 (a collector stricter than this agent). */
  refuseReports = false;
  private readonly tokens = new Map<string, number>();
  private readonly sockets = new Set<WebSocket>();
  private readonly bySocket = new Map<WebSocket, { nonce: string; agentId: string | null }>();
  private wss = new WebSocketServer({ noServer: true, maxPayload: 32 * 1024 * 1024, perMessageDeflate: false });
  private server: Server | null = null;
  private pinger: NodeJS.Timeout | undefined;
  port = 0;

  static async start(options: { heartbeatSeconds?: number } = {}): Promise<FakeCollector> {
    const c = new FakeCollector();
    c.heartbeatSeconds = options.heartbeatSeconds ?? 30;
    await c.listen(0);
    return c;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/v1/agent`;
  }

  get connected(): number {
    return [...this.bySocket.values()].filter((s) => s.agentId !== null).length;
  }

  /** A token with `uses` enrollments left: random (so one in 64 starts with '-'), or the one given. */
  createToken(uses = 1, token = randomBytes(24).toString('base64url')): string {
    this.tokens.set(token, uses);
    return token;
  }

  /** Marks the agent revoked and ends its connection as the gateway does. */
  revoke(agentId: string): void {
    const a = this.agents.get(agentId);
    if (a === undefined) throw new Error(`no agent ${agentId}`);
    a.revoked = true;
    for (const [ws, s] of this.bySocket) {
      if (s.agentId === agentId) this.refuse(ws, new Refusal(`agent ${agentId} was revoked`, 'PW_ERR_AGENT_REVOKED', CLOSE.revoked));
    }
  }

  /** Sends a raw text frame to every authenticated agent (garbage, messages out of order). */
  sendRaw(text: string): void {
    for (const [ws, s] of this.bySocket) if (s.agentId !== null) ws.send(text);
  }

  /** Listens again on the same port after stop(). */
  async restart(): Promise<void> {
    this.wss = new WebSocketServer({ noServer: true, maxPayload: 32 * 1024 * 1024, perMessageDeflate: false });
    await this.listen(this.port);
  }

  /** Closes every connection with 1001 and stops listening. */
  async stop(): Promise<void> {
    clearInterval(this.pinger);
    for (const ws of this.sockets) ws.close(1001, 'collector shutting down');
    const server = this.server;
    this.server = null;
    if (server === null) return;
    await new Promise<void>((resolve) => {
      server.close(() => {
        resolve();
      });
      server.closeAllConnections();
    });
    for (const ws of this.sockets) ws.terminate();
    this.sockets.clear();
    this.bySocket.clear();
  }

  /** Resolves once `n` reports have arrived (or rejects after timeoutMs). */
  async waitForReports(n: number, timeoutMs = 10_000): Promise<ReceivedReport[]> {
    const start = Date.now();
    while (this.reports.length < n) {
      if (Date.now() - start > timeoutMs) throw new Error(`only ${this.reports.length} of ${n} reports after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.reports.slice(0, n);
  }

  private async listen(port: number): Promise<void> {
    const server = createServer((_req, res) => {
      res.writeHead(404).end();
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.attempts.push(Date.now());
      if (this.unavailable || new URL(req.url ?? '/', 'http://x').pathname !== '/v1/agent') {
        socket.end(`HTTP/1.1 ${this.unavailable ? '503 Service Unavailable' : '404 Not Found'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        socket.destroy();
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        this.accept(ws);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        resolve();
      });
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    this.pinger = setInterval(() => {
      if (this.sendPings) for (const ws of this.sockets) ws.ping();
    }, this.heartbeatSeconds * 1000);
    this.pinger.unref();
  }

  private accept(ws: WebSocket): void {
    const nonce = randomBytes(32).toString('base64url');
    this.sockets.add(ws);
    this.bySocket.set(ws, { nonce, agentId: null });
    ws.on('close', () => {
      this.sockets.delete(ws);
      this.bySocket.delete(ws);
    });
    ws.on('error', () => undefined);
    ws.on('message', (data) => {
      try {
        this.handle(ws, Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(data as Buffer[]).toString('utf8'));
      } catch (err) {
        this.refuse(ws, err instanceof Refusal ? err : new Refusal((err as Error).message, 'PW_ERR_PROTOCOL', CLOSE.protocol));
      }
    });
    this.send(ws, challengeMessage(nonce));
  }

  private handle(ws: WebSocket, text: string): void {
    const s = this.bySocket.get(ws);
    if (s === undefined) return;
    const json: unknown = JSON.parse(text);
    const parsed = AgentMessageSchema.safeParse(json);
    if (!parsed.success) throw new Refusal(`not in the protocol: ${parsed.error.issues[0]?.message ?? ''}`, 'PW_ERR_PROTOCOL', CLOSE.protocol);
    const msg = parsed.data;
    if (msg.type === 'enroll') {
      const left = this.tokens.get(msg.token);
      if (left === undefined || left < 1) throw new Refusal('enroll: the enrollment token is used up', 'PW_ERR_TOKEN_REFUSED', CLOSE.tokenRefused);
      this.tokens.set(msg.token, left - 1);
      const id = randomUUID();
      this.agents.set(id, { id, publicKey: msg.publicKey, hostname: msg.hostname, machineId: msg.machineId, revoked: false, lastHash: null });
      s.agentId = id;
      this.send(ws, enrolledMessage(id, this.collectorKey.publicKey));
      this.send(ws, welcomeMessage(id, this.heartbeatSeconds, null));
      return;
    }
    if (msg.type === 'hello') {
      const a = this.agents.get(msg.agentId);
      if (a === undefined || !verifyBytes(a.publicKey, helloPayload(s.nonce, msg.agentId), msg.signature)) {
        throw new Refusal('hello: the signature does not prove this agent id', 'PW_ERR_UNAUTHENTICATED', CLOSE.unauthenticated);
      }
      if (a.revoked) throw new Refusal(`agent ${a.id} was revoked`, 'PW_ERR_AGENT_REVOKED', CLOSE.revoked);
      s.agentId = a.id;
      this.send(ws, welcomeMessage(a.id, this.heartbeatSeconds, a.lastHash));
      return;
    }
    if (s.agentId === null) throw new Refusal(`a ${msg.type} before hello`, 'PW_ERR_UNAUTHENTICATED', CLOSE.unauthenticated);
    const a = this.agents.get(s.agentId) as TestAgentRecord;
    if (msg.type === 'result') {
      this.results.push({ agentId: a.id, result: msg.result });
      if (!this.holdAcks) this.send(ws, ackMessage(msg.id, 'stored'));
      return;
    }
    if (this.refuseReports) throw new Refusal(`report ${msg.id} refused`, 'PW_ERR_PROTOCOL', CLOSE.protocol);
    const raw = (json as { inventory: Inventory | null }).inventory;
    const byReference = msg.packageSet !== undefined;
    const setHash = msg.packageSet ?? (raw === null ? null : packageSetHash(raw.packages));
    if (raw !== null && setHash !== null && inventoryHash(raw, setHash) !== msg.hash) {
      throw new Refusal(`report ${msg.id}: hash is not the hash of its inventory`, 'PW_ERR_PROTOCOL', CLOSE.protocol);
    }
    let status: ReceivedReport['status'];
    if (this.reports.some((r) => r.id === msg.id)) status = 'duplicate';
    else if (msg.inventory === null || msg.hash === a.lastHash) {
      if (msg.hash !== a.lastHash) throw new Refusal(`report ${msg.id}: unknown inventory ${msg.hash}`, 'PW_ERR_INVENTORY_UNKNOWN', CLOSE.protocol);
      status = 'unchanged';
    } else if (byReference && setHash !== null && !this.packageSets.has(setHash)) {
      status = 'packages-unknown';
    } else {
      status = 'stored';
      a.lastHash = msg.hash;
      if (setHash !== null && !byReference) this.packageSets.set(setHash, msg.inventory.packages.length);
    }
    (status === 'packages-unknown' ? this.unknownSets : this.reports).push({
      agentId: a.id,
      id: msg.id,
      hash: msg.hash,
      full: msg.inventory !== null,
      status,
      packages: msg.inventory === null || byReference ? null : msg.inventory.packages.length,
      packageSet: msg.packageSet ?? null,
      collectedAt: msg.inventory?.collectedAt ?? null,
    });
    // packages-unknown commits nothing, so a collector stuck in its database still answers it.
    if (!this.holdAcks || status === 'packages-unknown') this.send(ws, ackMessage(msg.id, status));
  }

  /** Sends a signed instruction to the agent if it is connected; false if it is not. */
  sendInstruction(agentId: string, signed: SignedInstruction): boolean {
    for (const [ws, s] of this.bySocket) {
      if (s.agentId !== agentId) continue;
      this.send(ws, instructionMessage(signed));
      return true;
    }
    return false;
  }

  private send(ws: WebSocket, msg: CollectorMessage): void {
    ws.send(JSON.stringify(msg));
  }

  private refuse(ws: WebSocket, err: Refusal): void {
    this.refusals.push(err.code);
    this.send(ws, wireError(err.code, err.message));
    ws.close(err.closeCode, err.code);
  }
}
