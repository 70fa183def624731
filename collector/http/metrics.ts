/**
 * A tiny Prometheus registry (text exposition format 0.0.4): counters, gauges and
 * histograms with labels, no dependency. The collector's metrics are made once by
 * `createMetrics()`; the gateway increments the report metrics, the HTTP app the request
 * counter, and gauges that mirror the database are refreshed by collect hooks at scrape
 * time, so a scrape always shows the store's current state.
 *
 * Format reference: https://prometheus.io/docs/instrumenting/exposition_formats/
 * (label values escape `\`, `"` and newline; HELP text escapes `\` and newline).
 */

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * Label sets per metric. Every label value comes from a bounded set (route patterns, ack
 * statuses, configured feed names), so this is a guard against a bug, not a quota: past
 * it new series are dropped rather than growing memory without end.
 */
export const MAX_SERIES_PER_METRIC = 10_000;

export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

type LabelValues<L extends string> = [L] extends [never] ? Record<string, never> : Record<L, string>;

abstract class Metric<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  abstract readonly type: 'counter' | 'gauge' | 'histogram';
  /** Series key (escaped label pairs) -> state. */
  protected readonly series = new Map<string, { labels: string; value: number; buckets?: number[]; count?: number }>();
  dropped = 0;

  constructor(name: string, help: string, labelNames: readonly L[]) {
    if (!METRIC_NAME.test(name)) throw new TypeError(`invalid metric name ${JSON.stringify(name)}`);
    for (const l of labelNames) {
      if (!LABEL_NAME.test(l) || l.startsWith('__')) throw new TypeError(`invalid label name ${JSON.stringify(l)} on ${name}`);
    }
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
  }

  protected key(labels: LabelValues<L> | undefined): string {
    if (this.labelNames.length === 0) return '';
    const given = (labels ?? {}) as Record<string, unknown>;
    const pairs: string[] = [];
    for (const l of this.labelNames) {
      const v = given[l];
      if (typeof v !== 'string') throw new TypeError(`metric ${this.name} needs label ${l}`);
      pairs.push(`${l}="${escapeLabelValue(v)}"`);
    }
    if (Object.keys(given).length !== this.labelNames.length) throw new TypeError(`metric ${this.name} takes labels ${this.labelNames.join(', ')}`);
    return pairs.join(',');
  }

  protected entry(labels: LabelValues<L> | undefined) {
    const k = this.key(labels);
    let e = this.series.get(k);
    if (e === undefined) {
      if (this.series.size >= MAX_SERIES_PER_METRIC) {
        this.dropped++;
        return undefined;
      }
      e = { labels: k, value: 0 };
      this.series.set(k, e);
    }
    return e;
  }

  /** Forgets every series (a gauge refreshed from the database drops feeds that are gone). */
  reset(): void {
    this.series.clear();
  }

  abstract render(): string[];

  protected header(): string[] {
    return [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
  }
}

/** A metric with one number per series (counters and gauges). */
abstract class ValueMetric<L extends string> extends Metric<L> {
  get(labels?: LabelValues<L>): number {
    return this.series.get(this.key(labels))?.value ?? 0;
  }

  render(): string[] {
    const out = this.header();
    for (const e of this.series.values()) out.push(`${this.name}${e.labels === '' ? '' : `{${e.labels}}`} ${formatValue(e.value)}`);
    return out;
  }
}

export class Counter<L extends string = never> extends ValueMetric<L> {
  readonly type = 'counter';

  inc(...args: [L] extends [never] ? [n?: number] : [labels: LabelValues<L>, n?: number]): void {
    const [labels, n] = (this.labelNames.length === 0 ? [undefined, args[0]] : args) as [LabelValues<L> | undefined, number | undefined];
    const by = n ?? 1;
    if (!(by >= 0)) throw new RangeError(`counter ${this.name} cannot go down (${by})`);
    const e = this.entry(labels);
    if (e !== undefined) e.value += by;
  }
}

export class Gauge<L extends string = never> extends ValueMetric<L> {
  readonly type = 'gauge';

  set(...args: [L] extends [never] ? [value: number] : [labels: LabelValues<L>, value: number]): void {
    const [labels, value] = (this.labelNames.length === 0 ? [undefined, args[0]] : args) as [LabelValues<L> | undefined, number];
    const e = this.entry(labels);
    if (e !== undefined) e.value = value;
  }

  inc(...args: [L] extends [never] ? [n?: number] : [labels: LabelValues<L>, n?: number]): void {
    const [labels, n] = (this.labelNames.length === 0 ? [undefined, args[0]] : args) as [LabelValues<L> | undefined, number | undefined];
    const e = this.entry(labels);
    if (e !== undefined) e.value += n ?? 1;
  }

  dec(...args: [L] extends [never] ? [n?: number] : [labels: LabelValues<L>, n?: number]): void {
    const [labels, n] = (this.labelNames.length === 0 ? [undefined, args[0]] : args) as [LabelValues<L> | undefined, number | undefined];
    const e = this.entry(labels);
    if (e !== undefined) e.value -= n ?? 1;
  }
}

