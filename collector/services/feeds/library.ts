/**
 * The collector's feeds as the CLI and the API use them: what is held, importing a file or a
 * signed bundle, syncing, exporting a bundle and removing a feed, each over the store's
 * advisories. Every change a command makes is audited by its caller (FeedAudit).
 */
import type { Correlator } from '../../domain/correlate/correlator.ts';
import type { FeedCoverage } from '../../domain/correlate/coverage.ts';
import type { FeedRow } from '../../store/advisories.ts';
import type { FeedRemoved } from '../../store/feed-removal.ts';
import type { AsyncStore } from '../../store/store.ts';
import { type BundleImportResult, exportFeedBundle, importFeedBundle } from '../airgap/feed-bundle.ts';
import { type CatalogueConfig, selectSources, type SelectedSource } from './catalogue.ts';
import { type FeedImportResult, importFeedPath } from './store-import.ts';
import type { FeedSource } from './sync.ts';
import { type SyncAudit, syncSources } from './sync-run.ts';

export type { FeedRow } from '../../store/advisories.ts';
export type { FeedImportResult } from './store-import.ts';
export type { BundleImportResult } from '../airgap/feed-bundle.ts';

type SyncRunOptions = Parameters<typeof syncSources>[3];
type SourcesConfig = { feeds: readonly (FeedSource & { mirror?: boolean | undefined })[]; catalogue: CatalogueConfig };

export class FeedLibrary {
  readonly #store: AsyncStore;

  constructor(store: AsyncStore) {
    this.#store = store;
  }

  /** The advisories' store, for the scheduled sync (FeedScheduler) that serve runs. */
  get advisories(): AsyncStore['advisories'] {
    return this.#store.advisories;
  }

  /** Every feed held, with its counts, newest advisory and last error. */
  list(): Promise<FeedRow[]> {
    return this.#store.advisories.feeds();
  }

  /** Which ecosystems each feed covers, and when it was last checked: what says whether a host can be assessed. */
  coverage(): Promise<FeedCoverage[]> {
    return this.#store.advisories.coverage();
  }

  /** The feeds to sync: the config's own, then the catalogue's for the enrolled hosts' ecosystems. */
  async sources(config: SourcesConfig): Promise<SelectedSource[]> {
    return selectSources(await this.#store.advisories.enrolledEcosystems(), config);
  }

  importPath(path: string, options: { name?: string; correlator?: Correlator; now?: Date } = {}): Promise<FeedImportResult> {
    return importFeedPath(this.#store.advisories, path, options);
  }

  importBundle(path: string, options: { trusted: readonly string[] }): Promise<BundleImportResult> {
    return importFeedBundle(this.#store.advisories, path, options);
  }

  sync(sources: readonly FeedSource[], audit: SyncAudit, options: SyncRunOptions = {}): ReturnType<typeof syncSources> {
    return syncSources(this.#store.advisories, sources, audit, options);
  }

  exportBundle(options: { sources?: readonly string[]; key: string; publicKey: string }): ReturnType<typeof exportFeedBundle> {
    return exportFeedBundle(this.#store.advisories, options);
  }

  /** Removes the feed with its advisories and KEV entries, audited; a serving collector re-judges its hosts at its next tick. */
  remove(name: string, actor: string): Promise<FeedRemoved> {
    return this.#store.advisories.removeFeed(name, actor);
  }
}
