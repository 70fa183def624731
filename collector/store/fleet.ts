/**
 * What is left of the fleet's synchronous parts: the audit log, which the parts still on
 * SQLite's synchronous calls write in their own transactions (API tokens, exceptions, feed
 * removal). Enrollment tokens, agents, reports, hosts and report imports are on the shared
 * executor (store.ts ON_EXECUTOR) and reached through the asynchronous store.
 */
import { AuditLog } from './audit-log.ts';
import type { Db } from './db.ts';

export interface Fleet {
  audit: AuditLog;
}

export function fleetOn(db: Db): Fleet {
  return { audit: new AuditLog(db) };
}
