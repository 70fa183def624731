import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PROTOCOL_VERSION } from './protocol.ts';
import { acceptsProtocol, PACKAGES_BY_REFERENCE_SINCE, parseProtocolVersion, protocolAtLeast } from './protocol-version.ts';

describe('acceptsProtocol (^major)', () => {
  const cases: [string, boolean][] = [
    [PROTOCOL_VERSION, true],
    ['1.0.0', true],
    ['1.7.3', true],
    ['1.0.0-beta.1', true],
    ['1.2.0-beta.1', true],
    ['2.0.0', false],
    ['0.9.0', false],
    ['1.0', false],
    ['', false],
    ['banana', false],
    ['1.0.0; DROP TABLE agents', false],
  ];
  for (const [v, want] of cases) {
    it(`${JSON.stringify(v)} -> ${want}`, () => {
      assert.equal(acceptsProtocol(v), want);
    });
  }
});

describe('protocolAtLeast: packages by reference (1.1)', () => {
  const cases: [string, boolean][] = [
    ['1.0.0', false],
    ['1.1.0', true],
    ['1.4.2', true],
    ['2.1.0', false],
    ['1.1', false],
    ['x.1.0', false],
  ];
  for (const [v, want] of cases) {
    it(`${v} -> ${want}`, () => {
      assert.equal(protocolAtLeast(v, PACKAGES_BY_REFERENCE_SINCE), want);
    });
  }

  it('our own version has it', () => {
    assert.equal(protocolAtLeast(PROTOCOL_VERSION, PACKAGES_BY_REFERENCE_SINCE), true);
    assert.deepEqual(parseProtocolVersion('1.1.0'), { major: 1, minor: 1 });
  });
});
