/**
 * The store objects a service or transport works with, made once over one connection by
 * whoever opened it (serve, a CLI command, a test), so that none of them holds the connection.
 */
import { ApiTokenStore, AuditLog } from './access.ts';
import { AdvisoryChanges } from './advisory-changes.ts';
import { AdvisoryStore } from './advisories.ts';
import type { Db } from './db.ts';
import { EpssStore } from './epss.ts';
import { ExceptionStore } from './exceptions.ts';
import type { FleetStore } from './fleet.ts';
import { FleetSummaryStore } from './fleet-summary.ts';
import { StoreHealth } from './health.ts';
import { FindingHistoryStore } from './history.ts';
import { Transactions } from './transactions.ts';

/** What HostFindings (collector/gateway/host-findings.ts) reads and writes besides the FleetStore. */
export interface FindingsStores {
  advisories: AdvisoryStore;
  changes: AdvisoryChanges;
  epss: EpssStore;
  history: FindingHistoryStore;
  tx: Transactions;
}

export function findingsStores(db: Db): FindingsStores {
  return { advisories: new AdvisoryStore(db), changes: new AdvisoryChanges(db), epss: new EpssStore(db), history: new FindingHistoryStore(db), tx: new Transactions(db) };
}

/** What the HTTP API and the dashboard read and write besides the FleetStore. */
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
