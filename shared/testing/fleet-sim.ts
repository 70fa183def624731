/**
 * A simulated agent for fleet tests: a real WebSocket client with real ed25519 keys that
 * enrolls with a real token, reports a real inventory, checks every instruction it is sent
 * against the collector key it pinned at enrollment, and answers as its script says. It
 * runs no package manager: a successful patch is simulated from `repository` (what the
 * host's configured repositories offer as newest), and, as the real agent does, it sends
 * its result first and then a fresh inventory, so the collector's findings resolve from
 * the host's facts. The wire (connection, challenge, enroll or hello, frames) is TestAgent's
 * (fake-agent.ts); this class is the host's behaviour on top of it. Tests only.
 */
import WebSocket from 'ws';
import { REFUSAL_CODES } from '../../agent/executor/verify.ts';
import { fullReport, resultMessage } from '../messages.ts';
import {
  type Instruction,
  type InstructionResult,
  InstructionSchema,
  instructionSignatureValid,
  type PackageChange,
  type SignedInstruction,
  SignedInstructionSchema,
} from '../instructions.ts';
import type { CollectorMessage, Inventory } from '../protocol.ts';
import type { KeyPair } from '../signing.ts';
import { type Listener, newKeys, TestAgent } from './fake-agent.ts';

/**
 * How the host answers an instruction.
 *   succeed:    runs it; a patch upgrades from `repository`, then a fresh inventory follows
 *   fail:       runs it and reports `failed` (as a dnf that exits 1 would)
 *   hang:       keeps it and never answers (a command that never ends)
 *   disconnect: drops the connection on receipt, without answering
 */
export type Script = 'succeed' | 'fail' | 'hang' | 'disconnect';

export type CheckResult = { ok: true; instruction: Instruction } | { ok: false; code: string; reason: string };

/** The checks the sim agent makes before it acts: pinned-key signature over the exact bytes, schema, target, expiry. */
export function checkInstruction(frame: unknown, collectorPublicKey: string, agentId: string, now: Date): CheckResult {
  const envelope = SignedInstructionSchema.safeParse(frame);
  if (!envelope.success) return { ok: false, code: REFUSAL_CODES.malformed, reason: 'not a signed instruction envelope' };
  if (!instructionSignatureValid(envelope.data, collectorPublicKey)) return { ok: false, code: REFUSAL_CODES.signature, reason: 'not signed by the pinned collector key' };
  let json: unknown;
  try {
    json = JSON.parse(envelope.data.payload);
  } catch {
    return { ok: false, code: REFUSAL_CODES.malformed, reason: 'the signed payload is not JSON' };
  }
  const parsed = InstructionSchema.safeParse(json);
  if (!parsed.success) return { ok: false, code: REFUSAL_CODES.malformed, reason: 'the signed payload is not an instruction' };
  const instruction = parsed.data;
  if (instruction.agentId !== agentId) return { ok: false, code: REFUSAL_CODES.target, reason: `addressed to ${instruction.agentId}, not ${agentId}` };
  if (Date.parse(instruction.expiresAt) <= now.getTime()) return { ok: false, code: REFUSAL_CODES.expired, reason: `expired at ${instruction.expiresAt}` };
  return { ok: true, instruction };
}

export interface Received {
  instruction: Instruction;
  /** The agent's clock when the frame arrived. */
  at: Date;
  /** Order of arrival across every SimAgent of the process. */
  seq: number;
}

let sequence = 0;

export interface SimAgentOptions {
  url: string;
  token: string;
  inventory: Inventory;
  script?: Script;
  /** Package name -> the newest version the host's repositories offer. */
  repository?: ReadonlyMap<string, string>;
  now?: () => Date;
}

