import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { dataPath } from '../../../shared/testing/data.ts';
import { child, parseXml } from './xml.ts';

describe('parseXml: saxes behind limits of our own', () => {
  it('reads the real noble OVAL into a tree of local names', () => {
    const root = parseXml(gunzipSync(readFileSync(dataPath('oval', 'com.ubuntu.noble.usn.oval.xml.gz'))).toString('utf8'), 'noble');
    assert.equal(root.name, 'oval_definitions');
    assert.equal(child(root, 'definitions')?.children.length, 261);
    assert.equal(child(child(root, 'generator') ?? root, 'product_name')?.text, 'Canonical USN OVAL Generator');
  });

  it('keeps the predefined entities, character references and CDATA as text', () => {
    const root = parseXml('<a x="&lt;&#65;">1 &amp; 2<![CDATA[ <b> ]]></a>', 't');
    assert.equal(root.attrs.x, '<A');
    assert.equal(root.text, '1 & 2 <b>');
  });

  const refused: [string, string, string, RegExp][] = [
    ['a DOCTYPE with no entity', '<!DOCTYPE a><a/>', 'PW_ERR_FEED_XML', /DOCTYPE/],
    ['a parameter entity', '<!DOCTYPE a [<!ENTITY % p SYSTEM "http://example.invalid/">%p;]><a/>', 'PW_ERR_FEED_XML', /DOCTYPE/],
    ['two roots', '<a/><b/>', 'PW_ERR_FEED_XML', /not well-formed|after the root/],
    ['mismatched tags', '<a><b></a>', 'PW_ERR_FEED_XML', /not well-formed/],
    ['nothing', '', 'PW_ERR_FEED_XML', /no root element|not well-formed/],
    ['65 deep', `${'<a>'.repeat(65)}${'</a>'.repeat(65)}`, 'PW_ERR_INPUT_TOO_LARGE', /deeper than 64/],
    ['a 2 MiB text node', `<a>${'x'.repeat(2 * 1024 * 1024)}</a>`, 'PW_ERR_INPUT_TOO_LARGE', /text node longer/],
    ['65 attributes', `<a ${Array.from({ length: 65 }, (_, i) => `a${i}="1"`).join(' ')}/>`, 'PW_ERR_INPUT_TOO_LARGE', /more than 64 attributes/],
  ];
  for (const [name, text, code, message] of refused) {
    it(`refuses ${name}: ${code}`, () => {
      assert.throws(() => parseXml(text, 't'), (err: Error & { code?: string }) => err.code === code && message.test(err.message));
    });
  }

  it('refuses more elements than allowed', () => {
    assert.throws(() => parseXml(`<a>${'<b/>'.repeat(11)}</a>`, 't', { maxElements: 10 }), { code: 'PW_ERR_INPUT_TOO_LARGE', message: /more than 10 elements/ });
  });
  it('64 deep is fine', () => {
    assert.equal(parseXml(`${'<a>'.repeat(64)}${'</a>'.repeat(64)}`, 't').name, 'a');
  });
});
