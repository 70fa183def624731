import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LIMITS } from '../../../shared/grammar.ts';
import { INSTRUCTION_SCHEMA, instructionPayload, MAX_INSTRUCTION_BYTES, type PatchInstruction, type PatchTarget } from '../../../shared/instructions.ts';
import { patchParts } from './patch-parts.ts';

const base = (advisories: string[] = ['DSA-5764-1']): Omit<PatchInstruction, 'packages'> => ({
  schema: INSTRUCTION_SCHEMA,
  id: '00000000-0000-4000-8000-000000000001',
  agentId: '00000000-0000-4000-8000-000000000002',
  issuedAt: '2026-11-26T18:00:00.000Z',
  notBefore: '2026-11-26T18:00:00.000Z',
  expiresAt: '2026-11-27T18:00:00.000Z',
  rolloutId: '00000000-0000-4000-8000-000000000003',
  dryRun: false,
  kind: 'patch',
  advisories,
});

const named = (n: number, len: number, version: string | null = null): PatchTarget[] =>
  Array.from({ length: n }, (_, i) => ({ name: `p${i}-`.padEnd(len, 'x'), version }));

describe('patchParts: a patch as instructions the agent accepts', () => {
  const rows: { name: string; packages: PatchTarget[]; advisories?: string[]; maxBytes?: number; parts: number }[] = [
    { name: 'three packages: one instruction', packages: named(3, 10), parts: 1 },
    { name: 'none: nothing', packages: [], parts: 0 },
    { name: `${LIMITS.list} short names: two, by bytes (the byte limit binds first)`, packages: named(LIMITS.list, 6), parts: 2 },
    { name: `${LIMITS.list} short names within 1 MiB: one, at the count limit`, packages: named(LIMITS.list, 6), maxBytes: 1024 * 1024, parts: 1 },
    { name: `${LIMITS.list + 1} short names within 1 MiB: two, by count`, packages: named(LIMITS.list + 1, 6), maxBytes: 1024 * 1024, parts: 2 },
    { name: '2,000 names of 256 characters: three, by bytes', packages: named(2000, 256), parts: 3 },
    { name: '1,000 pinned names and versions of 256 characters (the plan limit): three', packages: named(1000, 256, '1:'.padEnd(256, '9')), parts: 3 },
    { name: 'advisories taking half the room leave the rest for packages', packages: named(1000, 200), advisories: Array.from({ length: 1000 }, (_, i) => `ALSA-2026:${String(i).padStart(118, '0')}`), parts: 2 },
  ];
  for (const r of rows) {
    it(r.name, () => {
      const b = base(r.advisories);
      const parts = patchParts(b, r.packages, r.maxBytes);
      assert.equal(parts.length, r.parts);
      assert.deepEqual(parts.flat(), r.packages, 'every package once, in order');
      for (const packages of parts) {
        assert.ok(packages.length <= LIMITS.list);
        // What the signer checks: the schema and the signed size.
        if (r.maxBytes === undefined) assert.ok(Buffer.byteLength(instructionPayload({ ...b, packages })) <= MAX_INSTRUCTION_BYTES);
      }
    });
  }

  it('refuses with PW_ERR_INSTRUCTION_BUILD when the advisories leave no room for one package', () => {
    const advisories = Array.from({ length: 2100 }, (_, i) => `ALSA-2026:${String(i).padStart(118, '0')}`);
    assert.throws(() => patchParts(base(advisories), named(1, 10)), { code: 'PW_ERR_INSTRUCTION_BUILD' });
  });
});

describe('instructionPayload: what the agent would refuse is never signed', () => {
  const rows: { name: string; over: Partial<PatchInstruction>; message: RegExp }[] = [
    { name: 'an advisory id over 128 characters', over: { advisories: [`ALSA-2026:${'9'.repeat(130)}`] }, message: /advisories\.0: / },
    { name: `more than ${LIMITS.list} packages`, over: { packages: named(LIMITS.list + 1, 6) }, message: /packages: / },
    { name: 'more than 256 KiB of text', over: { packages: named(3000, 256) }, message: new RegExp(`is \\d+ bytes; an instruction is at most ${MAX_INSTRUCTION_BYTES}`) },
  ];
  for (const r of rows) {
    it(r.name, () => {
      assert.throws(() => instructionPayload({ ...base(), packages: named(1, 8), ...r.over }), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'PW_ERR_INSTRUCTION_BUILD');
        assert.match(err.message, r.message);
        assert.ok(!err.message.includes('9'.repeat(130)), 'names the field, never its value');
        return true;
      });
    });
  }
});