/** Seconds; from 1 ms (an unchanged-inventory ack) to 10 s (a 200k-package report on a busy disk). */
export const DEFAULT_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Histogram<L extends string = never> extends Metric<L> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];

  constructor(name: string, help: string, labelNames: readonly L[], buckets: readonly number[] = DEFAULT_BUCKETS) {
    super(name, help, labelNames);
    if (labelNames.includes('le' as L)) throw new TypeError(`histogram ${name} cannot have a label named le`);
    if (buckets.length === 0 || buckets.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= (buckets[i - 1] as number)))) {
      throw new TypeError(`histogram ${name}: buckets must be finite and increasing`);
    }
    this.buckets = buckets;
  }

  observe(...args: [L] extends [never] ? [value: number] : [labels: LabelValues<L>, value: number]): void {
    const [labels, value] = (this.labelNames.length === 0 ? [undefined, args[0]] : args) as [LabelValues<L> | undefined, number];
    if (Number.isNaN(value)) return;
    const e = this.entry(labels);
    if (e === undefined) return;
    e.buckets ??= new Array<number>(this.buckets.length).fill(0);
    e.count = (e.count ?? 0) + 1;
    e.value += value;
    for (let i = 0; i < this.buckets.length; i++) if (value <= (this.buckets[i] as number)) (e.buckets[i] as number)++;
  }

  /** Times `fn` (sync or async) and observes its duration in seconds, also when it throws. */
  time<T>(labelsOrFn: LabelValues<L> | (() => T), fn?: () => T): T {
    const run = (typeof labelsOrFn === 'function' ? labelsOrFn : fn) as () => T;
    const labels = typeof labelsOrFn === 'function' ? undefined : labelsOrFn;
    const start = process.hrtime.bigint();
    const done = () => {
      const s = Number(process.hrtime.bigint() - start) / 1e9;
      (this.observe as (...a: unknown[]) => void)(...(labels === undefined ? [s] : [labels, s]));
    };
    let result: T;
    try {
      result = run();
    } catch (err) {
      done();
      throw err;
    }
    if (result instanceof Promise) return result.finally(done) as T;
    done();
    return result;
  }

  count(labels?: LabelValues<L>): number {
    return this.series.get(this.key(labels))?.count ?? 0;
  }

  render(): string[] {
    const out = this.header();
    for (const e of this.series.values()) {
      const sep = e.labels === '' ? '' : `${e.labels},`;
      const braces = e.labels === '' ? '' : `{${e.labels}}`;
      this.buckets.forEach((b, i) => out.push(`${this.name}_bucket{${sep}le="${formatValue(b)}"} ${e.buckets?.[i] ?? 0}`));
      out.push(`${this.name}_bucket{${sep}le="+Inf"} ${e.count ?? 0}`);
      out.push(`${this.name}_sum${braces} ${formatValue(e.value)}`);
      out.push(`${this.name}_count${braces} ${e.count ?? 0}`);
    }
    return out;
  }
}

export class Registry {
  readonly #metrics = new Map<string, { readonly name: string; render(): string[] }>();
  readonly #hooks: (() => void | Promise<void>)[] = [];

  #add<M extends { readonly name: string; render(): string[] }>(m: M): M {
    if (this.#metrics.has(m.name)) throw new TypeError(`metric ${m.name} is registered twice`);
    this.#metrics.set(m.name, m);
    return m;
  }

