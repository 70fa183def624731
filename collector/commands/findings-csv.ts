import type { Findings } from '../../shared/protocol.ts';

const COLUMNS = ['host', 'advisory', 'cves', 'package', 'binaries', 'installed', 'fixed', 'status', 'severity', 'kev', 'epss', 'epssPercentile', 'published', 'firstSeen', 'due', 'overdue', 'why'] as const;

/**
 * RFC 4180 CSV. Cells starting with = + - @ (or tab/CR) are prefixed with a quote so a
 * spreadsheet never runs an advisory's text as a formula (CSV injection).
 */
export function csvCell(value: string): string {
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

export function findingsCsv(doc: Findings): string {
  const rows = [COLUMNS.join(',')];
  for (const f of doc.findings) {
    const cells: Record<(typeof COLUMNS)[number], string> = {
      host: doc.host,
      advisory: f.advisory,
      cves: f.cves.join(' '),
      package: f.package,
      binaries: f.binaries.join(' '),
      installed: f.installed,
      fixed: f.fixed ?? '',
      status: f.status,
      severity: f.severity,
      kev: String(f.kev),
      epss: f.epss == null ? '' : String(f.epss.score),
      epssPercentile: f.epss == null ? '' : String(f.epss.percentile),
      published: f.published ?? '',
      firstSeen: f.firstSeen,
      due: f.due ?? '',
      overdue: String(f.overdue),
      why: f.why,
    };
    rows.push(COLUMNS.map((c) => csvCell(cells[c])).join(','));
  }
  return rows.join('\r\n') + '\r\n';
}
