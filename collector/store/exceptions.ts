/**
 * Accepted risks (table `exceptions`): adding and ending them with their audit row, the
 * list `exception list` prints, and the ones in force as the fleet-wide counts read them.
 * An exception is never deleted: ending one moves its expiry to now, so the record stays.
 */
import type { RiskException } from '../domain/correlate/findings.ts';
import type { AuditLog } from './audit-log.ts';
import type { Db } from './db.ts';

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

export class ExceptionStore {
  readonly #insert;
  readonly #expiresOf;
  readonly #end;
  readonly #all;
  readonly #signature;
  readonly #inForce;
  readonly #addTx;
  readonly #endTx;

  /** `audit` takes the add and end rows, written in the exception's own transaction. */
  constructor(db: Db, audit: Pick<AuditLog, 'record'>) {
    this.#insert = db.prepare<[string, string | null, string | null, string, string, string, string, string]>(
      'INSERT INTO exceptions (advisory, package, host, owner, reason, expires, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.#expiresOf = db.prepare<[number, string], { expires: string }>('SELECT expires FROM exceptions WHERE id = ? AND expires > ?');
    this.#end = db.prepare<[string, number]>('UPDATE exceptions SET expires = ? WHERE id = ?');
    this.#all = db.prepare<[], ExceptionRecord>(
      'SELECT id, advisory, package, host, owner, reason, expires, created_at AS createdAt, created_by AS createdBy FROM exceptions ORDER BY id',
    );
    this.#signature = db.prepare<[string], { n: number; last: number | null; soonest: string | null }>(
      'SELECT count(*) AS n, max(id) AS last, min(expires) AS soonest FROM exceptions WHERE expires > ?',
    );
    this.#inForce = db.prepare<[string], ExceptionRow>('SELECT advisory, package, host, owner, reason, expires FROM exceptions WHERE expires > ? ORDER BY id');
    this.#addTx = db.transaction((e: ExceptionInput, actor: string, now: Date): number => {
      const id = Number(this.#insert.run(e.advisory, e.package ?? null, e.host ?? null, e.owner, e.reason, e.expires, now.toISOString(), actor).lastInsertRowid);
      const detail = { advisory: e.advisory, package: e.package ?? null, host: e.host ?? null, owner: e.owner, reason: e.reason, expires: e.expires };
      audit.record(actor, 'exception.add', `exception:${id}`, JSON.stringify(detail), now);
      return id;
    });
    this.#endTx = db.transaction((id: number, actor: string, now: Date): string | undefined => {
      const at = now.toISOString();
      const was = this.#expiresOf.get(id, at)?.expires;
      if (was === undefined) return undefined;
      this.#end.run(at, id);
      audit.record(actor, 'exception.remove', `exception:${id}`, JSON.stringify({ expired: was }), now);
      return was;
    });
  }

  /** Accepts a risk as `actor` (`cli:<unix user>`) and audits it; returns the new id. */
  add(e: ExceptionInput, actor: string, now: Date): number {
    return this.#addTx(e, actor, now);
  }

  /**
   * Ends an exception now (its expiry moves to `now`) and audits it; returns the expiry it
   * had, undefined when there is no such exception or it has ended already.
   */
  end(id: number, actor: string, now: Date): string | undefined {
    return this.#endTx(id, actor, now);
  }

  /** Every exception ever added, ended ones too, oldest first. */
  all(): ExceptionRecord[] {
    return this.#all.all();
  }

  signature(now: Date): ExceptionsSignature {
    const r = this.#signature.get(now.toISOString());
    return { inForce: r?.n ?? 0, lastId: r?.last ?? 0, soonestExpiry: r?.soonest ?? '' };
  }

  /** The exceptions that have not expired, fleet-wide ones apart from each host's own, each list in the order they were added. */
  inForce(now: Date): ExceptionsInForce {
    const out: ExceptionsInForce = { fleetWide: [], byHost: new Map() };
    for (const r of this.#inForce.iterate(now.toISOString())) {
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
