/**
 * `patchwarden-collector vercmp --scheme deb|rpm|apk`: one `A<TAB>B` pair per input line, one
 * answer per output line (`-1`, `0`, `1`, or `invalid <reason>`), so output line N always
 * answers input line N. Built to stream millions of pairs: input is split by hand from raw
 * chunks, answers are batched into large writes that wait for 'drain'.
 */
import { StringDecoder } from 'node:string_decoder';
import { apkVersionProblem, compareApkVersions } from '../../shared/versions/apk.ts';
import { compareDebVersions, parseDebVersionOrReason } from '../../shared/versions/dpkg.ts';
import type { VersionScheme } from '../../shared/versions/index.ts';
import { validateVersion } from '../../shared/versions/index.ts';
import { compareRpmVersions, parseRpmEvrOrReason } from '../../shared/versions/rpm.ts';

export interface VercmpOptions {
  /**
   * Longest line kept, in characters. A longer line (binary garbage, a missing newline) is
   * answered `invalid` and dropped without being held in memory. Real version pairs are far
   * below the default.
   */
  maxLineLength?: number;
  /** Output is written in batches of about this many characters. */
  flushAt?: number;
}

const DEFAULT_MAX_LINE = 64 * 1024;
const DEFAULT_FLUSH_AT = 64 * 1024;

type Judge = (a: string, b: string) => string;

function answer(r: -1 | 0 | 1): string {
  return r === 0 ? '0' : r < 0 ? '-1' : '1';
}

function judgeDeb(a: string, b: string): string {
  const pa = parseDebVersionOrReason(a);
  if (typeof pa === 'string') return `invalid left version: ${pa}`;
  const pb = parseDebVersionOrReason(b);
  if (typeof pb === 'string') return `invalid right version: ${pb}`;
  return answer(compareDebVersions(pa, pb));
}

function judgeRpm(a: string, b: string): string {
  const pa = parseRpmEvrOrReason(a);
  if (typeof pa === 'string') return `invalid left version: ${pa}`;
  const pb = parseRpmEvrOrReason(b);
  if (typeof pb === 'string') return `invalid right version: ${pb}`;
  return answer(compareRpmVersions(pa, pb));
}

function judgeApk(a: string, b: string): string {
  // validateVersion adds the empty/NUL checks on top of apkVersionProblem.
  const ra = a.length === 0 || a.includes('\0') ? validateVersion('apk', a) : apkVersionProblem(a);
  if (ra !== null) return `invalid left version: ${ra}`;
  const rb = b.length === 0 || b.includes('\0') ? validateVersion('apk', b) : apkVersionProblem(b);
  if (rb !== null) return `invalid right version: ${rb}`;
  return answer(compareApkVersions(a, b));
}

const JUDGES: Record<VersionScheme, Judge> = { deb: judgeDeb, rpm: judgeRpm, apk: judgeApk };

function drain(output: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = (): void => {
      output.off('error', onError);
      resolve();
    };
    const onError = (err: unknown): void => {
      output.off('drain', onDrain);
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    output.once('drain', onDrain);
    output.once('error', onError);
  });
}

/**
 * Reads `A<TAB>B` lines from `input` (UTF-8; a trailing CR is dropped so CRLF files work; the
 * first tab splits, so a second tab belongs to B) and writes one answer per line to `output`,
 * which is left open. Returns how many lines were answered and how many of them were invalid.
 */
export async function vercmp(
  scheme: VersionScheme,
  input: NodeJS.ReadableStream,
  output: NodeJS.WritableStream,
  options: VercmpOptions = {},
): Promise<{ lines: number; invalid: number }> {
  const judge = JUDGES[scheme];
  const maxLine = options.maxLineLength ?? DEFAULT_MAX_LINE;
  const flushAt = options.flushAt ?? DEFAULT_FLUSH_AT;
  const decoder = new StringDecoder('utf8');
  let lines = 0;
  let invalid = 0;
  let out = '';
  let carry = '';
  // True while dropping the rest of an over-long line up to its newline.
  let skipping = false;

  const flush = async (): Promise<void> => {
    if (out.length === 0) return;
    const chunk = out;
    out = '';
    if (!output.write(chunk)) await drain(output);
  };

  /** Answers the line src[from, to) without copying it first. */
  const handle = (src: string, from: number, to: number): void => {
    lines++;
    const end = to > from && src.charCodeAt(to - 1) === 0x0d ? to - 1 : to;
    // Bounded by hand: indexOf would run on into the following lines when this one has no tab.
    let tab = from;
    while (tab < end && src.charCodeAt(tab) !== 0x09) tab++;
    let result: string;
    if (tab === end) {
      result = 'invalid line has no tab between the two versions';
    } else {
      result = judge(src.slice(from, tab), src.slice(tab + 1, end));
    }
    if (result.charCodeAt(0) === 0x69 /* 'i' */) invalid++;
    out += result + '\n';
  };

  const tooLong = (): void => {
    lines++;
    invalid++;
    out += `invalid line longer than ${maxLine} characters\n`;
  };

  for await (const raw of input) {
    const text = typeof raw === 'string' ? raw : decoder.write(raw);
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl === -1) break;
      if (skipping) {
        skipping = false;
        tooLong();
      } else if (carry.length > 0) {
        const line = carry + text.slice(start, nl);
        carry = '';
        if (line.length > maxLine) tooLong();
        else handle(line, 0, line.length);
      } else if (nl - start > maxLine) {
        tooLong();
      } else {
        handle(text, start, nl);
      }
      start = nl + 1;
    }
    if (!skipping && start < text.length) {
      carry = carry.length > 0 ? carry + text.slice(start) : text.slice(start);
      if (carry.length > maxLine) {
        carry = '';
        skipping = true;
      }
    }
    if (out.length >= flushAt) await flush();
  }
  const rest = carry + decoder.end();
  if (skipping) tooLong();
  else if (rest.length > maxLine) tooLong();
  else if (rest.length > 0) handle(rest, 0, rest.length);
  await flush();
  return { lines, invalid };
}
