import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { MAX_INSTRUCTION_BYTES, PatchTargetSchema, type Instruction, type SignedInstruction } from '../../shared/instructions.ts';
import { signBytes } from '../../shared/signing.ts';
import { fixture, patchInstruction, realSecurityUpgrades, sign, signRaw, type Fixture } from '../../shared/testing/executor-fixtures.ts';
import { MAX_ENVELOPE_BYTES, REFUSAL_CODES, unsafePackageName, verifyInstruction, type VerifyResult } from './verify.ts';

const HOUR = 3600_000;
const f = fixture();
const at = (ms: number): string => new Date(f.now.getTime() + ms).toISOString();

function verify(signed: unknown, ledgerIds: string[] = [], fx: Fixture = f): VerifyResult {
  const ids = new Set(ledgerIds);
  return verifyInstruction(signed, { collectorPublicKey: fx.collector.publicKey, agentId: fx.agentId, now: fx.now, ledger: { has: (id) => ids.has(id) } });
}

/** A real signed instruction whose payload is the signed one with `edit` applied, re-signed by the collector: the signature holds, the content is hostile. */
function signedPayload(edit: (raw: Record<string, unknown>) => unknown): SignedInstruction {
  const raw = JSON.parse(sign(f, patchInstruction(f)).payload) as Record<string, unknown>;
  return signRaw(f.collector.privateKeyPem, JSON.stringify(edit(raw)));
}

function withName(name: string): SignedInstruction {
  return signedPayload((raw) => ({ ...raw, packages: [{ name, version: null }] }));
}

function flipByte(s: SignedInstruction, at: number): SignedInstruction {
  const bytes = Buffer.from(s.payload, 'utf8');
  bytes[at] = bytes[at] === 0x31 ? 0x32 : 0x31;
  return { ...s, payload: bytes.toString('utf8') };
}

interface Case {
  name: string;
  signed: () => unknown;
  ledger?: string[];
  code: string | null;
  /** The id the refusal must carry (true: the instruction's own). */
  id?: boolean;
}

