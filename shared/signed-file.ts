/**
 * The one container for everything carried across an air gap (DESIGN "Air-gapped mode"):
 * a header line, then the body.
 *
 *   {"format":"patchwarden.file/1","kind":"report","signer":"<id>","createdAt":"…","bytes":N,"sha256":"…","signature":"…"}\n
 *   <N bytes of body>
 *
 * The header is read first and its signature checked before a byte of the body is
 * trusted; the body is then hashed as it streams in, so a reader never holds more than the
 * declared size, and a file that is cut short, has bytes appended, or was edited anywhere
 * is refused with its own code. The signature covers a domain tag and every header field,
 * so a header cannot be moved onto another body, kind or signer.
 */
import { createHash } from 'node:crypto';
import { type FileHandle, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as z from 'zod';
import { errorMessage, InputTooLargeError, issueText, MalformedInputError, PatchwardenError } from './errors.ts';
import { withRegularFile } from './regular-file.ts';
import { signBytes, verifyBytes } from './signing.ts';
import type { KeyObject } from 'node:crypto';

export const SIGNED_FILE_FORMAT = 'patchwarden.file/1';
/**
 * report: an agent's inventory (`agent report`, `agent apply`) -> `collector reports import`;
 * instructions: signed instructions for one agent (`collector instructions export`) -> `agent apply`;
 * results: what those instructions did (`agent apply`) -> `collector reports import`;
 * feeds: an online collector's advisories and KEV (`collector feed export`) -> an offline collector's `feed import`.
 */
export const SIGNED_FILE_KINDS = ['report', 'instructions', 'results', 'feeds'] as const;
export type SignedFileKind = (typeof SIGNED_FILE_KINDS)[number];
/** The file name's ending for each kind: what the importers look for in a directory. */
export const FILE_SUFFIX: Readonly<Record<SignedFileKind, string>> = Object.freeze({ report: '.pwreport', instructions: '.pwinstr', results: '.pwresults', feeds: '.pwfeeds' });
/** The signer id of files the collector signs (with the key every agent pinned at enrollment). */
export const COLLECTOR_SIGNER = 'collector';
/** `<time>-<agent id>-<tag><suffix>`: sorts by time, so a directory listing is the order to import in. */
export function signedFileName(kind: SignedFileKind, createdAt: Date, agentId: string, tag: string): string {
  const stamp = createdAt.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${agentId}-${tag}${FILE_SUFFIX[kind]}`;
}

/** A header is a few hundred bytes; reading stops here if no newline came. */
export const MAX_HEADER_BYTES = 4096;

export const SignedFileHeaderSchema = z.strictObject({
  format: z.literal(SIGNED_FILE_FORMAT),
  /** Any kind parses, so a file of another kind (a feed bundle handed to `reports import`) is refused as foreign, not as garbage. */
  kind: z.string().regex(/^[a-z][a-z-]{0,31}$/, 'not a file kind'),
  /** Whose key signed it: an agent id for reports. */
  signer: z.string().min(1).max(64).regex(/^[A-Za-z0-9._-]+$/, 'not a signer id'),
  createdAt: z.iso.datetime({ offset: true }),
  bytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'not a sha256 hex digest'),
  signature: z.string().length(86).regex(/^[A-Za-z0-9_-]+$/, 'not base64url'),
});
export type SignedFileHeader = z.infer<typeof SignedFileHeaderSchema>;

/** A file whose bytes do not match its signed header: edited, appended to, or signed by another key. */
export class FileTamperedError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_FILE_TAMPERED', options);
  }
}
/** A file shorter than its header says: cut short in transit or by a full disk. */
export class FileTruncatedError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_FILE_TRUNCATED', options);
  }
}
/** A well-formed file this reader has no key for, or of another kind than it reads. */
export class FileForeignError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_FILE_FOREIGN', options);
  }
}

function signingBytes(h: Omit<SignedFileHeader, 'signature'>): Buffer {
  return Buffer.from(`patchwarden-file/1\n${h.format}\n${h.kind}\n${h.signer}\n${h.createdAt}\n${h.bytes}\n${h.sha256}`, 'utf8');
}

/** Header line and body, ready to be written in one piece. */
export function encodeSignedFile(opts: { kind: SignedFileKind; signer: string; createdAt: Date; body: Uint8Array; key: string | KeyObject }): Buffer {
  const unsigned = {
    format: SIGNED_FILE_FORMAT,
    kind: opts.kind,
    signer: opts.signer,
    createdAt: opts.createdAt.toISOString(),
    bytes: opts.body.length,
    sha256: createHash('sha256').update(opts.body).digest('hex'),
  } as const;
  const header: SignedFileHeader = SignedFileHeaderSchema.parse({ ...unsigned, signature: signBytes(opts.key, signingBytes(unsigned)) });
  return Buffer.concat([Buffer.from(JSON.stringify(header) + '\n', 'utf8'), opts.body]);
}

async function headerOf(handle: FileHandle, name: string): Promise<{ header: SignedFileHeader; offset: number }> {
  const buf = Buffer.alloc(MAX_HEADER_BYTES);
  const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
  const end = buf.subarray(0, bytesRead).indexOf(0x0a);
  if (end < 0) {
    if (bytesRead === 0) throw new FileTruncatedError(`${name} is empty`);
    if (bytesRead < MAX_HEADER_BYTES && buf[0] === 0x7b) throw new FileTruncatedError(`${name} ends inside its header`);
    throw new MalformedInputError(`${name} is not a patchwarden file: no header line in its first ${MAX_HEADER_BYTES} bytes`);
  }
  let json: unknown;
  try {
    json = JSON.parse(buf.subarray(0, end).toString('utf8'));
  } catch {
    throw new MalformedInputError(`${name} is not a patchwarden file: its first line is not JSON`);
  }
  const parsed = SignedFileHeaderSchema.safeParse(json);
  if (!parsed.success) throw new MalformedInputError(`${name} has an invalid header: ${issueText(parsed.error)}`);
  return { header: parsed.data, offset: end + 1 };
}

/** The header alone, unchecked: enough to order files before reading them. */
export async function readSignedFileHeader(path: string, name: string): Promise<SignedFileHeader> {
  return (await withRegularFile(path, (handle) => headerOf(handle, name))).header;
}

/** True when the file starts as a signed file does (`feed import` then reads it as a bundle, not as an upstream feed). */
export async function isSignedFile(path: string): Promise<boolean> {
  try {
    return await withRegularFile(path, async (handle) => {
      const buf = Buffer.alloc(32);
      const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
      return buf.subarray(0, bytesRead).toString('latin1').startsWith('{"format":"patchwarden.file/');
    });
  } catch {
    return false;
  }
}

/** The files of these kinds in `dir`, by name (their time first); hidden and temporary files are left out. */
export async function signedFilesIn(dir: string, kinds: readonly SignedFileKind[]): Promise<string[]> {
  const suffixes = kinds.map((k) => FILE_SUFFIX[k]);
  return (await readdir(dir))
    .filter((n) => !n.startsWith('.') && suffixes.some((s) => n.endsWith(s)))
    .sort()
    .map((n) => join(dir, n));
}

export interface ReadSignedFileOptions {
  /** The kinds this reader takes; any other is refused as foreign. */
  kind: SignedFileKind | readonly SignedFileKind[];
  /** Bodies over this are refused before they are read. */
  maxBodyBytes: number;
  /** The signer's raw ed25519 public key, or undefined for a signer this reader does not know (the file is refused as foreign); a promise when it is looked up in a store. */
  keyOf: (signer: string) => string | undefined | Promise<string | undefined>;
  /** Who reads, for the foreign-signer message: `this collector` unless said. */
  reader?: string;
}

/**
 * Reads and checks one file: header, signature, size, then the body against its digest.
 * Returns the body only when every check passed; `name` is what error messages call it.
 */
export function readSignedFile(path: string, name: string, opts: ReadSignedFileOptions): Promise<{ header: SignedFileHeader; body: Buffer }> {
  return withRegularFile(path, (handle) => checkedRead(handle, name, opts));
}

async function checkedRead(handle: FileHandle, name: string, opts: ReadSignedFileOptions): Promise<{ header: SignedFileHeader; body: Buffer }> {
  const { header, offset } = await headerOf(handle, name);
  const kinds: readonly string[] = typeof opts.kind === 'string' ? [opts.kind] : opts.kind;
  if (!kinds.includes(header.kind)) throw new FileForeignError(`${name} is a ${header.kind} file, not a ${kinds.join(' or ')} file`);
  if (header.bytes > opts.maxBodyBytes) throw new InputTooLargeError(`${name} declares a ${header.bytes}-byte body, over the ${opts.maxBodyBytes}-byte limit`);
  const key = await opts.keyOf(header.signer);
  if (key === undefined) throw new FileForeignError(`${name} is signed by ${header.signer}, whom ${opts.reader ?? 'this collector'} does not know`);
  const { signature, ...unsigned } = header;
  if (!verifyBytes(key, signingBytes(unsigned), signature)) throw new FileTamperedError(`${name}'s header signature does not verify with ${header.signer}'s key`);

  const size = (await handle.stat()).size;
  if (size < offset + header.bytes) throw new FileTruncatedError(`${name} is cut short: ${size - offset} of ${header.bytes} body bytes`);
  if (size > offset + header.bytes) throw new FileTamperedError(`${name} has ${size - offset - header.bytes} bytes after its signed body`);
  const body = Buffer.alloc(header.bytes);
  const hash = createHash('sha256');
  let at = 0;
  while (at < body.length) {
    const { bytesRead } = await handle.read(body, at, Math.min(1 << 20, body.length - at), offset + at);
    if (bytesRead === 0) throw new FileTruncatedError(`${name} was cut short while it was read: ${at} of ${header.bytes} body bytes`);
    hash.update(body.subarray(at, at + bytesRead));
    at += bytesRead;
  }
  if (hash.digest('hex') !== header.sha256) throw new FileTamperedError(`${name}'s body does not match its signed sha256`);
  return { header, body };
}

/**
 * A checked body as the message it claims to be: `what` names it in the refusal
 * ("a report"). `json` is the parsed text as it was, for checks on the sender's own key
 * order (an inventory's hash).
 */
export function parseSignedBody<T>(body: Buffer, schema: z.ZodType<T>, what: string): { value: T; json: unknown } {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new MalformedInputError(`the signed body is not JSON: ${errorMessage(err)}`, { cause: err });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new MalformedInputError(`the signed body is not ${what}: ${issueText(parsed.error)}`);
  return { value: parsed.data, json };
}
