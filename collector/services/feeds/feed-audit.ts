/**
 * The audit rows of `feed import` and `feed sync`: advisories decide what every host is
 * told it must patch, so each import, bundle import, sync and refused file is written to
 * the audit log with its actor (`cli:<unix user>`), the path or URL it came from and its
 * counts. A refused file changes nothing but the feed's last error, and is recorded
 * because a poisoned or tampered feed is what an operator will want to find later.
 *
 * The row is written right after the import's own transaction commits (the importers own
 * their transactions), so a crash in between leaves a change without its row, never a
 * row without its change.
 */
import { resolve } from 'node:path';
import { errorMessage } from '../../../shared/errors.ts';
import type { BundleImportResult } from '../airgap/feed-bundle.ts';
import type { SyncOutcome } from './sync.ts';
import type { FeedImportResult } from './store-import.ts';
import type { AsyncStore } from '../../store/store.ts';

/** An error message in a row is a hint, not a transcript: a hostile file's text stays short. */
const MAX_MESSAGE = 500;

/** A feed URL without its user info and query, where a credential could ride. */
export function auditedUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(not a URL)';
  }
}

export class FeedAudit {
  readonly #audit: Pick<AsyncStore['audit'], 'record'>;
  readonly #actor: string;

  /** `audit` takes the rows (the store's audit log); `actor` is `cli:<unix user>` for a command, `system` for serve's scheduled sync. */
  constructor(audit: Pick<AsyncStore['audit'], 'record'>, actor: string) {
    this.#audit = audit;
    this.#actor = actor;
  }

  async imported(path: string, r: FeedImportResult): Promise<void> {
    await this.#audit.record(this.#actor, 'feed.import', `feed:${r.source}`, JSON.stringify({ path: resolve(path), formats: r.formats, advisories: r.advisories, kev: r.kev, ...(r.epss === null ? {} : { epss: r.epss }), warnings: r.warnings }));
  }

  async bundle(path: string, r: BundleImportResult): Promise<void> {
    const feeds = r.feeds.map((f) => ({ source: f.source, advisories: f.advisories, kev: f.kev, ...(f.epss === null ? {} : { epss: f.epss }) }));
    await this.#audit.record(this.#actor, 'feed.bundle-import', `feed-bundle:${r.signer}`, JSON.stringify({ path: resolve(path), createdAt: r.createdAt, feeds }));
  }

  async refused(path: string, err: unknown): Promise<void> {
    const code = (err as { code?: unknown } | null)?.code;
    await this.#audit.record(
      this.#actor,
      'feed.import-refused',
      null,
      JSON.stringify({ path: resolve(path), code: typeof code === 'string' ? code : null, message: errorMessage(err).slice(0, MAX_MESSAGE) }),
    );
  }

  /** A sync that changed nothing (304, same ETag) is not written: only imports and failures are. */
  async synced(url: string, o: SyncOutcome): Promise<void> {
    if (o.status === 'imported') {
      const r = o.result;
      await this.#audit.record(this.#actor, 'feed.sync', `feed:${o.source}`, JSON.stringify({ url: auditedUrl(url), formats: r.formats, advisories: r.advisories, kev: r.kev, ...(r.epss === null ? {} : { epss: r.epss }), warnings: r.warnings }));
    } else if (o.status === 'failed') {
      await this.#audit.record(this.#actor, 'feed.sync-failed', `feed:${o.source}`, JSON.stringify({ url: auditedUrl(url), code: o.code, message: o.error.split(url).join(auditedUrl(url)).slice(0, MAX_MESSAGE) }));
    }
  }
}
