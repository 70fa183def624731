/**
 * Accepted risks (`exception add|remove|list`): a finding an owner accepts until a date is
 * shown as excepted instead of open. Each change is written to the audit log with its actor
 * in the same transaction (collector/store/exceptions.ts).
 */
import type { ExceptionInput, ExceptionRecord, ExceptionStore } from '../../store/exceptions.ts';

export type { ExceptionInput, ExceptionRecord } from '../../store/exceptions.ts';

export class RiskExceptions {
  readonly #store: ExceptionStore;

  constructor(store: ExceptionStore) {
    this.#store = store;
  }

  /** Accepts the risk until `input.expires`; returns the exception's id. */
  accept(input: ExceptionInput, actor: string, now: Date): number {
    return this.#store.add(input, actor, now);
  }

  /** Ends an exception in force; undefined when there is none with that id (or it expired). Returns when it was to expire. */
  end(id: number, actor: string, now: Date): string | undefined {
    return this.#store.end(id, actor, now);
  }

  list(): ExceptionRecord[] {
    return this.#store.all();
  }
}
