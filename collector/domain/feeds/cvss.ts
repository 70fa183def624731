/**
 * CVSS 3.0 / 3.1 base score from a vector string, per the FIRST specification
 * (https://www.first.org/cvss/v3.1/specification-document, section 7). OSV carries
 * severity as a vector only (`severity[].type: CVSS_V3`), so the score is computed here.
 * Temporal and environmental metrics may follow the base metrics; they are checked for
 * shape and ignored, since the finding's severity is the base severity.
 */
import { FeedFormatError } from '../../../shared/errors.ts';

const WEIGHTS = {
  AV: { N: 0.85, A: 0.62, L: 0.55, P: 0.2 },
  AC: { L: 0.77, H: 0.44 },
  PR: { N: 0.85, L: 0.62, H: 0.27 },
  UI: { N: 0.85, R: 0.62 },
  S: { U: 0, C: 1 },
  C: { H: 0.56, L: 0.22, N: 0 },
  I: { H: 0.56, L: 0.22, N: 0 },
  A: { H: 0.56, L: 0.22, N: 0 },
} as const;
type BaseMetric = keyof typeof WEIGHTS;
const BASE_METRICS = Object.keys(WEIGHTS) as BaseMetric[];

const OPTIONAL_METRICS: Readonly<Record<string, readonly string[]>> = {
  E: ['X', 'H', 'F', 'P', 'U'],
  RL: ['X', 'U', 'W', 'T', 'O'],
  RC: ['X', 'C', 'R', 'U'],
  CR: ['X', 'H', 'M', 'L'],
  IR: ['X', 'H', 'M', 'L'],
  AR: ['X', 'H', 'M', 'L'],
  MAV: ['X', 'N', 'A', 'L', 'P'],
  MAC: ['X', 'L', 'H'],
  MPR: ['X', 'N', 'L', 'H'],
  MUI: ['X', 'N', 'R'],
  MS: ['X', 'U', 'C'],
  MC: ['X', 'N', 'L', 'H'],
  MI: ['X', 'N', 'L', 'H'],
  MA: ['X', 'N', 'L', 'H'],
};

/** 3.1's Roundup avoids float artefacts (Appendix A); 3.0 used a plain ceiling to one decimal. */
function roundUp(value: number, minor: '0' | '1'): number {
  if (minor === '0') return Math.ceil(value * 10) / 10;
  const scaled = Math.round(value * 100_000);
  return scaled % 10_000 === 0 ? scaled / 100_000 : (Math.floor(scaled / 10_000) + 1) / 10;
}

function weight(metric: BaseMetric, value: string, vector: string): number {
  const table: Readonly<Record<string, number>> = WEIGHTS[metric];
  const w = table[value];
  if (w === undefined) throw new FeedFormatError(`CVSS vector ${JSON.stringify(vector)}: ${metric}:${value} is not a valid value`);
  return w;
}

/** The base score (0.0 to 10.0); throws FeedFormatError for anything that is not a valid 3.x vector. */
export function cvss3BaseScore(vector: string): number {
  const m = /^CVSS:3\.([01])\/(.+)$/.exec(vector);
  if (m === null) throw new FeedFormatError(`CVSS vector ${JSON.stringify(vector.slice(0, 200))} is not CVSS 3.0 or 3.1`);
  const minor = m[1] as '0' | '1';
  const values = new Map<string, string>();
  for (const part of (m[2] ?? '').split('/')) {
    const [name, value, extra] = part.split(':');
    if (name === undefined || value === undefined || extra !== undefined || values.has(name)) {
      throw new FeedFormatError(`CVSS vector ${JSON.stringify(vector)}: bad or repeated metric ${JSON.stringify(part)}`);
    }
    const optional = OPTIONAL_METRICS[name];
    if (optional !== undefined && !optional.includes(value)) {
      throw new FeedFormatError(`CVSS vector ${JSON.stringify(vector)}: ${name}:${value} is not a valid value`);
    }
    if (optional === undefined && !(name in WEIGHTS)) {
      throw new FeedFormatError(`CVSS vector ${JSON.stringify(vector)}: unknown metric ${name}`);
    }
    values.set(name, value);
  }
  const w = {} as Record<BaseMetric, number>;
  for (const metric of BASE_METRICS) {
    const value = values.get(metric);
    if (value === undefined) throw new FeedFormatError(`CVSS vector ${JSON.stringify(vector)}: base metric ${metric} is missing`);
    w[metric] = weight(metric, value, vector);
  }
  const changed = w.S === 1;
  // Privileges Required weighs more when the scope changes (spec table 16).
  const pr = changed && values.get('PR') === 'L' ? 0.68 : changed && values.get('PR') === 'H' ? 0.5 : w.PR;
  const iss = 1 - (1 - w.C) * (1 - w.I) * (1 - w.A);
  const impact = changed ? 7.52 * (iss - 0.029) - 3.25 * Math.pow(iss - 0.02, 15) : 6.42 * iss;
  const exploitability = 8.22 * w.AV * w.AC * pr * w.UI;
  if (impact <= 0) return 0;
  return changed ? roundUp(Math.min(1.08 * (impact + exploitability), 10), minor) : roundUp(Math.min(impact + exploitability, 10), minor);
}
