/**
 * The HTTP API's and the dashboard's tokens as operators manage them (`api-token
 * create|revoke|list`): a token is shown once, at creation, and only its sha256 is stored;
 * creating and revoking are audited with the actor (collector/store/access.ts).
 */
import type { ApiTokenRecord, Role } from '../../store/access.ts';
import type { AsyncStore } from '../../store/store.ts';

export { ROLES, TOKEN_NAME, type ApiTokenRecord, type Role } from '../../store/access.ts';

export class ApiTokens {
  readonly #store: Pick<AsyncStore, 'apiTokens'>;

  constructor(store: Pick<AsyncStore, 'apiTokens'>) {
    this.#store = store;
  }

  /** Names stay taken after revocation, so the audit log names one token each. */
  byName(name: string): Promise<ApiTokenRecord | undefined> {
    return this.#store.apiTokens.byName(name);
  }

  create(opts: { name: string; role: Role; createdBy: string }): Promise<{ token: string; record: ApiTokenRecord }> {
    return this.#store.apiTokens.create(opts);
  }

  /** False when it was revoked already. */
  revoke(name: string, actor: string): Promise<boolean> {
    return this.#store.apiTokens.revoke(name, actor);
  }

  list(): Promise<ApiTokenRecord[]> {
    return this.#store.apiTokens.list();
  }
}
