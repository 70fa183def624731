/**
 * Accepted risks (`exception add|remove|list`): a finding an owner accepts until a date is
 * shown as excepted instead of open. Each change is written to the audit log with its actor
 * in the same transaction (collector/store/exceptions.ts).
 */
import type { ExceptionInput, ExceptionRecord } from '../../store/exceptions.ts';
import type { AsyncStore } from '../../store/store.ts';

export type { ExceptionInput, ExceptionRecord } from '../../store/exceptions.ts';

export class RiskExceptions {
  readonly #store: Pick<AsyncStore, 'exceptions'>;

  constructor(store: Pick<AsyncStore, 'exceptions'>) {
    this.#store = store;
  }

  /** Accepts the risk until `input.expires`; returns the exception's id. */
  accept(input: ExceptionInput, actor: string, now: Date): Promise<number> {
    return this.#store.exceptions.add(input, actor, now);
  }

  /** Ends an exception in force; undefined when there is none with that id (or it expired). Returns when it was to expire. */
  end(id: number, actor: string, now: Date): Promise<string | undefined> {
    return this.#store.exceptions.end(id, actor, now);
  }

  list(): Promise<ExceptionRecord[]> {
    return this.#store.exceptions.all();
  }
}