const replayed = patchInstruction(f);
const cases: Case[] = [
  { name: 'a patch signed by the pinned key, for this agent, in its window', signed: () => sign(f, patchInstruction(f)), code: null },
  { name: 'not yet due (notBefore in an hour): held, not refused', signed: () => sign(f, patchInstruction(f, { notBefore: at(HOUR) })), code: null },
  { name: 'expired 30 s ago, within the clock-skew allowance', signed: () => sign(f, patchInstruction(f, { expiresAt: at(-30_000) })), code: null },
  { name: 'the envelope as JSON text (a wire frame)', signed: () => JSON.stringify(sign(f, patchInstruction(f))), code: null },
  { name: 'the envelope as a Buffer (a file)', signed: () => Buffer.from(JSON.stringify(sign(f, patchInstruction(f)))), code: null },

  { name: 'unsigned: a bare instruction with no envelope', signed: () => patchInstruction(f), code: REFUSAL_CODES.signature, id: true },
  { name: 'unsigned: an envelope without a signature', signed: () => ({ payload: sign(f, patchInstruction(f)).payload }), code: REFUSAL_CODES.signature, id: true },
  { name: 'unsigned: an empty signature', signed: () => ({ ...sign(f, patchInstruction(f)), signature: '' }), code: REFUSAL_CODES.signature, id: true },
  { name: 'wrongly signed: 64 random bytes', signed: () => ({ ...sign(f, patchInstruction(f)), signature: randomBytes(64).toString('base64url') }), code: REFUSAL_CODES.signature },
  { name: 'wrongly signed: a signature of the wrong length', signed: () => ({ ...sign(f, patchInstruction(f)), signature: randomBytes(32).toString('base64url') }), code: REFUSAL_CODES.signature },
  { name: 'wrongly signed: the payload without the domain tag', signed: () => {
    const s = sign(f, patchInstruction(f));
    return { ...s, signature: signBytes(f.collector.privateKeyPem, Buffer.from(s.payload, 'utf8')) };
  }, code: REFUSAL_CODES.signature },
  { name: 'signed by another key', signed: () => signRaw(f.stranger.privateKeyPem, sign(f, patchInstruction(f)).payload), code: REFUSAL_CODES.signature },
  { name: 'tampered: one byte of the package version changed', signed: () => {
    const s = sign(f, patchInstruction(f));
    return flipByte(s, s.payload.indexOf('"version":"') + 11);
  }, code: REFUSAL_CODES.signature },
  { name: 'tampered: the agent id re-addressed to another agent', signed: () => {
    const s = sign(f, patchInstruction(f));
    return { ...s, payload: s.payload.replace(f.agentId, randomUUID()) };
  }, code: REFUSAL_CODES.signature },
  { name: 'tampered: dryRun true turned into false', signed: () => {
    const s = sign(f, patchInstruction(f, { dryRun: true }));
    return { ...s, payload: s.payload.replace('"dryRun":true', '"dryRun":false') };
  }, code: REFUSAL_CODES.signature },

  { name: "another agent's", signed: () => sign(f, patchInstruction(f, { agentId: randomUUID() })), code: REFUSAL_CODES.target, id: true },
  { name: 'expired an hour ago', signed: () => sign(f, patchInstruction(f, { expiresAt: at(-HOUR) })), code: REFUSAL_CODES.expired, id: true },
  { name: 'never due: notBefore after expiresAt', signed: () => sign(f, patchInstruction(f, { notBefore: at(3 * HOUR), expiresAt: at(2 * HOUR) })), code: REFUSAL_CODES.expired, id: true },
  { name: 'replayed: its id is in the ledger', signed: () => sign(f, replayed), ledger: [replayed.id], code: REFUSAL_CODES.replayed, id: true },

  { name: "unknown kind 'shell'", signed: () => signedPayload((raw) => ({ ...raw, kind: 'shell', command: 'id' })), code: REFUSAL_CODES.kind, id: true },
  { name: 'no kind at all', signed: () => signedPayload(({ kind: _k, ...raw }) => raw), code: REFUSAL_CODES.kind, id: true },
  { name: "name '-oAPT::Update::Pre-Invoke::=touch /tmp/pw'", signed: () => withName('-oAPT::Update::Pre-Invoke::=touch /tmp/pw'), code: REFUSAL_CODES.unsafeName, id: true },
  { name: "name '--allow-unauthenticated'", signed: () => withName('--allow-unauthenticated'), code: REFUSAL_CODES.unsafeName, id: true },
  { name: "name 'foo;rm -rf /'", signed: () => withName('foo;rm -rf /'), code: REFUSAL_CODES.unsafeName, id: true },
  { name: "name 'openssl$(reboot)'", signed: () => withName('openssl$(reboot)'), code: REFUSAL_CODES.unsafeName, id: true },
  { name: 'name with a backtick', signed: () => withName('openssl`id`'), code: REFUSAL_CODES.unsafeName, id: true },
  { name: 'name with a newline', signed: () => withName('openssl\nreboot'), code: REFUSAL_CODES.unsafeName, id: true },
  { name: 'name with a glob', signed: () => withName('linux-image-*'), code: REFUSAL_CODES.unsafeName, id: true },

  { name: 'oversize payload (signed)', signed: () => signRaw(f.collector.privateKeyPem, ' '.repeat(MAX_INSTRUCTION_BYTES + 1)), code: REFUSAL_CODES.tooLarge },
  { name: 'oversize frame text', signed: () => 'x'.repeat(MAX_ENVELOPE_BYTES + 1), code: REFUSAL_CODES.tooLarge },
  { name: 'non-JSON payload (signed)', signed: () => signRaw(f.collector.privateKeyPem, 'kind=patch agent=all'), code: REFUSAL_CODES.malformed },
  { name: 'truncated payload (signed)', signed: () => signRaw(f.collector.privateKeyPem, sign(f, patchInstruction(f)).payload.slice(0, 100)), code: REFUSAL_CODES.malformed },
  { name: 'a JSON array payload (signed)', signed: () => signRaw(f.collector.privateKeyPem, '[]'), code: REFUSAL_CODES.malformed },
  { name: 'a missing expiresAt (signed)', signed: () => signedPayload(({ expiresAt: _e, ...raw }) => raw), code: REFUSAL_CODES.malformed, id: true },
  { name: 'an extra field (signed)', signed: () => signedPayload((raw) => ({ ...raw, exec: '/bin/sh' })), code: REFUSAL_CODES.malformed, id: true },
  { name: 'an extra envelope field', signed: () => ({ ...sign(f, patchInstruction(f)), publicKey: f.stranger.publicKey }), code: REFUSAL_CODES.malformed, id: true },
  { name: 'frame text that is not JSON', signed: () => '{"payload": ', code: REFUSAL_CODES.malformed },
  { name: 'binary garbage', signed: () => randomBytes(512), code: REFUSAL_CODES.malformed },
  { name: 'null', signed: () => null, code: REFUSAL_CODES.malformed },
  { name: 'a number', signed: () => 42, code: REFUSAL_CODES.malformed },
  { name: 'an array', signed: () => [sign(f, patchInstruction(f))], code: REFUSAL_CODES.malformed },
];

