/**
 * The store's asynchronous interface over a part that is still synchronous (issue 12,
 * collector/store/POSTGRES.md): the way callers move to the interface both engines share
 * before each part's statements move to `sql/executor.ts` one domain at a time. Callers
 * written against `Promisified<Part>` do not change when the part is rewritten on the
 * executor; this file goes when the last part has been.
 *
 * A call outside a transaction waits while one is open on the connection (SqliteDatabase's
 * turn), as an executor statement does: otherwise it would run inside another caller's
 * transaction and be rolled back with it. Inside a transaction (`gate` null) it runs at once.
 */

/** Each method of `T` as the asynchronous store has it: results as promises, iterators as async ones. */
export type Promisified<T> = {
  readonly [K in keyof T]: T[K] extends (...args: infer A) => Generator<infer Y>
    ? (...args: A) => AsyncGenerator<Y>
    : T[K] extends (...args: infer A) => infer R
      ? (...args: A) => Promise<Awaited<R>>
      : T[K];
};

/** Settles when the connection's open transaction has ended; null when none is open. */
export type Gate = () => Promise<void> | null;

/** `function*`'s constructor, which no global names: a generator method is an instance of it. */
const GeneratorFunction = (Object.getPrototypeOf(function* () {
  /* only its constructor is wanted */
}) as { constructor: new () => unknown }).constructor;

/**
 * A generator method's items, each step taken at its turn. The part's generators read a
 * page per step (keyset paging, never a cursor held open across steps), so a caller may
 * await between items while other statements use the connection.
 */
async function* pulled(start: () => Iterator<unknown>, gate: Gate | null): AsyncGenerator {
  let iterator: Iterator<unknown> | undefined;
  for (;;) {
    for (let wait = gate?.(); wait !== null && wait !== undefined; wait = gate?.()) await wait;
    iterator ??= start();
    const step = iterator.next();
    if (step.done === true) return;
    yield step.value;
  }
}

/**
 * `part`'s methods as promises, its generator methods as async generators. With no
 * transaction open a call runs synchronously, as it did, and its result is wrapped.
 */
export function promisified<T extends object>(part: T, gate: Gate | null): Promisified<T> {
  const calls = new Map<PropertyKey, unknown>();
  return new Proxy(part, {
    get(target, key) {
      const value: unknown = Reflect.get(target, key, target);
      if (typeof value !== 'function') return value;
      let call = calls.get(key);
      if (call === undefined) {
        const method = value as (...args: unknown[]) => unknown;
        call =
          value instanceof GeneratorFunction
            ? (...args: unknown[]) => pulled(() => method.apply(target, args) as Iterator<unknown>, gate)
            : async (...args: unknown[]): Promise<unknown> => {
                for (let wait = gate?.(); wait !== null && wait !== undefined; wait = gate?.()) await wait;
                return method.apply(target, args);
              };
        calls.set(key, call);
      }
      return call;
    },
  }) as unknown as Promisified<T>;
}
