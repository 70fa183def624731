/**
 * Protocol versions (semver strings, `1.1.0`): one reading for agent and collector. A peer
 * is accepted when its major is ours (`^major`, DESIGN.md); a minor says which optional
 * parts the peer speaks.
 */
import { PROTOCOL_VERSION } from './protocol.ts';

/** Reports that name their package set (`report.packageSet`, ack `packages-unknown`) came with 1.1. */
export const PACKAGES_BY_REFERENCE_SINCE = { major: 1, minor: 1 } as const;

const SEMVER = /^(\d+)\.(\d+)\.\d+(?:-[0-9A-Za-z.-]+)?$/;

export function parseProtocolVersion(v: string): { major: number; minor: number } | null {
  const m = SEMVER.exec(v);
  return m === null ? null : { major: Number(m[1]), minor: Number(m[2]) };
}

const OURS = parseProtocolVersion(PROTOCOL_VERSION) ?? { major: -1, minor: -1 };
export const PROTOCOL_MAJOR = OURS.major;

/** The peer's protocol is accepted when its major is ours. */
export function acceptsProtocol(peer: string): boolean {
  return parseProtocolVersion(peer)?.major === OURS.major;
}

/** Whether a peer speaking `peer` has what came with `since` (same major, at least that minor). */
export function protocolAtLeast(peer: string, since: { major: number; minor: number }): boolean {
  const v = parseProtocolVersion(peer);
  return v !== null && v.major === since.major && v.minor >= since.minor;
}
