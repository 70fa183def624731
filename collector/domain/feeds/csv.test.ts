import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { FeedFormatError } from '../../../shared/errors.ts';
import { parseCsv } from './csv.ts';

const KEV_CSV = join(import.meta.dirname, '../../../../shared/data/kev/known_exploited_vulnerabilities-2025-11-17.csv.gz');
/** The header and first two data lines of CISA's real CSV. */
const REAL = gunzipSync(readFileSync(KEV_CSV)).toString('utf8').split('\n').slice(0, 3).join('\n');

describe('parseCsv', () => {
  it('the first real KEV rows: quoted fields with commas stay one field', () => {
    const rows = parseCsv(REAL);
    assert.equal(rows.length, 3);
    const [header, first, second] = [rows[0]!, rows[1]!, rows[2]!];
    assert.equal(header.length, 11);
    assert.equal(first.length, 11);
    assert.equal(first[0], 'CVE-2025-64446');
    assert.equal(first[6], 'Apply mitigations per vendor instructions, follow applicable BOD 22-01 guidance for cloud services, or discontinue use of the product if mitigations are unavailable.');
    assert.equal(second[0], 'CVE-2025-12480');
  });

  const CASES: [string, string, string[][]][] = [
    ['plain', 'a,b\n1,2\n', [['a', 'b'], ['1', '2']]],
    ['CRLF', 'a,b\r\n1,2\r\n', [['a', 'b'], ['1', '2']]],
    ['no final newline', 'a,b\n1,2', [['a', 'b'], ['1', '2']]],
    ['BOM', '\ufeffa,b\n1,2\n', [['a', 'b'], ['1', '2']]],
    ['quoted comma', 'a,"x, y"\n', [['a', 'x, y']]],
    ['quoted newline', 'a,"line 1\nline 2",c\nd,e,f\n', [['a', 'line 1\nline 2', 'c'], ['d', 'e', 'f']]],
    ['quoted CRLF kept', 'a,"1\r\n2"\r\n', [['a', '1\r\n2']]],
    ['doubled quotes', 'a,"say ""hi"", ok"\n', [['a', 'say "hi", ok']]],
    ['empty fields', ',,\n', [['', '', '']]],
    ['empty quoted field', '"",x\n', [['', 'x']]],
    ['quote inside an unquoted field is literal', 'a,b"c\n', [['a', 'b"c']]],
    ['empty input', '', []],
  ];
  for (const [name, input, expected] of CASES) {
    it(`${name}: ${JSON.stringify(input)}`, () => {
      assert.deepEqual(parseCsv(input), expected);
    });
  }

  const BAD: [string, string][] = [
    ['quote never closed', 'a,"open\n1,2\n'],
    ['text after a closing quote', 'a,"x"y,z\n'],
  ];
  for (const [name, input] of BAD) {
    it(`refuses ${name}: ${JSON.stringify(input)}`, () => {
      assert.throws(() => parseCsv(input), (e: unknown) => e instanceof FeedFormatError && e.code === 'PW_ERR_FEED_FORMAT');
    });
  }
});
