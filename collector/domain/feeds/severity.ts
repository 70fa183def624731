/**
 * Severity words of every feed mapped onto one scale. Each source has its own vocabulary:
 * Red Hat / AlmaLinux summaries (`Important: kernel security update`), Ubuntu priorities
 * (`negligible` .. `critical`), Debian tracker urgencies (`unimportant`, `low**`), GHSA /
 * osv.dev `database_specific.severity` (`HIGH`, `MODERATE`), and CVSS scores.
 */
import type { Severity } from './types.ts';

const RANK: Readonly<Record<Severity, number>> = { unknown: 0, low: 1, medium: 2, high: 3, critical: 4 };

const WORDS: Readonly<Record<string, Severity>> = {
  critical: 'critical',
  important: 'high',
  high: 'high',
  moderate: 'medium',
  medium: 'medium',
  low: 'low',
  negligible: 'low',
  // Debian: "a minor issue that does not need a fix", still a CVE against the package.
  unimportant: 'low',
};

/**
 * A known severity word, case-insensitive; null for anything else (`untriaged`,
 * `not yet assigned`, `end-of-life`, `None`). Debian marks urgencies it took from NVD
 * rather than judged itself with trailing `*` / `**`; the word still counts.
 */
export function severityFromWord(word: string): Severity | null {
  return WORDS[word.trim().replace(/\*+$/, '').toLowerCase()] ?? null;
}

/** CVSS 3.x qualitative rating (spec table 14); a 0.0 ("None") score is filed as low. */
export function severityFromScore(score: number): Severity {
  if (score >= 9) return 'critical';
  if (score >= 7) return 'high';
  if (score >= 4) return 'medium';
  return 'low';
}

export function maxSeverity(a: Severity, b: Severity): Severity {
  return RANK[b] > RANK[a] ? b : a;
}
