/**
 * Builders for the wire frames of shared/protocol.ts, so the agent, the collector and the
 * test doubles build each frame in one place, typed by its schema. They build; they do not
 * validate (the receiving side parses every frame with the schema). Key order is part of
 * what they fix: a frame's JSON is the same bytes whoever builds it.
 */
import { randomUUID, type KeyObject } from 'node:crypto';
import type { z } from 'zod';
import type { InstructionResult } from './instructions.ts';
import { inventoryHash, packageSetHash } from './inventory-hash.ts';
import {
  type AckMessageSchema,
  type ChallengeMessageSchema,
  type EnrolledMessageSchema,
  type EnrollMessageSchema,
  type ErrorMessageSchema,
  type HelloMessageSchema,
  type InstructionMessageSchema,
  type Inventory,
  LIMITS,
  PROTOCOL_VERSION,
  type ReportMessage,
  type ResultMessage,
  type WelcomeMessageSchema,
} from './protocol.ts';
import { helloPayload, signBytes } from './signing.ts';
import { AGENT_VERSION } from './version.ts';

export type ChallengeMessage = z.infer<typeof ChallengeMessageSchema>;
export type EnrollMessage = z.infer<typeof EnrollMessageSchema>;
export type HelloMessage = z.infer<typeof HelloMessageSchema>;
export type AckMessage = z.infer<typeof AckMessageSchema>;
export type EnrolledMessage = z.infer<typeof EnrolledMessageSchema>;
export type WelcomeMessage = z.infer<typeof WelcomeMessageSchema>;
export type InstructionMessage = z.infer<typeof InstructionMessageSchema>;
export type ErrorMessage = z.infer<typeof ErrorMessageSchema>;

/** What a protocol-version test overrides; everything else says this build. */
export interface Versions {
  protocol?: string;
  agentVersion?: string;
}

export function challengeMessage(nonce: string, protocol: string = PROTOCOL_VERSION): ChallengeMessage {
  return { type: 'challenge', protocol, nonce };
}

export function enrollMessage(fields: { token: string; publicKey: string; hostname: string; machineId: string | null } & Versions): EnrollMessage {
  return {
    type: 'enroll',
    protocol: fields.protocol ?? PROTOCOL_VERSION,
    agentVersion: fields.agentVersion ?? AGENT_VERSION,
    token: fields.token,
    publicKey: fields.publicKey,
    hostname: fields.hostname,
    machineId: fields.machineId,
  };
}

/** The hello that proves the agent's key: its signature over helloPayload(nonce, agentId). */
export function helloMessage(nonce: string, agentId: string, privateKey: KeyObject | string, versions: Versions = {}): HelloMessage {
  return {
    type: 'hello',
    protocol: versions.protocol ?? PROTOCOL_VERSION,
    agentVersion: versions.agentVersion ?? AGENT_VERSION,
    agentId,
    signature: signBytes(privateKey, helloPayload(nonce, agentId)),
  };
}

/** A report carrying its inventory; `hash` when the caller has it already (it is inventoryHash of the inventory). */
export function fullReport(inventory: Inventory, hash: string = inventoryHash(inventory), id: string = randomUUID()): ReportMessage {
  return { type: 'report', id, hash, inventory };
}

/** A hash-only report: unchanged since the inventory with this hash, which the collector holds. */
export function unchangedReport(hash: string, id: string = randomUUID()): ReportMessage {
  return { type: 'report', id, hash, inventory: null };
}

/**
 * The report that names its package set instead of carrying it (protocol 1.1): the same id
 * and hash as the full report, the inventory with no packages. A collector without the set
 * acks packages-unknown and the full report follows.
 */
export function packageSetReport(report: Pick<ReportMessage, 'id' | 'hash'>, inventory: Inventory, packageSet: string = packageSetHash(inventory.packages)): ReportMessage {
  return { type: 'report', id: report.id, hash: report.hash, inventory: { ...inventory, packages: [] }, packageSet };
}

export function resultMessage(result: InstructionResult, id: string = randomUUID()): ResultMessage {
  return { type: 'result', id, result };
}

export function ackMessage(id: string, status: AckMessage['status']): AckMessage {
  return { type: 'ack', id, status };
}

export function enrolledMessage(agentId: string, collectorPublicKey: string): EnrolledMessage {
  return { type: 'enrolled', agentId, collectorPublicKey };
}

export function welcomeMessage(agentId: string, heartbeatSeconds: number, inventoryHash: string | null): WelcomeMessage {
  return { type: 'welcome', agentId, heartbeatSeconds, inventoryHash };
}

export function instructionMessage(signed: { payload: string; signature: string }): InstructionMessage {
  return { type: 'instruction', payload: signed.payload, signature: signed.signature };
}

/** An `error` frame (named apart from shared/errors.ts's errorMessage). The message is cut to what the schema allows: an error must never be refused for its own length. */
export function wireError(code: string, message: string): ErrorMessage {
  return { type: 'error', code, message: message.slice(0, LIMITS.text) };
}
