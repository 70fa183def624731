/**
 * ed25519 keys and signatures (node:crypto, no dependency). Public keys travel as the raw
 * 32 bytes in base64url; private keys stay in PKCS#8 PEM files with mode 0600.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';

/** The fixed 12-byte DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410). */
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface KeyPair {
  publicKey: string;
  privateKeyPem: string;
}

export function generateKeyPair(): KeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return { publicKey: rawPublicKey(publicKey), privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

export function rawPublicKey(key: KeyObject): string {
  const der = key.export({ type: 'spki', format: 'der' });
  return der.subarray(SPKI_PREFIX.length).toString('base64url');
}

export function publicKeyFromRaw(raw: string): KeyObject {
  const bytes = Buffer.from(raw, 'base64url');
  if (bytes.length !== 32) throw new TypeError('an ed25519 public key is 32 bytes');
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, bytes]), format: 'der', type: 'spki' });
}

export function publicKeyOfPem(privateKeyPem: string): string {
  return rawPublicKey(createPublicKey(createPrivateKey(privateKeyPem)));
}

export function signBytes(privateKeyPem: string | KeyObject, data: Uint8Array): string {
  const key = typeof privateKeyPem === 'string' ? createPrivateKey(privateKeyPem) : privateKeyPem;
  return sign(null, data, key).toString('base64url');
}

/** false for any malformed key or signature: callers refuse, they never throw at a peer. */
export function verifyBytes(publicKeyRaw: string, data: Uint8Array, signature: string): boolean {
  try {
    const sig = Buffer.from(signature, 'base64url');
    if (sig.length !== 64) return false;
    return verify(null, data, publicKeyFromRaw(publicKeyRaw), sig);
  } catch {
    return false;
  }
}

/** What a hello signs: a domain tag, so a signature made for anything else never passes as one. */
export function helloPayload(nonce: string, agentId: string): Buffer {
  return Buffer.from(`patchwarden-hello/1\n${nonce}\n${agentId}`, 'utf8');
}
