import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createNamedLogger } from './log.ts';

function logged(fields: Record<string, unknown>): Record<string, unknown> {
  const lines: string[] = [];
  const log = createNamedLogger('patchwarden-test', { destination: { write: (s: string) => lines.push(s) } });
  log.info(fields, 'message');
  return JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
}

describe('createNamedLogger: secrets are redacted by field name', () => {
  const cases: { name: string; fields: Record<string, unknown>; path: string[] }[] = [
    { name: 'an enrollment token', fields: { token: 'pwe_secret' }, path: ['token'] },
    { name: 'a token inside a message', fields: { frame: { type: 'enroll', token: 'pwe_secret' } }, path: ['frame', 'token'] },
    { name: 'a token two levels down', fields: { req: { body: { token: 'pwe_secret' } } }, path: ['req', 'body', 'token'] },
    { name: 'an Authorization header', fields: { headers: { authorization: 'Bearer pwa_secret' } }, path: ['headers', 'authorization'] },
    { name: 'a private key PEM', fields: { key: { privateKeyPem: '-----BEGIN PRIVATE KEY-----' } }, path: ['key', 'privateKeyPem'] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const line = logged(c.fields);
      let v: unknown = line;
      for (const k of c.path) v = (v as Record<string, unknown>)[k];
      assert.equal(v, '[redacted]');
      assert.equal(line.name, 'patchwarden-test');
      assert.doesNotMatch(JSON.stringify(line), /secret|BEGIN PRIVATE/);
    });
  }
});
