/**
 * The hosts that have reported, as `hosts` lists them: each one's summary (hostname,
 * ecosystem, packages, kernel, reboot, last seen, agent), read a page at a time.
 */
import type { HostSummary } from '../../store/hosts.ts';
import type { AsyncStore } from '../../store/store.ts';

export type { HostSummary } from '../../store/hosts.ts';

export class HostList {
  readonly #store: Pick<AsyncStore, 'hosts'>;

  constructor(store: Pick<AsyncStore, 'hosts'>) {
    this.#store = store;
  }

  /** Every host's summary, in the store's listing order. */
  async summaries(): Promise<HostSummary[]> {
    const out: HostSummary[] = [];
    // The summary as `hosts --json` always printed it: the listing's machine id and content hash stay out.
    for await (const { machineId: _machineId, contentHash: _contentHash, ...summary } of this.#store.hosts.all()) out.push(summary);
    return out;
  }
}