export class SimAgent {
  readonly keys: KeyPair = newKeys();
  readonly hostname: string;
  readonly #url: string;
  readonly #now: () => Date;
  readonly #repository: ReadonlyMap<string, string>;
  script: Script;
  agentId = '';
  collectorPublicKey = '';
  inventory: Inventory;
  /** Every instruction frame that passed the checks, in order. */
  readonly received: Received[] = [];
  /** Every instruction frame that did not, with the reason: a non-empty list fails the test. */
  readonly violations: string[] = [];
  /** Instruction frames of any kind, counted as they arrive. */
  frames = 0;
  /** Results and reports the collector acknowledged. */
  readonly acked: { id: string; kind: 'result' | 'report'; status: string }[] = [];
  /** The connection: TestAgent speaks the handshake and carries the frames; this class only reacts to them. */
  #conn: TestAgent | undefined;
  readonly #waiting = new Map<string, (status: string) => void>();
  #chain: Promise<void> = Promise.resolve();
  readonly #listener: Listener = {
    message: (m) => {
      this.#onMessage(m);
    },
    binary: () => {
      this.violations.push('a binary frame');
    },
  };

  private constructor(opts: SimAgentOptions) {
    this.#url = opts.url;
    this.#now = opts.now ?? (() => new Date());
    this.#repository = opts.repository ?? new Map();
    this.script = opts.script ?? 'succeed';
    this.inventory = opts.inventory;
    this.hostname = opts.inventory.host.hostname;
  }

  /** Enrolls with the token, then reports its inventory and waits for the ack. */
  static async enroll(opts: SimAgentOptions): Promise<SimAgent> {
    const a = new SimAgent(opts);
    const enrolled = await a.#open((conn) => conn.enroll(opts.token, a.keys, { hostname: a.hostname }));
    a.agentId = enrolled.agentId;
    // Pinned here, once: every instruction is checked against this key, never one a message names.
    a.collectorPublicKey = enrolled.collectorPublicKey;
    await a.report();
    return a;
  }

  get connected(): boolean {
    return this.#conn?.ws.readyState === WebSocket.OPEN;
  }

  /** Connects again with hello (the key from enrollment); resolves at welcome. */
  async reconnect(): Promise<void> {
    await this.#open((conn) => conn.hello(this.agentId, this.keys));
  }

  /** Closes the connection and waits until it is closed. */
  async disconnect(): Promise<void> {
    const conn = this.#conn;
    if (conn === undefined || conn.ws.readyState === WebSocket.CLOSED) return;
    await conn.close();
  }

  terminate(): void {
    this.#conn?.ws.terminate();
  }

  /** Sends the current inventory; resolves with the ack's status. */
  report(): Promise<string> {
    const report = fullReport(this.inventory);
    const acked = this.#ack(report.id, 'report');
    this.#send(report);
    return acked;
  }

  /** Resolves once every instruction received so far has been answered (or held, or dropped) and its acks came. */
  settled(): Promise<void> {
    return this.#chain;
  }

  /**
   * A new connection through `handshake` (TestAgent's enroll or hello, up to welcome); from
   * then on its messages come to #onMessage as they arrive. A failure names the host: a
   * fleet test has dozens of agents.
   */
  async #open<T>(handshake: (conn: TestAgent) => Promise<T>): Promise<T> {
    try {
      const conn = await TestAgent.connect(this.#url);
      this.#conn = conn;
      const done = await handshake(conn);
      conn.listen(this.#listener);
      return done;
    } catch (err) {
      throw new Error(`${this.hostname}: ${err instanceof Error ? err.message : String(err)} (before welcome)`, { cause: err });
    }
  }

  /** After the handshake: acks, errors and instructions as they come. */
  #onMessage(msg: CollectorMessage): void {
    switch (msg.type) {
      case 'challenge':
      case 'enrolled':
      case 'welcome':
        this.violations.push(`a ${msg.type} after the handshake`);
        return;
      case 'ack': {
        const w = this.#waiting.get(msg.id);
        this.#waiting.delete(msg.id);
        w?.(msg.status);
        return;
      }
      case 'error':
        this.violations.push(`error from the collector: ${msg.code} ${msg.message}`);
        return;
      case 'instruction': {
        this.frames++;
        const { type: _type, ...signed } = msg;
        const next = this.#chain.then(() => this.#onInstruction(signed));
        this.#chain = next.catch((err: unknown) => {
          this.violations.push(`handling an instruction failed: ${String(err)}`);
        });
        return;
      }
    }
  }

  /** One at a time, in arrival order, as the real executor runs them. */
  async #onInstruction(signed: SignedInstruction): Promise<void> {
    const now = this.#now();
    const check = checkInstruction(signed, this.collectorPublicKey, this.agentId, now);
    if (!check.ok) {
      this.violations.push(`${check.code}: ${check.reason}`);
      await this.#answer(this.#result(null, 'refused', now, { code: check.code, message: check.reason }));
      return;
    }
    const ins = check.instruction;
    this.received.push({ instruction: ins, at: now, seq: ++sequence });
    switch (this.script) {
      case 'hang':
        return;
      case 'disconnect':
        this.terminate();
        return;
      case 'fail':
        await this.#answer(this.#result(ins.id, 'failed', now, { code: 'PW_ERR_COMMAND_FAILED', message: 'dnf exited with 1: Error: Transaction test error', dryRun: ins.dryRun }));
        return;
      case 'succeed': {
        const changes = ins.kind === 'patch' && !ins.dryRun ? this.#upgrade(ins.packages) : [];
        await this.#answer(this.#result(ins.id, 'succeeded', now, { changes, message: `${ins.kind} done`, dryRun: ins.dryRun }));
        if (!ins.dryRun) {
          this.inventory = { ...this.inventory, collectedAt: this.#now().toISOString() };
          await this.report();
        }
        return;
      }
    }
  }

  /** The inventory after the upgrade: each named package at its pin, or the repository's newest. */
  #upgrade(targets: readonly { name: string; version: string | null }[]): PackageChange[] {
    const want = new Map(targets.map((t) => [t.name, t.version ?? this.#repository.get(t.name) ?? null]));
    const changes: PackageChange[] = [];
    const packages = this.inventory.packages.map((p) => {
      const to = want.get(p.name);
      if (to === undefined || to === null || to === p.version) return p;
      changes.push({ name: p.name, before: p.version, after: to });
      return { ...p, version: to, sourceVersion: p.sourceVersion === p.version ? to : p.sourceVersion };
    });
    this.inventory = { ...this.inventory, packages };
    return changes;
  }

  #result(
    instructionId: string | null,
    status: InstructionResult['status'],
    at: Date,
    opts: { code?: string | null; message?: string; changes?: PackageChange[]; dryRun?: boolean },
  ): InstructionResult {
    return {
      instructionId,
      status,
      code: opts.code ?? null,
      message: opts.message ?? '',
      dryRun: opts.dryRun ?? false,
      startedAt: at.toISOString(),
      finishedAt: this.#now().toISOString(),
      commands: [],
      changes: opts.changes ?? [],
      rebootRequired: false,
    };
  }

  async #answer(result: InstructionResult): Promise<void> {
    const message = resultMessage(result);
    const acked = this.#ack(message.id, 'result');
    this.#send(message);
    await acked;
  }

  #ack(id: string, kind: 'result' | 'report'): Promise<string> {
    const ws = this.#conn?.ws;
    return new Promise((resolve, reject) => {
      const onClose = (): void => {
        this.#waiting.delete(id);
        reject(new Error(`${this.hostname}: closed before the ${kind} ${id} was acknowledged`));
      };
      ws?.once('close', onClose);
      this.#waiting.set(id, (status) => {
        ws?.off('close', onClose);
        this.acked.push({ id, kind, status });
        resolve(status);
      });
    });
  }

  #send(msg: unknown): void {
    this.#conn?.send(msg);
  }
}
