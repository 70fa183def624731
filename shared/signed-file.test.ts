import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { generateKeyPair } from './signing.ts';
import { ResultBundleSchema } from './instructions.ts';
import { encodeSignedFile, isSignedFile, MAX_HEADER_BYTES, parseSignedBody, readSignedFile, type ReadSignedFileOptions, signedFilesIn } from './signed-file.ts';
import { readData } from './testing/data.ts';

const agent = generateKeyPair();
const other = generateKeyPair();
const SIGNER = '0b6f1c1e-8a55-4d0e-9a77-3f7c6f4a2b10';
// A real body: the RHEL 9.5 image's rpm manifest, 60 KB of JSON.
const BODY = Buffer.from(readData('host-inventory', 'rhel9.5-httpd-24.rpm-manifest.claircore-fixture.json.gz'), 'utf8');
const CREATED = new Date('2026-11-27T03:00:00.000Z');

const OPTIONS: ReadSignedFileOptions = { kind: 'report', maxBodyBytes: 1 << 20, keyOf: (s) => (s === SIGNER ? agent.publicKey : undefined) };

async function tempFile(t: TestContext, bytes: Uint8Array): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-signed-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'f.pwreport');
  await writeFile(file, bytes);
  return file;
}

function read(file: string, options = OPTIONS): ReturnType<typeof readSignedFile> {
  return readSignedFile(file, file, options);
}

function good(body: Uint8Array = BODY, key = agent.privateKeyPem, signer = SIGNER): Buffer {
  return encodeSignedFile({ kind: 'report', signer, createdAt: CREATED, body, key });
}

/** Replaces one header field and re-serialises the header, keeping the old signature. */
function withHeader(file: Buffer, patch: Record<string, unknown>): Buffer {
  const nl = file.indexOf(0x0a);
  const header = { ...(JSON.parse(file.subarray(0, nl).toString('utf8')) as Record<string, unknown>), ...patch };
  return Buffer.concat([Buffer.from(JSON.stringify(header) + '\n'), file.subarray(nl + 1)]);
}