describe('verifyInstruction', () => {
  for (const c of cases) {
    it(c.code === null ? `accepts ${c.name}` : `refuses ${c.name} with ${c.code}`, () => {
      const signed = c.signed();
      const r = verify(signed, c.ledger);
      if (c.code === null) {
        assert.equal(r.ok, true, r.ok ? '' : `${r.code}: ${r.message}`);
        return;
      }
      assert.equal(r.ok, false);
      assert.equal(r.code, c.code, r.message);
      assert.ok(r.message.length > 0 && r.message.length < 1000, r.message);
      if (c.id === true) {
        assert.match(r.instructionId ?? '', /^[0-9a-f-]{36}$/, 'the refusal names the instruction');
      }
    });
  }

  it('reads nothing from the message as a key: a payload naming another key still needs the pinned one', () => {
    const s = signRaw(f.stranger.privateKeyPem, JSON.stringify({ ...patchInstruction(f), collectorPublicKey: f.stranger.publicKey }));
    const r = verify({ ...s });
    assert.equal(r.ok ? null : r.code, REFUSAL_CODES.signature);
  });

  it('compares ids case-insensitively against the ledger', () => {
    const i = patchInstruction(f);
    const r = verify(sign(f, i), [i.id.toLowerCase()]);
    assert.equal(r.ok ? null : r.code, REFUSAL_CODES.replayed);
  });
});

describe('unsafe package names, both layers', () => {
  const names: { name: string; unsafe: boolean }[] = [
    ...realSecurityUpgrades().slice(0, 5).map((u) => ({ name: u.name, unsafe: false })),
    { name: 'libstdc++6', unsafe: false },
    { name: 'python3.11', unsafe: false },
    { name: '-oAPT::Get::AllowUnauthenticated=true', unsafe: true },
    { name: '-y', unsafe: true },
    { name: 'foo;rm -rf /', unsafe: true },
    { name: 'foo$(id)', unsafe: true },
    { name: 'foo|sh', unsafe: true },
    { name: 'foo&&reboot', unsafe: true },
    { name: 'foo bar', unsafe: true },
    { name: "foo'", unsafe: true },
    { name: 'foo>/etc/passwd', unsafe: true },
    { name: 'foo\u0000', unsafe: true },
    { name: '', unsafe: true },
  ];
  for (const n of names) {
    it(`${JSON.stringify(n.name)} is ${n.unsafe ? 'refused by unsafePackageName and by the schema' : 'accepted by both'}`, () => {
      const why = unsafePackageName(n.name);
      assert.equal(why !== null, n.unsafe, why ?? '');
      assert.equal(PatchTargetSchema.safeParse({ name: n.name, version: null }).success, !n.unsafe);
    });
  }
});

describe('verifyInstruction keeps its order', () => {
  const order: { name: string; make: () => unknown; code: string }[] = [
    {
      name: "another agent's, expired and replayed, but signed by another key: the signature is checked first",
      make: () => signRaw(f.stranger.privateKeyPem, JSON.stringify(patchInstruction(f, { agentId: randomUUID(), expiresAt: at(-HOUR) }))),
      code: REFUSAL_CODES.signature,
    },
    {
      name: "expired and another agent's: the target is checked before the time",
      make: () => sign(f, patchInstruction(f, { agentId: randomUUID(), expiresAt: at(-HOUR) })),
      code: REFUSAL_CODES.target,
    },
    {
      name: 'an unknown kind with an unsafe name: the kind is checked first',
      make: () => signedPayload((raw) => ({ ...raw, kind: 'exec', packages: [{ name: '-oX', version: null }] })),
      code: REFUSAL_CODES.kind,
    },
  ];
  for (const o of order) {
    it(o.name, () => {
      const r = verify(o.make());
      assert.equal(r.ok ? null : r.code, o.code);
    });
  }

  it('an accepted instruction comes back parsed, with its own fields', () => {
    const i: Instruction = patchInstruction(f);
    const r = verify(sign(f, i));
    assert.ok(r.ok);
    assert.deepEqual(r.instruction, i);
  });
});
