/**
 * Accepted risks (table `exceptions`): adding and ending them with their audit row, the
 * list `exception list` prints, and the ones in force as the fleet-wide counts and each
 * host's correlation read them (the only reads of the table).
 * An exception is never deleted: ending one moves its expiry to now, so the record stays.
 * On the shared executor (SQLite and PostgreSQL, issue 12); each change and its audit row are
 * one atomic step.
 */
import type { RiskException } from '../domain/correlate/findings.ts';
import { StoreError } from './db.ts';
import type { PartScope } from './part-scope.ts';
import { sql } from './sql/query.ts';

export interface ExceptionInput extends RiskException {
  /** Absent: every host (a fleet-wide acceptance). */
  host?: string | undefined;
}

/** One stored exception, ended ones too. `createdBy`: the actor who accepted the risk, beside the owner it names. */
export interface ExceptionRecord {
  id: number;
  advisory: string;
  package: string | null;
  host: string | null;
  owner: string;
  reason: string;
  expires: string;
  createdAt: string;
  createdBy: string | null;
}

/** What changes when an exception is added, ended or expires: a cache of counts keys on it. */
export interface ExceptionsSignature {
  inForce: number;
  lastId: number;
  /** The soonest expiry in force ('' when none is): the counts change when it passes. */
  soonestExpiry: string;
}

export interface ExceptionsInForce {
  fleetWide: RiskException[];
  byHost: Map<string, RiskException[]>;
}

interface ExceptionRow {
  advisory: string;
  package: string | null;
  host: string | null;
  owner: string;
  reason: string;
  expires: string;
}

function riskException(r: ExceptionRow): RiskException {
  return { advisory: r.advisory, package: r.package ?? undefined, owner: r.owner, reason: r.reason, expires: r.expires };
}

const insert = sql('INSERT INTO exceptions (advisory, package, host, owner, reason, expires, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id');
const expiresOf = sql('SELECT expires FROM exceptions WHERE id = ? AND expires > ?');
// The expiry is checked again in the update: on PostgreSQL two replicas may end the same
// exception at once, and only the one whose update changed the row audits it.
const end = sql('UPDATE exceptions SET expires = ? WHERE id = ? AND expires > ?');
const all = sql('SELECT id, advisory, package, host, owner, reason, expires, created_at AS "createdAt", created_by AS "createdBy" FROM exceptions ORDER BY id');
const signature = sql('SELECT count(*) AS n, max(id) AS last, min(expires) AS soonest FROM exceptions WHERE expires > ?');
const inForce = sql('SELECT advisory, package, host, owner, reason, expires FROM exceptions WHERE expires > ? ORDER BY id');
// Both run for every correlated host, thousands of times in a burst of reports.
const inForceFor = sql('SELECT advisory, package, host, owner, reason, expires FROM exceptions WHERE (host IS NULL OR host = ?) AND expires > ? ORDER BY id');
const inForceFleetWide = sql('SELECT advisory, package, host, owner, reason, expires FROM exceptions WHERE host IS NULL AND expires > ? ORDER BY id');

export class ExceptionStore {
  readonly #scope: PartScope;

  /** The add and end audit rows go through the scope's audit part, in the exception's own atomic step. */
  constructor(scope: PartScope) {
    this.#scope = scope;
  }

  /** Accepts a risk as `actor` (`cli:<unix user>`) and audits it; returns the new id. */
  add(e: ExceptionInput, actor: string, now: Date): Promise<number> {
    return this.#scope.atomic(async (s) => {
      const r = await s.ex.get<{ id: number }>(insert, [e.advisory, e.package ?? null, e.host ?? null, e.owner, e.reason, e.expires, now.toISOString(), actor]);
      if (r === undefined) throw new StoreError('an exception was inserted but its id did not come back');
      const detail = { advisory: e.advisory, package: e.package ?? null, host: e.host ?? null, owner: e.owner, reason: e.reason, expires: e.expires };
      await s.store.audit.record(actor, 'exception.add', `exception:${r.id}`, JSON.stringify(detail), now);
      return r.id;
    });
  }

  /**
   * Ends an exception now (its expiry moves to `now`) and audits it; returns the expiry it
   * had, undefined when there is no such exception or it has ended already.
   */
  end(id: number, actor: string, now: Date): Promise<string | undefined> {
    return this.#scope.atomic(async (s) => {
      const at = now.toISOString();
      const was = (await s.ex.get<{ expires: string }>(expiresOf, [id, at]))?.expires;
      if (was === undefined) return undefined;
      if ((await s.ex.run(end, [at, id, at])) !== 1) return undefined;
      await s.store.audit.record(actor, 'exception.remove', `exception:${id}`, JSON.stringify({ expired: was }), now);
      return was;
    });
  }

  /** Every exception ever added, ended ones too, oldest first. */
  all(): Promise<ExceptionRecord[]> {
    return this.#scope.ex.all<ExceptionRecord>(all);
  }

  async signature(now: Date): Promise<ExceptionsSignature> {
    const r = await this.#scope.ex.get<{ n: number; last: number | null; soonest: string | null }>(signature, [now.toISOString()]);
    return { inForce: r?.n ?? 0, lastId: r?.last ?? 0, soonestExpiry: r?.soonest ?? '' };
  }

  /** The exceptions in force for one host: the fleet-wide ones and its own, in the order they were added. */
  async forHost(host: string, now: Date): Promise<RiskException[]> {
    return (await this.#scope.ex.all<ExceptionRow>(inForceFor, [host, now.toISOString()])).map(riskException);
  }

  /** The fleet-wide exceptions in force: what applies to a host with none of its own. */
  async fleetWide(now: Date): Promise<RiskException[]> {
    return (await this.#scope.ex.all<ExceptionRow>(inForceFleetWide, [now.toISOString()])).map(riskException);
  }

  /** The exceptions that have not expired, fleet-wide ones apart from each host's own, each list in the order they were added. */
  async inForce(now: Date): Promise<ExceptionsInForce> {
    const out: ExceptionsInForce = { fleetWide: [], byHost: new Map() };
    for (const r of await this.#scope.ex.all<ExceptionRow>(inForce, [now.toISOString()])) {
      const e = riskException(r);
      if (r.host === null) out.fleetWide.push(e);
      else {
        const list = out.byHost.get(r.host);
        if (list === undefined) out.byHost.set(r.host, [e]);
        else list.push(e);
      }
    }
    return out;
  }
}
