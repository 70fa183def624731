import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import type * as z from 'zod';
import { ARCH, ECOSYSTEM, HOSTNAME, NO_NUL, PACKAGE_NAME, VERSION, withoutNul } from './grammar.ts';
import { InstructionResultSchema } from './instructions.ts';
import { enrollMessage, helloMessage } from './messages.ts';
import { AgentMessageSchema, InventorySchema } from './protocol.ts';
import { generateKeyPair } from './signing.ts';
import { inventoryOf } from './testing/correlate-fixtures.ts';
import { NUL_REFUSED } from './text.ts';

const keys = generateKeyPair();
const AT = '2026-12-01T10:00:00.000Z';
const result = {
  instructionId: randomUUID(),
  status: 'failed',
  code: 'PW_ERR_COMMAND_FAILED',
  message: 'apt-get exited 100',
  dryRun: false,
  startedAt: AT,
  finishedAt: AT,
  commands: [{ argv: ['apt-get', 'install'], exitCode: 100, signal: null, durationMs: 12, outputTail: 'E: broken' }],
  changes: [],
  rebootRequired: null,
};

/** Sets `value` at `path` in a copy of `doc`. */
function withValue(doc: unknown, path: readonly (string | number)[], value: string): unknown {
  const copy = structuredClone(doc) as Record<string | number, unknown>;
  let at = copy;
  for (const key of path.slice(0, -1)) at = at[key] as Record<string | number, unknown>;
  at[path.at(-1) as string | number] = value;
  return copy;
}

/**
 * Each wire field the collector writes to a column of its own: the schema that reads it,
 * a valid document, the field's path. The same document passes with the field as it is and
 * is refused, at that path and with NUL_REFUSED, with a U+0000 in it.
 */
const FIELDS: { name: string; schema: z.ZodType; doc: unknown; path: (string | number)[] }[] = [
  { name: 'enroll agentVersion (agents.agent_version)', schema: AgentMessageSchema, doc: enrollMessage({ token: 't'.repeat(32), publicKey: keys.publicKey, hostname: 'web-1', machineId: null }), path: ['agentVersion'] },
  { name: 'hello agentVersion (agents.agent_version)', schema: AgentMessageSchema, doc: helloMessage('n'.repeat(43), randomUUID(), keys.privateKeyPem), path: ['agentVersion'] },
  { name: 'report inventory kernel.release (hosts.kernel_release)', schema: AgentMessageSchema, doc: { type: 'report', id: randomUUID(), hash: 'a'.repeat(64), inventory: inventoryOf('Debian:12', 'deb', []) }, path: ['inventory', 'kernel', 'release'] },
  { name: 'inventory agentVersion', schema: InventorySchema, doc: inventoryOf('Debian:12', 'deb', []), path: ['agentVersion'] },
  { name: 'result message (rollout_hosts.detail)', schema: AgentMessageSchema, doc: { type: 'result', id: randomUUID(), result }, path: ['result', 'message'] },
];

describe('U+0000 in free text with a column of its own', () => {
  for (const f of FIELDS) {
    it(`${f.name}: valid as it is, refused with a NUL`, () => {
      const ok = f.schema.safeParse(f.doc);
      assert.equal(ok.success, true, JSON.stringify(ok.error));
      const r = f.schema.safeParse(withValue(f.doc, f.path, 'x\u0000y'));
      if (r.success) assert.fail('a NUL passed');
      assert.deepEqual(
        r.error.issues.map((i) => [i.path, i.message]),
        [[f.path, NUL_REFUSED]],
      );
    });
  }

  it('a result read on its own (a results bundle, the agent’s spool) is refused the same way', () => {
    assert.equal(InstructionResultSchema.safeParse(result).success, true);
    assert.equal(InstructionResultSchema.safeParse({ ...result, message: '\u0000' }).error?.issues[0]?.message, NUL_REFUSED);
  });

  it('JSON keeps a NUL as the six characters \\u0000, which text columns hold: output tails and argv stay free', () => {
    const json = JSON.stringify({ ...result, commands: [{ ...result.commands[0], outputTail: 'bin\u0000ary' }] });
    assert.equal(json.includes('\u0000'), false);
    assert.ok(json.includes('bin\\u0000ary'));
    assert.equal(InstructionResultSchema.safeParse(JSON.parse(json)).success, true);
  });

  it('no grammar of ours admits U+0000', () => {
    for (const [name, grammar] of Object.entries({ ARCH, ECOSYSTEM, HOSTNAME, PACKAGE_NAME, VERSION })) {
      assert.equal(grammar.test('a\u0000b'), false, name);
      assert.equal(grammar.test('\u0000'), false, name);
    }
  });

  it('NO_NUL and withoutNul', () => {
    const table: [string, boolean, string][] = [
      ['', true, ''],
      ['plain', true, 'plain'],
      ['\u0000', false, '\ufffd'],
      ['a\u0000b\u0000', false, 'a\ufffdb\ufffd'],
      ['\u0001\u001f\u007f', true, '\u0001\u001f\u007f'],
    ];
    for (const [text, clean, replaced] of table) {
      assert.equal(NO_NUL.test(text), clean, JSON.stringify(text));
      assert.equal(withoutNul(text), replaced, JSON.stringify(text));
    }
  });
});
