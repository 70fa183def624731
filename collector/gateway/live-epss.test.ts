/**
 * EPSS end to end on a serving collector: a CLI `feed import` of the real EPSS excerpt into
 * its database reaches the host's findings through the API within one tick (as KEV and
 * advisory changes do), `sort=fix-first` orders them overdue, KEV, EPSS, severity, and
 * `feed remove` takes the scores away again.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import type { Finding, Findings } from '../../shared/protocol.ts';
import { dataPath } from '../../shared/testing/data.ts';
import { feedCommand } from '../commands/feed.ts';
import { fixFirst } from '../domain/correlate/fix-order.ts';
import { EPSS_EXCERPT } from '../../shared/testing/feed-fixtures.ts';
import { hostInventory } from '../../shared/testing/rollout-bench.ts';
import { sink, startCollector, until } from '../../shared/testing/collector-harness.ts';

const TICK_MS = 200;
const WITHIN_MS = TICK_MS + 1000;
/** ALSA-2026:2786 (glibc, medium): CVE-2026-0915 scores 0.00627 in the excerpt; the RHEL 9.5 image has five glibc rpms below its fix. */
const GLIBC = 'ALSA-2026:2786';

describe('EPSS on a serving collector, through the API', () => {
  it('a CLI import of the real scores reaches the host’s findings within one tick, sort=fix-first orders by them, feed remove takes them away', async (t) => {
    const tc = await startCollector(t, { rolloutTickMs: TICK_MS });
    const viewer = (await tc.collector.store.apiTokens.create({ name: 'viewer', role: 'viewer', createdBy: 'cli:test' })).token;
    const { client, agentId } = await tc.agent('web-1');
    await client.report(hostInventory({ hostname: 'web-1' }));
    const get = async (query = ''): Promise<{ status: number; body: unknown }> => {
      const res = await fetch(`${tc.collector.url}/api/v1/hosts/${agentId}${query}`, { headers: { authorization: `Bearer ${viewer}` } });
      return { status: res.status, body: await res.json() };
    };
    const doc = async (query = ''): Promise<Findings> => {
      const r = await get(query);
      assert.equal(r.status, 200);
      return (r.body as { findings: Findings }).findings;
    };
    const open = (fs: Finding[]) => fs.filter((f) => f.status !== 'resolved');
    const glibc = (fs: Finding[]) => open(fs).filter((f) => f.advisory === GLIBC);

    // The real AlmaLinux 9 advisories and the real KEV catalogue, imported by the CLI while it serves.
    const io = sink();
    assert.equal(await feedCommand(['import', '--db', tc.dbPath, '--name', 'alma9', dataPath('osv', 'almalinux9.osv.jsonl.gz')], io), 0, io.text());
    assert.equal(await feedCommand(['import', '--db', tc.dbPath, '--name', 'kev', dataPath('kev', 'known_exploited_vulnerabilities-2025-11-17.csv.gz')], io), 0, io.text());
    const before = await until('the advisories’ findings', 30_000, async () => {
      const fs = await doc();
      return glibc(fs.findings).length === 5 ? fs : undefined;
    });
    assert.ok(open(before.value.findings).every((f) => f.epss === null), 'no EPSS feed yet: every score is null');

    const gz = join(tc.dir, 'epss_scores-current.csv.gz');
    await writeFile(gz, gzipSync(readFileSync(EPSS_EXCERPT)));
    // Let the serving collector finish taking in the advisory and KEV imports first (a tick, then its queue).
    await new Promise((r) => setTimeout(r, 3 * TICK_MS));
    await tc.collector.findings.drained();
    // Re-judged whole or by its content's group (HostFindings: an EPSS change judges every content again).
    const judgedCount = (): number => tc.collector.findings.stats.correlated + tc.collector.findings.stats.fannedOut;
    const correlatedBefore = judgedCount();
    assert.equal(await feedCommand(['import', '--db', tc.dbPath, '--name', 'first-epss', gz], io), 0, io.text());
    assert.match(io.text(), /first-epss: epss-csv: EPSS 146 scores stored, 0 replaced \(model v2026\.06\.15, scores of 2026-09-29\)/);
    const scored = await until('the scores in the API', WITHIN_MS, async () => {
      const fs = await doc();
      return glibc(fs.findings).every((f) => f.epss?.score === 0.00627) ? fs : undefined;
    });
    t.diagnostic(`scores shown ${scored.ms.toFixed(0)} ms after the CLI import (tick ${TICK_MS} ms)`);
    for (const f of glibc(scored.value.findings)) assert.deepEqual(f.epss, { cve: 'CVE-2026-0915', score: 0.00627, percentile: 0.47999 });
    // The serving collector's own findings (stored history and counts), not only the API's read-time view.
    const judged = await until('the host re-judged by the serving collector', WITHIN_MS, () => Promise.resolve(judgedCount() > correlatedBefore ? true : undefined));
    t.diagnostic(`host re-judged ${judged.ms.toFixed(0)} ms after the scores were shown`);
    await tc.collector.findings.drained();
    // The serving collector's own judgement (what its counts come from) carries the score too.
    const own = (await tc.collector.findings.findings(agentId))?.findings.filter((f: Finding) => f.advisory === GLIBC && f.status !== 'resolved') ?? [];
    assert.ok(own.length > 0);
    for (const f of own) assert.deepEqual(f.epss, { cve: 'CVE-2026-0915', score: 0.00627, percentile: 0.47999 }, 'the collector’s own finding carries the score');

    // Default order is the correlator's (package, advisory); fix-first is overdue, KEV, EPSS, severity.
    const byPackage = (await doc()).findings;
    assert.deepEqual(
      byPackage.map((f) => `${f.package} ${f.advisory}`),
      [...byPackage].sort((a, b) => (a.package < b.package ? -1 : a.package > b.package ? 1 : a.advisory < b.advisory ? -1 : a.advisory > b.advisory ? 1 : 0)).map((f) => `${f.package} ${f.advisory}`),
    );
    const fixFirstList = (await doc('?sort=fix-first')).findings;
    assert.deepEqual(
      fixFirstList.map((f) => `${f.package} ${f.advisory}`),
      [...fixFirstList].sort(fixFirst).map((f) => `${f.package} ${f.advisory}`),
    );
    assert.equal(fixFirstList.length, byPackage.length);
    // Among findings as overdue and as KEV as glibc's, the scored ones lead whatever their severity.
    const g = fixFirstList.find((f) => f.advisory === GLIBC);
    assert.ok(g);
    const peers = fixFirstList.filter((f) => f.status !== 'resolved' && f.overdue === g.overdue && f.kev === g.kev);
    const lastGlibc = peers.map((f) => f.advisory).lastIndexOf(GLIBC);
    const firstUnscored = peers.findIndex((f) => f.epss === null || f.epss === undefined);
    assert.ok(lastGlibc >= 4 && firstUnscored > lastGlibc, `glibc at ${lastGlibc}, first unscored peer at ${firstUnscored}`);
    assert.ok(peers.slice(firstUnscored).some((f) => f.severity === 'critical' || f.severity === 'high'), 'a more severe unscored finding comes after them');

    const bad = await get('?sort=severity');
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.body), /PW_ERR_BAD_REQUEST.*must be one of package, fix-first/);

    assert.equal(await feedCommand(['remove', '--db', tc.dbPath, 'first-epss'], io), 0, io.text());
    const gone = await until('the scores gone from the API', WITHIN_MS, async () => {
      const fs = await doc();
      return open(fs.findings).every((f) => f.epss === null) ? fs : undefined;
    });
    t.diagnostic(`scores gone ${gone.ms.toFixed(0)} ms after feed remove`);
  });
});
