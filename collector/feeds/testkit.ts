/**
 * Test helpers for the feed parsers: a minimal ZIP writer that can also lie (wrong CRC,
 * wrong sizes, hostile names), which no real zip tool will do on request. Only tests
 * import this file.
 */
import { deflateRawSync, gzipSync } from 'node:zlib';
import { crc32 } from './zip.ts';

export interface TestZipEntry {
  name: string;
  data: Buffer;
  /** 0 stored, 8 deflate (default). */
  method?: 0 | 8;
  /** Overrides written into both headers, to build corrupt or hostile archives. */
  crc32?: number;
  uncompressedSize?: number;
  flags?: number;
}

export function buildZip(entries: readonly TestZipEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const method = e.method ?? 8;
    const body = method === 8 ? deflateRawSync(e.data) : e.data;
    const name = Buffer.from(e.name, 'utf8');
    const crc = e.crc32 ?? crc32(e.data);
    const size = e.uncompressedSize ?? e.data.length;
    const flags = (e.flags ?? 0) | 0x800;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc >>> 0, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    locals.push(local, name, body);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(flags, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(crc >>> 0, 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

/**
 * `bytes` (about) of gzip that inflate to about 1000 times as much of one byte (newlines
 * by default): the bomb of issue 10. Made of one gzip member repeated (a gzip file may hold
 * several, RFC 1952 2.2), so building it costs milliseconds, not a gigabyte of deflate.
 */
export function gzipBomb(bytes: number, fill = 0x0a): Buffer {
  const member = gzipSync(Buffer.alloc(16 * 1024 * 1024, fill), { level: 9 });
  return Buffer.concat(Array.from({ length: Math.max(1, Math.round(bytes / member.length)) }, () => member));
}
