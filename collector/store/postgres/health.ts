/**
 * `/healthz` for a collector on PostgreSQL (issue 12), in the shape of store/health.ts's
 * report so the route and the load balancer in front of the replicas read one format.
 *
 * A replica is healthy when its own heartbeat committed recently: one row rewritten
 * (store_heartbeat), in autocommit, on a timer, not per probe: a load balancer probing
 * every second must not become the database's busiest writer, and a probe must answer at
 * once even while PostgreSQL does not. Also unhealthy: connected to a standby (read-only:
 * every report would fail), or no probe answered for three intervals (a hung connection).
 * Free space and page checks are PostgreSQL's and its operators' (`freeBytes` null,
 * `integrity` off).
 */
import { errorMessage } from '../../../shared/errors.ts';
import { HEALTH_CODES, type HealthProblem, type StoreHealthReport, WRITE_PROBE_INTERVAL_MS } from '../health.ts';
import type { SqlExecutor } from '../sql/executor.ts';
import { sql } from '../sql/query.ts';

const BEAT = sql({
  postgres: `INSERT INTO store_heartbeat (id, at, pid) VALUES (1, ?, ?)
    ON CONFLICT (id) DO UPDATE SET at = excluded.at, pid = excluded.pid
    RETURNING pg_is_in_recovery() AS standby`,
});
const STANDBY = sql({ postgres: 'SELECT pg_is_in_recovery() AS standby' });

export interface PostgresHealthOptions {
  writeIntervalMs?: number;
  /** How long one probe may take before it counts as failed. Default 5 s. */
  probeTimeoutMs?: number;
  onChange?: (report: StoreHealthReport) => void;
}

interface Probe {
  at: number;
  /** null: committed. */
  error: string | null;
  answered: boolean;
}

export class PostgresHealth {
  readonly #db: SqlExecutor;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #onChange: ((r: StoreHealthReport) => void) | undefined;
  readonly #started = performance.now();
  #probe: Probe | null = null;
  #lastWriteAt: Date | null = null;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #lastCodes = '';
  #stopped = false;

  constructor(db: SqlExecutor, options: PostgresHealthOptions = {}) {
    this.#db = db;
    this.#intervalMs = options.writeIntervalMs ?? WRITE_PROBE_INTERVAL_MS;
    this.#timeoutMs = options.probeTimeoutMs ?? 5000;
    this.#onChange = options.onChange;
  }

  /** Probes now and then every interval until stop(); resolves after the first probe. */
  async start(): Promise<void> {
    const loop = (): void => {
      this.#running = this.probe().finally(() => {
        if (!this.#stopped) this.#timer = setTimeout(loop, this.#intervalMs).unref();
      });
    };
    loop();
    await this.#running;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /** One heartbeat commit, bounded by the probe timeout. */
  async probe(): Promise<void> {
    const at = performance.now();
    const now = new Date();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`no answer within ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
    });
    try {
      const row = await Promise.race([this.#db.get<{ standby: boolean }>(BEAT, [now.toISOString(), process.pid]), timeout]);
      this.#lastWriteAt = now;
      this.#probe = { at, answered: true, error: row?.standby === true ? 'connected to a standby server (read-only)' : null };
    } catch (err) {
      // A standby refuses the write itself: say that rather than its error text alone.
      const standby = await Promise.race([this.#db.get<{ standby: boolean }>(STANDBY), timeout]).catch(() => undefined);
      this.#probe = { at, answered: standby !== undefined, error: standby?.standby === true ? 'connected to a standby server (read-only)' : errorMessage(err) };
    } finally {
      clearTimeout(timer);
    }
  }

  check(): StoreHealthReport {
    const problems: HealthProblem[] = [];
    const probe = this.#probe;
    const sinceMs = performance.now() - (probe?.at ?? this.#started);
    if (probe === null) {
      problems.push({ code: HEALTH_CODES.unwritable, message: 'no heartbeat has committed yet' });
    } else if (!probe.answered) {
      problems.push({ code: HEALTH_CODES.closed, message: `PostgreSQL does not answer: ${probe.error ?? 'no answer'}` });
    } else if (probe.error !== null) {
      problems.push({ code: HEALTH_CODES.unwritable, message: `the store cannot commit: ${probe.error}` });
    }
    if (probe !== null && sinceMs > 3 * this.#intervalMs) {
      problems.push({ code: HEALTH_CODES.unwritable, message: `no heartbeat probe finished for ${Math.round(sinceMs / 1000)} s (one is due every ${Math.round(this.#intervalMs / 1000)} s)` });
    }
    const report: StoreHealthReport = {
      ok: problems.length === 0,
      answers: probe?.answered ?? false,
      writable: problems.length === 0,
      lastWriteAt: this.#lastWriteAt?.toISOString() ?? null,
      freeBytes: null,
      integrity: 'off',
      integrityCheckedAt: null,
      integrityAgeSeconds: null,
      integrityIntervalSeconds: null,
      problems,
    };
    const codes = problems.map((p) => p.code).join(',');
    if (codes !== this.#lastCodes) {
      this.#lastCodes = codes;
      this.#onChange?.(report);
    }
    return report;
  }
}
