/**
 * `feed sync`: fetch each configured feed with undici, conditionally (ETag /
 * Last-Modified, so an unchanged feed costs one 304), with retries and jittered backoff,
 * through the proxy the environment names (HTTP_PROXY, HTTPS_PROXY, NO_PROXY), then import
 * it through the same path as `feed import`. A feed that fails keeps its last good data
 * and records the error; the others still sync.
 *
 * Two clocks: `timeoutMs` is undici's idle timeout (headers, and the gap between body
 * chunks), which a server trickling one byte every few seconds never trips; `deadlineMs`
 * bounds the whole download of one feed, every attempt and backoff included
 * (PW_ERR_FEED_DEADLINE, not retried).
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { type Dispatcher, EnvHttpProxyAgent, interceptors, request } from 'undici';
import { InputTooLargeError, PatchwardenError, errorMessage } from '../../../shared/errors.ts';
import { checkFeedUrl, FeedUrlError } from './catalogue.ts';
import { checkFeedName } from '../../domain/feeds/feed-name.ts';
import type { Correlator } from '../../domain/correlate/correlator.ts';
import type { AsyncStore } from '../../store/store.ts';
import { importFeedPath, type FeedImportResult } from './store-import.ts';

export interface FeedSource {
  name: string;
  url: string;
  /** This feed's deadline (the config's `deadlineSeconds`), over SyncOptions.deadlineMs. */
  deadlineSeconds?: number | undefined;
  /** An internal mirror: plain http allowed, for the URL and every redirect (collector/services/feeds/catalogue.ts). */
  mirror?: boolean | undefined;
}

export interface SyncOptions {
  dispatcher?: Dispatcher;
  retries?: number;
  /** First backoff; doubled per attempt, with full jitter. */
  backoffMs?: number;
  timeoutMs?: number;
  /** The whole download of one feed: every attempt and backoff. */
  deadlineMs?: number;
  /** osv.dev's largest all.zip is a few hundred MB. */
  maxBytes?: number;
  correlator?: Correlator;
  onProgress?: (source: string, received: number, total: number | null) => void;
  now?: () => Date;
}

export type SyncOutcome =
  | { source: string; status: 'imported'; result: FeedImportResult }
  | { source: string; status: 'not-modified' }
  | { source: string; status: 'failed'; error: string; code: string };

export class FeedFetchError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_FEED_FETCH', options);
  }
}

/** The download of one feed outlasted its deadline (a server sending slowly stays under the idle timeout). */
export class FeedDeadlineError extends PatchwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'PW_ERR_FEED_DEADLINE', options);
  }
}

/** osv.dev's largest all.zip (a few hundred MB) at 1 MB/s, with room to spare. */
export const DEFAULT_FEED_DEADLINE_MS = 30 * 60 * 1000;

const MAX_REDIRECTIONS = 5;

/**
 * Sits under the redirect interceptor, so it sees every hop: a redirect from https to
 * plain http (or any other scheme) is refused with PW_ERR_FEED_URL, as the URL itself
 * would have been; a mirror may use http.
 */
function schemeGuard(mirror: boolean): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) => {
    const origin = String(opts.origin ?? '');
    let protocol = '';
    try {
      protocol = new URL(origin).protocol;
    } catch {
      // Left empty: refused below.
    }
    if (protocol === 'https:' || (mirror && protocol === 'http:')) return dispatch(opts, handler);
    const err = new FeedUrlError(`redirected to ${protocol === '' ? 'no URL' : `${protocol}//${new URL(origin).host}`}: ${mirror ? 'a mirror is http or https' : 'feeds come over https only'}`);
    const h = handler as { onResponseError?: (c: unknown, e: Error) => void; onError?: (e: Error) => void };
    if (h.onResponseError !== undefined) h.onResponseError(null, err);
    else h.onError?.(err);
    return true;
  };
}
const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** A file name the reader can detect the format from (`.jsonl.gz`, `.zip`, `.json`). */
function downloadName(url: string): string {
  const last = basename(new URL(url).pathname);
  return /^[A-Za-z0-9._-]{1,200}$/.test(last) ? last : 'feed';
}

