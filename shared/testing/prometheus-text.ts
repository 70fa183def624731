/**
 * Prometheus text exposition read back by an independent parser, for the metrics tests.
 * Tests only.
 */
import { execFileSync } from 'node:child_process';

export interface MetricFamily {
  name: string;
  type: string;
  help: string;
  samples: { name: string; labels: Record<string, string>; value: number }[];
}

/**
 * The official Python client's text parser (Debian python3-prometheus-client) reads our
 * output back: an independent check of the exposition format and its escaping.
 */
export function parseWithPrometheusClient(text: string): MetricFamily[] {
  const script = `
import sys, json, math
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": (str(s.value) if math.isinf(s.value) or math.isnan(s.value) else s.value)} for s in f.samples]})
print(json.dumps(out))
`;
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { input: text, encoding: 'utf8', timeout: 30_000, maxBuffer: 16 * 1024 * 1024 })) as MetricFamily[];
}

export function sample(families: MetricFamily[], name: string, labels: Record<string, string> = {}): number | undefined {
  for (const f of families) {
    for (const s of f.samples) {
      if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s.value;
    }
  }
  return undefined;
}
