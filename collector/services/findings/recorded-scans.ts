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
import type { EpssScore, KevInfo } from '../../domain/correlate/findings.ts';
import type { Store } from '../../store/store.ts';

export interface StoredEvidence {
  advisories: Iterable<Advisory>;
  kev: Iterable<[string, KevInfo]>;
  epss: Iterable<[string, EpssScore]>;
  coverage: FeedCoverage[];
  feeds: FeedState[];
  /** One line per feed whose last attempt failed: its data is the last good import. */
  feedErrors: string[];
}

export class RecordedScans {
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  /** What the store holds to judge a host with. */
  evidence(): StoredEvidence {
    const advisories = this.#store.advisories;
    const feeds: FeedState[] = [];
    const feedErrors: string[] = [];
    for (const f of advisories.feeds()) {
      feeds.push({ source: f.source, newest: f.newest, importedAt: f.checkedAt });
      if (f.lastError !== null) feedErrors.push(`feed ${f.source}: last attempt failed: ${f.lastError.slice(0, 1000)}`);
    }
    return { advisories: advisories.allAdvisories(), kev: advisories.kev(), epss: this.#store.epss.all(), coverage: advisories.coverage(), feeds, feedErrors };
  }

  /** The host's history and its exceptions in force, keyed by machine id (else hostname). */
  historyOf(hostKey: string, now: Date): { history: ReturnType<Store['history']['history']>; exceptions: ReturnType<Store['history']['exceptions']> } {
    const h = this.#store.history;
    return { history: h.history(hostKey), exceptions: h.exceptions(hostKey, now) };
  }

  /** Writes the findings to the host's history and the audit row (`scan.record`), together or not at all. */
  record(hostKey: string, findings: readonly Finding[], now: Date, actor: string, inventoryFile: string): void {
    const store = this.#store;
    store.inTransaction(() => {
      store.history.record(hostKey, findings, now);
      const open = findings.filter((f) => f.status === 'open').length;
      store.audit.record(actor, 'scan.record', `host:${hostKey}`, JSON.stringify({ inventory: inventoryFile, findings: findings.length, open }), now);
    });
  }
}
