/**
 * Telling the other collector replicas that something changed (issue 12 §3): an instruction
 * enqueued on one replica must reach its agent on whichever replica holds the agent's
 * connection within a second. PostgreSQL's NOTIFY carries the news; the row itself is in
 * the outbox, so a notification is only a hint to look.
 *
 * A notification sent inside a transaction is delivered when it commits, never if it rolls
 * back. One that arrives while a listener is disconnected (PostgreSQL restarting, a network
 * cut) is lost: so after every reconnection the listener calls `onReconnect`, and the
 * consumer looks at the outbox afresh. Nothing relies on a notification arriving.
 */
import pg from 'pg';
import type { SqlExecutor } from '../sql/executor.ts';
import { sql } from '../sql/query.ts';

const NOTIFY = sql({ postgres: 'SELECT pg_notify(?, ?)' });
/** PostgreSQL refuses payloads of 8000 bytes or more: a notification names rows, it does not carry them. */
export const MAX_PAYLOAD_BYTES = 7999;
const CHANNEL = /^[a-z_][a-z0-9_]{0,62}$/;

/** Sends `payload` on `channel`; through a transaction's executor it goes out at commit. */
export async function notify(db: SqlExecutor, channel: string, payload: string): Promise<void> {
  if (!CHANNEL.test(channel)) throw new RangeError(`not a channel name: ${channel}`);
  if (Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) throw new RangeError(`a notification payload is at most ${MAX_PAYLOAD_BYTES} bytes`);
  await db.get(NOTIFY, [channel, payload]);
}

export interface ListenerOptions {
  url: string;
  channels: readonly string[];
  onNotification: (channel: string, payload: string) => void;
  /** After a reconnection: notifications sent meanwhile were lost, so look again. */
  onReconnect?: () => void;
  onError?: (err: unknown) => void;
  /** First wait before reconnecting, doubled up to 5 s. Default 100 ms. */
  retryMs?: number;
}

export class PostgresListener {
  readonly #options: ListenerOptions;
  #client: pg.Client | undefined;
  #closed = false;
  #retryMs: number;
  #timer: NodeJS.Timeout | undefined;
  #connecting: Promise<void> | undefined;

  constructor(options: ListenerOptions) {
    for (const c of options.channels) if (!CHANNEL.test(c)) throw new RangeError(`not a channel name: ${c}`);
    this.#options = options;
    this.#retryMs = options.retryMs ?? 100;
  }

  /** Connects and listens; resolves once listening (rejects if the first connection fails). */
  start(): Promise<void> {
    return this.#connect(false);
  }

  get listening(): boolean {
    return this.#client !== undefined;
  }

  #connect(reconnect: boolean): Promise<void> {
    this.#connecting = (async () => {
      const client = new pg.Client({ connectionString: this.#options.url, keepAlive: true });
      const lost = (err?: unknown): void => {
        if (err !== undefined) this.#options.onError?.(err);
        if (this.#client !== client) return;
        this.#client = undefined;
        client.end().catch(() => undefined);
        this.#schedule();
      };
      client.on('error', lost);
      client.on('end', () => { lost(); });
      client.on('notification', (n) => {
        this.#options.onNotification(n.channel, n.payload ?? '');
      });
      try {
        await client.connect();
        for (const c of this.#options.channels) await client.query(`LISTEN ${c}`);
      } catch (err) {
        client.end().catch(() => undefined);
        throw err;
      }
      if (this.#closed) {
        await client.end().catch(() => undefined);
        return;
      }
      this.#client = client;
      this.#retryMs = this.#options.retryMs ?? 100;
      if (reconnect) this.#options.onReconnect?.();
    })();
    return this.#connecting;
  }

  #schedule(): void {
    if (this.#closed || this.#timer !== undefined) return;
    const wait = this.#retryMs;
    this.#retryMs = Math.min(this.#retryMs * 2, 5000);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connect(true).catch((err: unknown) => {
        this.#options.onError?.(err);
        this.#schedule();
      });
    }, wait);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#connecting?.catch(() => undefined);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }
}