async function fetchOnce(
  src: FeedSource,
  validators: { etag: string | null; lastModified: string | null },
  dest: string,
  o: Required<Pick<SyncOptions, 'timeoutMs' | 'maxBytes'>> & SyncOptions & { dispatcher: Dispatcher },
  signal: AbortSignal,
): Promise<{ status: 304 } | { status: 200; etag: string | null; lastModified: string | null }> {
  const headers: Record<string, string> = { 'user-agent': 'patchwarden-collector', 'accept-encoding': 'identity' };
  if (validators.etag !== null) headers['if-none-match'] = validators.etag;
  if (validators.lastModified !== null) headers['if-modified-since'] = validators.lastModified;
  const res = await request(src.url, {
    method: 'GET',
    headers,
    dispatcher: o.dispatcher,
    signal,
    headersTimeout: o.timeoutMs,
    bodyTimeout: o.timeoutMs,
  });
  if (res.statusCode === 304) {
    await res.body.dump();
    return { status: 304 };
  }
  if (res.statusCode !== 200) {
    await res.body.dump();
    const err = new FeedFetchError(`${src.url}: HTTP ${res.statusCode}`);
    (err as FeedFetchError & { retryable?: boolean }).retryable = RETRYABLE_STATUS.has(res.statusCode);
    throw err;
  }
  const header = (h: string | string[] | undefined): string | null => (Array.isArray(h) ? (h[0] ?? null) : (h ?? null));
  const lengthHeader = header(res.headers['content-length']);
  const total = lengthHeader === null ? null : Number(lengthHeader);
  if (total !== null && total > o.maxBytes) {
    await res.body.dump();
    throw new InputTooLargeError(`${src.url}: ${total} bytes is over the ${o.maxBytes}-byte limit`);
  }
  let received = 0;
  const limiter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      received += chunk.length;
      if (received > o.maxBytes) {
        cb(new InputTooLargeError(`${src.url}: more than ${o.maxBytes} bytes`));
        return;
      }
      o.onProgress?.(src.name, received, total);
      cb(null, chunk);
    },
  });
  await pipeline(res.body, limiter, createWriteStream(dest), { signal });
  if (total !== null && received !== total) throw new FeedFetchError(`${src.url}: connection closed after ${received} of ${total} bytes`);
  return { status: 200, etag: header(res.headers.etag), lastModified: header(res.headers['last-modified']) };
}

export async function syncFeed(store: AsyncStore['advisories'], src: FeedSource, options: SyncOptions = {}): Promise<SyncOutcome> {
  checkFeedName(src.name, 'from the feed sync config');
  const base = options.dispatcher ?? new EnvHttpProxyAgent();
  // Only an agent made here is closed here: a caller's dispatcher may serve other feeds.
  const own = base === options.dispatcher ? null : base;
  const o = {
    retries: 3,
    backoffMs: 500,
    timeoutMs: 60_000,
    deadlineMs: DEFAULT_FEED_DEADLINE_MS,
    maxBytes: 2 * 1024 * 1024 * 1024,
    ...options,
    // undici 7 dropped request()'s `maxRedirections` option (it throws "use the redirect
    // interceptor"): redirects (mirrors, GitHub release assets) go through the interceptor.
    dispatcher: base.compose(schemeGuard(src.mirror ?? false), interceptors.redirect({ maxRedirections: MAX_REDIRECTIONS })),
  };
  const now = o.now ?? (() => new Date());
  const row = (await store.feeds()).find((f) => f.source === src.name);
  const validators = { etag: row?.etag ?? null, lastModified: row?.lastModified ?? null };
  let dir: string | null = null;
  let dest: string | null = null;
  const deadlineMs = src.deadlineSeconds === undefined ? o.deadlineMs : src.deadlineSeconds * 1000;
  const deadline = new AbortController();
  const timer = setTimeout(() => {
    deadline.abort();
  }, deadlineMs);
  // A function, not the property: the type checker would take one read of it for all.
  const late = (): boolean => deadline.signal.aborted;
  const overdue = (cause?: unknown): FeedDeadlineError => new FeedDeadlineError(`${src.url}: not downloaded within its ${deadlineMs / 1000} s deadline`, { cause });
  try {
    checkFeedUrl(src.url, src.mirror ?? false, `feed ${src.name}`);
    dir = await mkdtemp(join(tmpdir(), 'pw-feed-'));
    dest = join(dir, downloadName(src.url));
    let fetched: Awaited<ReturnType<typeof fetchOnce>> | undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        fetched = await fetchOnce(src, validators, dest, o, deadline.signal);
        break;
      } catch (err) {
        if (late()) throw overdue(err);
        const retryable = !(err instanceof InputTooLargeError) && !(err instanceof FeedUrlError) && (!(err instanceof FeedFetchError) || (err as { retryable?: boolean }).retryable === true);
        if (!retryable || attempt >= o.retries) throw err;
        await sleep(Math.random() * o.backoffMs * 2 ** attempt, deadline.signal);
        if (late()) throw overdue();
      }
    }
    clearTimeout(timer);
    if (fetched.status === 304) {
      await store.touchFeed(src.name, now());
      return { source: src.name, status: 'not-modified' };
    }
    const result = await importFeedPath(store, dest, { name: src.name, location: src.url, now: now(), ...(o.correlator === undefined ? {} : { correlator: o.correlator }) });
    await store.setFeedValidators(src.name, fetched.etag, fetched.lastModified);
    return { source: src.name, status: 'imported', result };
  } catch (err) {
    // Anything that is not ours came from the network (reset, cut short, DNS, proxy).
    const wrapped = err instanceof PatchwardenError ? err : new FeedFetchError(`${src.url}: ${errorMessage(err)}`, { cause: err });
    // A parse error names the download's temporary file, which is gone by now: name the URL.
    const message = dest === null ? wrapped.message : wrapped.message.replaceAll(dest, src.url);
    await store.recordFeedError({ source: src.name, kind: row?.kind ?? 'unknown', location: src.url }, message, now());
    return { source: src.name, status: 'failed', error: message, code: wrapped.code };
  } finally {
    clearTimeout(timer);
    if (dir !== null) await rm(dir, { recursive: true, force: true });
    await own?.close();
  }
}
