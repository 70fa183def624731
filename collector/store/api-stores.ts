/**
 * The stores the HTTP API and the dashboard read and write, made once over one connection
 * by whoever opened it (serve, a test), so the transport never holds the connection.
 */
import { ApiTokenStore, AuditLog } from './access.ts';
import { AdvisoryStore } from './advisories.ts';
import type { Db } from './db.ts';
import { EpssStore } from './epss.ts';
import { ExceptionStore } from './exceptions.ts';
import type { FleetStore } from './fleet.ts';
import { FleetSummaryStore } from './fleet-summary.ts';
import { StoreHealth } from './health.ts';
import { FindingHistoryStore } from './history.ts';

export interface ApiStores {
  tokens: ApiTokenStore;
  audit: AuditLog;
  advisories: AdvisoryStore;
  epss: EpssStore;
  history: FindingHistoryStore;
  exceptions: ExceptionStore;
  summary: FleetSummaryStore;
  /** /healthz with no periodic integrity check; serve passes its own (createApp's storeHealth). */
  health: StoreHealth;
}

/** `fleet` writes the audit rows of token and exception changes, in their transactions. */
export function apiStores(db: Db, fleet: FleetStore): ApiStores {
  return {
    tokens: new ApiTokenStore(db, fleet),
    audit: new AuditLog(db),
    advisories: new AdvisoryStore(db),
    epss: new EpssStore(db),
    history: new FindingHistoryStore(db),
    exceptions: new ExceptionStore(db, fleet),
    summary: new FleetSummaryStore(db),
    health: new StoreHealth(db),
  };
}
