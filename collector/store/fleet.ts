/**
 * The fleet in the store, in the parts that change together: the audit log, enrollment
 * tokens, agents, their reports and each host's current state. All parts of one Fleet
 * share one connection, so a change in one part and its audit row commit together.
 */
import { Agents } from './agents.ts';
import { AuditLog } from './audit-log.ts';
import type { Db } from './db.ts';
import { EnrollmentTokens } from './enrollment-tokens.ts';
import { Hosts } from './hosts.ts';
import { Reports } from './reports.ts';

export interface Fleet {
  audit: AuditLog;
  tokens: EnrollmentTokens;
  agents: Agents;
  reports: Reports;
  hosts: Hosts;
}

export function fleetOn(db: Db): Fleet {
  const audit = new AuditLog(db);
  const tokens = new EnrollmentTokens(db, audit);
  const agents = new Agents(db, audit, tokens);
  return { audit, tokens, agents, reports: new Reports(db, agents), hosts: new Hosts(db, agents) };
}
