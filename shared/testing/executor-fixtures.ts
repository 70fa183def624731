/**
 * Test support for the executor: real ed25519 keys, instructions signed the way the
 * collector signs them, and targets taken from this Debian 12 host's real pending
 * security upgrades (../shared/data). Tests only: never imported by the agent itself.
 */
import { randomUUID } from 'node:crypto';
import { instructionSigningBytes, type Instruction, type SignedInstruction, signInstruction } from '../instructions.ts';
import { generateKeyPair, type KeyPair, signBytes } from '../signing.ts';
import { readData } from './data.ts';
import { type AgentConfigInput, saveConfig } from '../../agent/daemon/config.ts';

export interface SecurityUpgrade {
  name: string;
  installed: string;
  candidate: string;
}

/** `apt list --upgradable` lines from bookworm-security: `apt/oldstable-security 2.6.2 amd64 [upgradable from: 2.6.1]`. */
export function realSecurityUpgrades(): SecurityUpgrade[] {
  const out: SecurityUpgrade[] = [];
  for (const line of readData('host-inventory', 'debian12-host.apt-list-upgradable.txt').split('\n')) {
    const m = /^([^/\s]+)\/\S*-security (\S+) \S+ \[upgradable from: ([^\]]+)\]$/.exec(line);
    if (m !== null) out.push({ name: m[1] as string, candidate: m[2] as string, installed: m[3] as string });
  }
  return out;
}

export interface Fixture {
  collector: KeyPair;
  /** Another collector's keys: what a stolen or foreign key signs with. */
  stranger: KeyPair;
  agentId: string;
  now: Date;
}

export function fixture(now = new Date('2026-11-26T18:00:00.000Z')): Fixture {
  return { collector: generateKeyPair(), stranger: generateKeyPair(), agentId: randomUUID(), now };
}

const HOUR = 3600_000;

/** A patch instruction for the first real security upgrade, valid from an hour ago for a day. */
export function patchInstruction(f: Fixture, overrides: Partial<Instruction> = {}): Instruction {
  const up = realSecurityUpgrades()[0];
  if (up === undefined) throw new Error('no security upgrade in debian12-host.apt-list-upgradable.txt');
  const base: Instruction = {
    schema: 'patchwarden.instruction/1',
    id: randomUUID(),
    agentId: f.agentId,
    issuedAt: new Date(f.now.getTime() - HOUR).toISOString(),
    notBefore: new Date(f.now.getTime() - HOUR).toISOString(),
    expiresAt: new Date(f.now.getTime() + 24 * HOUR).toISOString(),
    rolloutId: null,
    dryRun: false,
    kind: 'patch',
    packages: [{ name: up.name, version: up.candidate }],
    advisories: [],
  };
  return { ...base, ...overrides } as Instruction;
}

export function sign(f: Fixture, instruction: Instruction): SignedInstruction {
  return signInstruction(instruction, f.collector.privateKeyPem);
}

/** Signs any text with the collector's real key, bypassing the schema: what a buggy or hostile collector could send. */
export function signRaw(privateKeyPem: string, payload: string): SignedInstruction {
  return { payload, signature: signBytes(privateKeyPem, instructionSigningBytes(payload)) };
}

/** A refresh for the fixture's agent: the instruction that changes nothing on a host. */
export function refreshInstruction(f: Fixture, overrides: Partial<Instruction> = {}): Instruction {
  const { packages: _p, advisories: _a, ...common } = patchInstruction(f) as Extract<Instruction, { kind: 'patch' }>;
  return { ...common, kind: 'refresh', ...overrides } as Instruction;
}

/** The config `enroll` would have written for the fixture's agent, at `config` (key file `agent.key` beside it, spool under state/). */
export async function saveEnrolledConfig(config: string, f: Fixture, extra: Partial<AgentConfigInput> = {}): Promise<void> {
  await saveConfig(config, {
    collectorUrl: 'wss://collector.example:8443/v1/agent',
    agentId: f.agentId,
    collectorPublicKey: f.collector.publicKey,
    keyFile: 'agent.key',
    spoolDir: 'state/spool',
    spoolMaxBytes: 1024 * 1024,
    intervalSeconds: 900,
    ...extra,
  });
}
