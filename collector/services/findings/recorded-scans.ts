/**
 * `scan --db`: an inventory file judged against the advisories, KEV, EPSS and feed states the
 * store holds, with the host's history (first seen, resolved) and accepted risks; with
 * `--record`, its findings written to that history, audited, in one transaction, because
 * first-seen times set due dates.
 */
import type { Finding } from '../../../shared/protocol.ts';
import type { Advisory } from '../../domain/feeds/types.ts';
import type { FeedCoverage } from '../../domain/correlate/coverage.ts';
import type { FeedState } from '../../domain/correlate/correlator.ts';
import type { EpssScore, KevInfo, RiskException } from '../../domain/correlate/findings.ts';
import type { FindingHistoryStore } from '../../store/history.ts';
import type { AsyncStore } from '../../store/store.ts';

export interface StoredEvidence {
  /** Read a page at a time as it is iterated. */
  advisories: AsyncIterable<Advisory>;
  kev: Iterable<[string, KevInfo]>;
  epss: Iterable<[string, EpssScore]>;
  coverage: FeedCoverage[];
  feeds: FeedState[];
  /** One line per feed whose last attempt failed: its data is the last good import. */
  feedErrors: string[];
}

export type RecordedScansStore = Pick<AsyncStore, 'advisories' | 'epss' | 'history' | 'exceptions' | 'audit' | 'transaction'>;

export class RecordedScans {
  readonly #store: RecordedScansStore;

  constructor(store: RecordedScansStore) {
    this.#store = store;
  }

  /** What the store holds to judge a host with. */
  async evidence(): Promise<StoredEvidence> {
    const advisories = this.#store.advisories;
    const feeds: FeedState[] = [];
    const feedErrors: string[] = [];
    for (const f of await advisories.feeds()) {
      feeds.push({ source: f.source, newest: f.newest, importedAt: f.checkedAt });
      if (f.lastError !== null) feedErrors.push(`feed ${f.source}: last attempt failed: ${f.lastError.slice(0, 1000)}`);
    }
    return { advisories: advisories.allAdvisories(), kev: await advisories.kev(), epss: await this.#store.epss.all(), coverage: await advisories.coverage(), feeds, feedErrors };
  }

  /** The host's history and its exceptions in force, keyed by machine id (else hostname). */
  async historyOf(hostKey: string, now: Date): Promise<{ history: Awaited<ReturnType<FindingHistoryStore['history']>>; exceptions: RiskException[] }> {
    return { history: await this.#store.history.history(hostKey), exceptions: await this.#store.exceptions.forHost(hostKey, now) };
  }

  /** Writes the findings to the host's history and the audit row (`scan.record`), together or not at all. */
  async record(hostKey: string, findings: readonly Finding[], now: Date, actor: string, inventoryFile: string): Promise<void> {
    const open = findings.filter((f) => f.status === 'open').length;
    await this.#store.transaction(async (tx) => {
      await tx.history.record(hostKey, findings, now);
      await tx.audit.record(actor, 'scan.record', `host:${hostKey}`, JSON.stringify({ inventory: inventoryFile, findings: findings.length, open }), now);
    });
  }
}