  counter<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return this.#add(new Counter<L>(name, help, labelNames));
  }

  gauge<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
    return this.#add(new Gauge<L>(name, help, labelNames));
  }

  histogram<L extends string = never>(name: string, help: string, labelNames: readonly L[] = [], buckets?: readonly number[]): Histogram<L> {
    return this.#add(new Histogram<L>(name, help, labelNames, buckets));
  }

  /** Runs before every render: gauges that mirror other state (the store's counts) are refreshed here. */
  onCollect(hook: () => void | Promise<void>): void {
    this.#hooks.push(hook);
  }

  /** The exposition text. A failing hook leaves its gauges at their last values and is reported as a metric of its own. */
  async render(): Promise<string> {
    let failures = 0;
    for (const h of this.#hooks) {
      try {
        await h();
      } catch {
        failures++;
      }
    }
    const lines: string[] = [];
    for (const m of this.#metrics.values()) lines.push(...m.render());
    lines.push('# HELP patchwarden_metrics_collect_errors Collect hooks that failed during this scrape.', '# TYPE patchwarden_metrics_collect_errors gauge', `patchwarden_metrics_collect_errors ${failures}`);
    return lines.join('\n') + '\n';
  }
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * The collector's metrics. Names (documented in collector/http/README.md):
 * - patchwarden_agents_connected (gauge): agents with an open, authenticated connection
 * - patchwarden_agent_connections (gauge): authenticated agent connections this collector process holds (each replica its own)
 * - patchwarden_reports_total{status} (counter): reports by ack status: stored, unchanged, duplicate, rejected
 * - patchwarden_report_ingest_seconds (histogram): from a report's arrival to its ack
 * - patchwarden_hosts_total (gauge): hosts that have reported at least once
 * - patchwarden_findings_open (gauge): open findings over the fleet
 * - patchwarden_feed_age_seconds{feed} (gauge): time since each feed was last checked successfully
 * - patchwarden_hosts{assessment} (gauge): hosts by coverage state: assessed, stale, not-assessed (alert on not-assessed > 0)
 * - patchwarden_http_requests_total{route,status} (counter): by route pattern, never the raw path
 * - patchwarden_auth_refused_total{reason} (counter): refused authentications and 403s by reason (no-token, malformed, unknown, revoked, rate-limited, forbidden); the source address is in the log line, never a label
 * - patchwarden_rollouts{state} (gauge): rollouts by state (alert on `halted`)
 * - patchwarden_instruction_results_total{status} (counter): results agents sent (succeeded, failed, refused)
 * - patchwarden_findings_queue (gauge): hosts whose new inventory waits to be correlated (a burst of reports drains here)
 * - patchwarden_store_wal_frames (gauge): frames in the SQLite WAL at the last background checkpoint (steady growth: checkpoints are not keeping up)
 * - patchwarden_store_checkpoint_failures_total (counter): background WAL checkpoints that failed
 * - process_resident_memory_bytes (gauge): the collector's RSS
 */
export interface CollectorMetrics {
  readonly registry: Registry;
  readonly agentsConnected: Gauge;
  readonly agentConnections: Gauge;
  readonly reportsTotal: Counter<'status'>;
  readonly reportIngestSeconds: Histogram;
  readonly hostsTotal: Gauge;
  readonly findingsOpen: Gauge;
  readonly findingsQueue: Gauge;
  readonly walFrames: Gauge;
  readonly checkpointFailuresTotal: Counter;
  readonly rollouts: Gauge<'state'>;
  readonly instructionResultsTotal: Counter<'status'>;
  readonly feedAgeSeconds: Gauge<'feed'>;
  readonly hostsByAssessment: Gauge<'assessment'>;
  readonly httpRequestsTotal: Counter<'route' | 'status'>;
  readonly authRefusedTotal: Counter<'reason'>;
  readonly processResidentMemoryBytes: Gauge;
}

export function createMetrics(): CollectorMetrics {
  const registry = new Registry();
  const processResidentMemoryBytes = registry.gauge('process_resident_memory_bytes', 'Resident memory size in bytes.');
  registry.onCollect(() => {
    processResidentMemoryBytes.set(process.memoryUsage.rss());
  });
  return {
    registry,
    agentsConnected: registry.gauge('patchwarden_agents_connected', 'Agents with an open, authenticated connection.'),
    agentConnections: registry.gauge('patchwarden_agent_connections', 'Authenticated agent connections held by this collector process (each replica counts its own).'),
    reportsTotal: registry.counter('patchwarden_reports_total', 'Reports received, by ack status (stored, unchanged, duplicate, rejected).', ['status']),
    reportIngestSeconds: registry.histogram('patchwarden_report_ingest_seconds', 'Seconds from a report arriving to its ack (validation, transaction, commit).'),
    hostsTotal: registry.gauge('patchwarden_hosts_total', 'Hosts that have reported at least once.'),
    findingsOpen: registry.gauge('patchwarden_findings_open', 'Open findings (status open) over every host.'),
    findingsQueue: registry.gauge('patchwarden_findings_queue', 'Hosts whose new inventory waits to be correlated.'),
    walFrames: registry.gauge('patchwarden_store_wal_frames', 'Frames in the SQLite WAL at the last background checkpoint.'),
    checkpointFailuresTotal: registry.counter('patchwarden_store_checkpoint_failures_total', 'Background WAL checkpoints that failed.'),
    rollouts: registry.gauge('patchwarden_rollouts', 'Rollouts by state.', ['state']),
    instructionResultsTotal: registry.counter('patchwarden_instruction_results_total', 'Instruction results received from agents, by status.', ['status']),
    feedAgeSeconds: registry.gauge('patchwarden_feed_age_seconds', 'Seconds since the feed was last checked successfully.', ['feed']),
    hostsByAssessment: registry.gauge('patchwarden_hosts', 'Hosts by assessment state: assessed (a fresh feed covers them), stale (covering feeds are stale), not-assessed (no feed covers them).', ['assessment']),
    httpRequestsTotal: registry.counter('patchwarden_http_requests_total', 'HTTP requests by route pattern and status code.', ['route', 'status']),
    authRefusedTotal: registry.counter('patchwarden_auth_refused_total', 'Refused authentications (API and dashboard login) and 403 answers, by reason.', ['reason']),
    processResidentMemoryBytes,
  };
}