describe('signed files', () => {
  it('round trip: the body comes back byte for byte with its header', async (t) => {
    const { header, body } = await read(await tempFile(t, good()));
    assert.ok(body.equals(BODY));
    assert.deepEqual([header.kind, header.signer, header.createdAt, header.bytes], ['report', SIGNER, CREATED.toISOString(), BODY.length]);
  });

  it('an empty body is a valid file', async (t) => {
    assert.equal((await read(await tempFile(t, good(Buffer.alloc(0))))).body.length, 0);
  });

  const flipped = (at: (f: Buffer) => number) => (f: Buffer) => {
    const copy = Buffer.from(f);
    const i = at(copy);
    copy[i] = (copy[i] ?? 0) ^ 0x01;
    return copy;
  };
  const refusals: [string, (f: Buffer) => Buffer, string, RegExp, ReadSignedFileOptions?][] = [
    ['one body byte changed', flipped((f) => f.length - 100), 'PW_ERR_FILE_TAMPERED', /'s body does not match its signed sha256/],
    ['the first body byte changed', flipped((f) => f.indexOf(0x0a) + 1), 'PW_ERR_FILE_TAMPERED', /body does not match/],
    ['bytes appended', (f) => Buffer.concat([f, Buffer.from('{"more":1}')]), 'PW_ERR_FILE_TAMPERED', /10 bytes after its signed body/],
    ['the body cut short', (f) => f.subarray(0, f.length - 1), 'PW_ERR_FILE_TRUNCATED', /cut short: \d+ of \d+ body bytes/],
    ['cut inside the header', (f) => f.subarray(0, 50), 'PW_ERR_FILE_TRUNCATED', /ends inside its header/],
    ['an empty file', () => Buffer.alloc(0), 'PW_ERR_FILE_TRUNCATED', /is empty/],
    ['createdAt moved in the header', (f) => withHeader(f, { createdAt: '2027-01-01T00:00:00.000Z' }), 'PW_ERR_FILE_TAMPERED', /signature does not verify/],
    ['bytes and sha256 of another body', (f) => withHeader(Buffer.concat([f.subarray(0, f.indexOf(0x0a) + 1), Buffer.from('{}')]), { bytes: 2, sha256: '44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a' }), 'PW_ERR_FILE_TAMPERED', /signature does not verify/],
    ['signed by another key under this signer', () => good(BODY, other.privateKeyPem), 'PW_ERR_FILE_TAMPERED', /header signature does not verify with 0b6f1c1e/],
    ['a signer this reader does not know', () => good(BODY, agent.privateKeyPem, 'e0c5d2aa-1111-4222-8333-944455556666'), 'PW_ERR_FILE_FOREIGN', /whom this collector does not know/],
    ['another kind of file', (f) => withHeader(f, { kind: 'feed-bundle' }), 'PW_ERR_FILE_FOREIGN', /is a feed-bundle file, not a report file/],
    ['a body over the limit', (f) => f, 'PW_ERR_INPUT_TOO_LARGE', /over the 1000-byte limit/, { ...OPTIONS, maxBodyBytes: 1000 }],
    ['plain JSON (a pretty-printed manifest), not a signed file', () => Buffer.from(BODY), 'PW_ERR_MALFORMED_INPUT', /is not a patchwarden file: its first line is not JSON/],
    ['a header line that is not JSON', () => Buffer.from('PK\u0003\u0004 zip\n'), 'PW_ERR_MALFORMED_INPUT', /first line is not JSON/],
    ['a header of another format', (f) => withHeader(f, { format: 'patchwarden.file/2' }), 'PW_ERR_MALFORMED_INPUT', /invalid header: format/],
    ['an extra header field', (f) => withHeader(f, { owner: 'x' }), 'PW_ERR_MALFORMED_INPUT', /invalid header/],
    ['a signer with a path in it', (f) => withHeader(f, { signer: '../../etc/passwd' }), 'PW_ERR_MALFORMED_INPUT', /invalid header: signer/],
    ['a negative size', (f) => withHeader(f, { bytes: -1 }), 'PW_ERR_MALFORMED_INPUT', /invalid header: bytes/],
    ['a header line longer than the limit', () => Buffer.from(`{"format":"${'x'.repeat(MAX_HEADER_BYTES)}"}\n`), 'PW_ERR_MALFORMED_INPUT', /no header line/],
  ];
  for (const [name, mutate, code, message, options] of refusals) {
    it(`refused: ${name} (${code})`, async (t) => {
      const file = await tempFile(t, mutate(good()));
      await assert.rejects(read(file, options), (err: Error & { code?: string }) => {
        assert.equal(err.code, code, err.message);
        assert.match(err.message, message);
        return true;
      });
    });
  }

  it('the file on disk is exactly the header line and the body', async (t) => {
    const bytes = await readFile(await tempFile(t, good()));
    const nl = bytes.indexOf(0x0a);
    assert.ok(bytes.subarray(nl + 1).equals(BODY));
    assert.match(bytes.subarray(0, nl).toString(), /^\{"format":"patchwarden\.file\/1","kind":"report",/);
  });

  it('a path that cannot be opened is PW_ERR_SOURCE_UNAVAILABLE, naming it', async (t) => {
    const file = join(await tempFile(t, good()), '..', 'missing.pwreport');
    await assert.rejects(read(file), { code: 'PW_ERR_SOURCE_UNAVAILABLE', message: /cannot open .*missing\.pwreport: ENOENT/ });
  });

  it('a foreign signer is named with the reader that does not know it', async (t) => {
    const file = await tempFile(t, good());
    await assert.rejects(read(file, { ...OPTIONS, keyOf: () => undefined, reader: 'this agent' }), { code: 'PW_ERR_FILE_FOREIGN', message: /whom this agent does not know/ });
  });

  it('isSignedFile tells a signed file from anything else, and never throws', async (t) => {
    const file = await tempFile(t, good());
    assert.equal(await isSignedFile(file), true);
    await writeFile(`${file}.json`, BODY);
    assert.equal(await isSignedFile(`${file}.json`), false);
    assert.equal(await isSignedFile(join(file, '..')), false, 'a directory');
    assert.equal(await isSignedFile(`${file}.missing`), false);
  });

  it('signedFilesIn: the kinds asked for, by name, hidden and temporary files left out', async (t) => {
    const dir = join(await tempFile(t, good()), '..');
    for (const n of ['b.pwreport', 'a.pwresults', 'c.pwinstr', '.tmp-d.pwreport-1', '.e.pwreport', 'f.txt']) await writeFile(join(dir, n), '');
    assert.deepEqual(await signedFilesIn(dir, ['report', 'results']), ['a.pwresults', 'b.pwreport', 'f.pwreport'].map((n) => join(dir, n)));
    assert.deepEqual(await signedFilesIn(dir, ['instructions']), [join(dir, 'c.pwinstr')]);
  });

  const bodies: [string, string, RegExp][] = [
    ['not JSON', '{"agentId":', /^the signed body is not JSON: /],
    ['JSON of another shape', '{"agentId":"x","results":[]}', /^the signed body is not a results bundle: agentId: /],
    ['an empty results list', `{"agentId":"${SIGNER}","results":[]}`, /^the signed body is not a results bundle: results: /],
  ];
  for (const [name, text, message] of bodies) {
    it(`parseSignedBody refuses ${name} with PW_ERR_MALFORMED_INPUT`, () => {
      assert.throws(() => parseSignedBody(Buffer.from(text), ResultBundleSchema, 'a results bundle'), { code: 'PW_ERR_MALFORMED_INPUT', message });
    });
  }
});
