/**
 * `scan` with EPSS: the real excerpt given with --feed or stored in --db puts each
 * finding's score beside its severity in every output, and `--sort fix-first` orders the
 * findings overdue, KEV, EPSS, severity.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FindingsSchema, type Findings } from '../../shared/protocol.ts';
import { runCaptured } from '../../shared/testing/capture.ts';
import { dataPath } from '../../shared/testing/data.ts';
import { fixFirst } from '../domain/correlate/fix-order.ts';
import { inventoryOf, rhel95Packages } from '../../shared/testing/correlate-fixtures.ts';
import { parseCsv } from '../domain/feeds/csv.ts';
import { EPSS_EXCERPT } from '../../shared/testing/feed-fixtures.ts';
import { feedCommand } from './feed.ts';
import { scanCommand } from './scan.ts';

const ALMA9 = dataPath('osv', 'almalinux9.osv.jsonl.gz');
const NOW = '2026-11-26T18:00:00.000Z';
const GLIBC = { cve: 'CVE-2026-0915', score: 0.00627, percentile: 0.47999 };

let dir = '';
let inventory = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pw-scan-epss-'));
  inventory = join(dir, 'rhel95-as-alma9.json');
  await writeFile(inventory, JSON.stringify(inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages())));
});
after(() => rm(dir, { recursive: true, force: true }));

async function scanJson(argv: string[]): Promise<Findings> {
  const r = await runCaptured(scanCommand, [...argv, '--json']);
  assert.ok(r.code === 0 || r.code === 1, r.stderr);
  return FindingsSchema.parse(JSON.parse(r.stdout));
}

describe('scan with EPSS scores', () => {
  it('--feed the excerpt: the glibc findings carry CVE-2026-0915’s score; without it every score is null', async () => {
    const withEpss = await scanJson(['--inventory', inventory, '--feed', ALMA9, '--feed', EPSS_EXCERPT, '--now', NOW]);
    const glibc = withEpss.findings.filter((f) => f.advisory === 'ALSA-2026:2786');
    assert.equal(glibc.length, 5);
    for (const f of glibc) assert.deepEqual(f.epss, GLIBC);
    const without = await scanJson(['--inventory', inventory, '--feed', ALMA9, '--now', NOW]);
    assert.ok(without.findings.every((f) => f.epss === null));
  });

  it('--db with the excerpt imported: the same scores', async () => {
    const db = join(dir, 'c.db');
    const sink = { write: () => true } as unknown as NodeJS.WritableStream;
    assert.equal(await feedCommand(['import', '--db', db, ALMA9], { stdout: sink, stderr: sink }), 0);
    assert.equal(await feedCommand(['import', '--db', db, '--name', 'first-epss', EPSS_EXCERPT], { stdout: sink, stderr: sink }), 0);
    const doc = await scanJson(['--inventory', inventory, '--db', db, '--now', NOW]);
    assert.deepEqual(doc.findings.find((f) => f.advisory === 'ALSA-2026:2786')?.epss, GLIBC);
  });

  it('--sort fix-first: fixFirst’s order; the text and CSV show the score', async () => {
    const base = ['--inventory', inventory, '--feed', ALMA9, '--feed', EPSS_EXCERPT, '--now', NOW];
    const doc = await scanJson([...base, '--sort', 'fix-first']);
    assert.deepEqual(
      doc.findings.map((f) => `${f.advisory} ${f.package}`),
      [...doc.findings].sort(fixFirst).map((f) => `${f.advisory} ${f.package}`),
    );
    const text = await runCaptured(scanCommand, [...base, '--sort', 'fix-first']);
    assert.match(text.stdout, /^ALSA-2026:2786 +medium +open +due \S+ glibc 2\.34-\S+ -> \S+ OVERDUE EPSS 0\.63%$/m);
    const csv = parseCsv((await runCaptured(scanCommand, [...base, '--csv'])).stdout);
    const header = csv[0] ?? [];
    const row = csv.find((r) => r[1] === 'ALSA-2026:2786' && r[3] === 'glibc');
    assert.ok(row);
    assert.deepEqual([row[header.indexOf('epss')], row[header.indexOf('epssPercentile')]], ['0.00627', '0.47999']);
    await assert.rejects(runCaptured(scanCommand, [...base, '--sort', 'severity']), { code: 'PW_ERR_USAGE', message: /--sort must be one of package, fix-first/ });
  });
});
