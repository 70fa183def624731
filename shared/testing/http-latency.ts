/**
 * A probe that keeps asking a URL (a collector's /healthz) while something else happens,
 * and remembers the slowest answers: a stalled event loop shows as one slow request. Tests
 * and benches only.
 */
export interface LatencyProbe {
  /** Stops probing once the request in flight has answered; the slowest answer in ms (a probe that got none counts its timeout). */
  stop(): Promise<{ maxMs: number; probes: number; failures: string[]; slowest: { at: number; ms: number }[] }>;
}

/** One request every `intervalMs` after the previous answered; each may take up to `timeoutMs`. */
export function probeLatency(url: string, options: { intervalMs?: number; timeoutMs?: number } = {}): LatencyProbe {
  const intervalMs = options.intervalMs ?? 10;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const state = { stopped: false };
  let maxMs = 0;
  let probes = 0;
  const failures: string[] = [];
  const all: { at: number; ms: number }[] = [];
  const t0 = performance.now();
  const loop = (async () => {
    while (!state.stopped) {
      const started = performance.now();
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
        await res.arrayBuffer();
      } catch (err) {
        failures.push((err as Error).message);
      }
      const ms = performance.now() - started;
      maxMs = Math.max(maxMs, ms);
      all.push({ at: Math.round(started - t0), ms: Math.round(ms) });
      probes++;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    async stop() {
      state.stopped = true;
      await loop;
      return { maxMs, probes, failures, slowest: all.sort((a, b) => b.ms - a.ms).slice(0, 5) };
    },
  };
}
