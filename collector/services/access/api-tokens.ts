/**
 * The HTTP API's and the dashboard's tokens as operators manage them (`api-token
 * create|revoke|list`): a token is shown once, at creation, and only its sha256 is stored;
 * creating and revoking are audited with the actor (collector/store/access.ts).
 */
import type { ApiTokenRecord, ApiTokenStore, Role } from '../../store/access.ts';

export { ROLES, TOKEN_NAME, type ApiTokenRecord, type Role } from '../../store/access.ts';

export class ApiTokens {
  readonly #store: ApiTokenStore;

  constructor(store: ApiTokenStore) {
    this.#store = store;
  }

  /** Names stay taken after revocation, so the audit log names one token each. */
  byName(name: string): ApiTokenRecord | undefined {
    return this.#store.byName(name);
  }

  create(opts: { name: string; role: Role; createdBy: string }): { token: string; record: ApiTokenRecord } {
    return this.#store.create(opts);
  }

  /** False when it was revoked already. */
  revoke(name: string, actor: string): boolean {
    return this.#store.revoke(name, actor);
  }

  list(): ApiTokenRecord[] {
    return this.#store.list();
  }
}
