import assert from 'node:assert/strict';
import { test } from 'node:test';
import { onEachEngine } from '../../shared/testing/store-engines.ts';
import { realAlma9Osv } from '../../shared/testing/store-fixtures.ts';
import type { Advisory } from '../domain/feeds/types.ts';
import { CHANGES_PER_READ } from './advisory-changes.ts';
import type { SqlDatabase } from './sql/executor.ts';
import { sql } from './sql/query.ts';

const NOW = new Date('2026-11-26T18:00:00.000Z');
const AT = NOW.toISOString();
const ALMA9 = { source: 'almalinux9', kind: 'osv', location: null };

const agent = sql('INSERT INTO agents (id, public_key, hostname, enrolled_at, revoked_at, connected) VALUES (?, ?, ?, ?, ?, 0)');
const content = sql('INSERT INTO inventory_contents (hash, ecosystem, package_count, packages, created_at) VALUES (?, ?, 1, ?, ?)');
const report = sql('INSERT INTO reports (id, agent_id, received_at, inventory_hash, content_hash, envelope) VALUES (?, ?, ?, ?, ?, ?)');
const host = sql(`INSERT INTO hosts (agent_id, hostname, ecosystem, package_count, kernel_release, kernel_managed, reboot_required,
  last_report_id, last_report_at, open_findings) VALUES (?, ?, ?, 1, '6.1.0', 1, 0, ?, ?, 0)`);
const deleteAdvisory = sql('DELETE FROM advisories WHERE id = ?');
const manyKevRows = sql(`WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
  INSERT INTO advisory_changes (kind) SELECT 'kev' FROM n`);

/** [agent, ecosystem, content, revoked] */
const HOSTS: [string, string, string, string | null][] = [
  ['a1', 'AlmaLinux:9', 'c-alma', null],
  ['a2', 'AlmaLinux:9', 'c-alma', null],
  ['a3', 'AlmaLinux:9', 'c-alma-2', null],
  ['a4', 'Debian:12', 'c-deb', null],
  ['a5', 'Alpine:v3.21', 'c-alpine', AT],
];

async function seedHosts(db: SqlDatabase): Promise<void> {
  for (const [, ecosystem, hash] of new Map(HOSTS.map((h) => [h[2], h])).values()) await db.run(content, [hash, ecosystem, '[]', AT]);
  for (const [id, ecosystem, hash, revoked] of HOSTS) {
    await db.run(agent, [id, `key-${id}`, `host-${id}`, AT, revoked]);
    await db.run(report, [`r-${id}`, id, AT, `i-${id}`, hash, '{}']);
    await db.run(host, [id, `host-${id}`, ecosystem, `r-${id}`, AT]);
  }
}

onEachEngine('AdvisoryChanges', (engine) => {
  test('an import, a KEV entry and a deletion are logged; each advisory comes once, as stored now; clear forgets them', async (t) => {
    const { store, sql: db } = await engine.open(t);
    const changes = store.advisoryChanges;
    assert.equal(await changes.lastSeq(), 0);
    assert.deepEqual(await changes.since(0), { seq: 0, advisories: [], kev: false, feeds: false, more: false });
    const bind = realAlma9Osv('ALSA-2025:1681');
    const other = realAlma9Osv('ALSA-2026:42736');
    await store.advisories.importAdvisories(ALMA9, [bind, other], NOW);
    const updated: Advisory = { ...bind, modified: '2026-11-01T00:00:00.000Z' };
    await store.advisories.importAdvisories(ALMA9, [updated], NOW);
    const first = await changes.since(0);
    assert.equal(first.seq, await changes.lastSeq());
    assert.deepEqual([first.kev, first.feeds, first.more], [false, true, false]);
    // bind was written twice: it comes once, as the second write left it.
    assert.deepEqual(new Set(first.advisories.map((a) => JSON.stringify(a))), new Set([{ stored: updated }, { stored: other }].map((a) => JSON.stringify(a))));

    await store.advisories.importKev({ source: 'kev', kind: 'kev-json', location: null }, [{ cve: 'CVE-2024-1086', dateAdded: '2024-05-30', dueDate: '2024-06-20', vendorProject: 'Linux', product: 'Kernel', knownRansomwareCampaignUse: 'Known' }], NOW);
    await db.run(deleteAdvisory, [other.id]);
    const second = await changes.since(first.seq);
    assert.equal(second.kev, true);
    assert.deepEqual(second.advisories, [{ removed: { source: other.source, id: other.id } }]);

    await changes.clear(second.seq);
    assert.deepEqual((await changes.since(0)).advisories, []);
    assert.equal((await changes.since(0)).seq, 0, 'nothing left after the rows cleared');
  });

  test(`a read takes ${CHANGES_PER_READ} rows at most and says more wait`, async (t) => {
    const { store, sql: db } = await engine.open(t);
    await db.run(manyKevRows, [CHANGES_PER_READ + 5]);
    const first = await store.advisoryChanges.since(0);
    assert.deepEqual([first.kev, first.more], [true, true]);
    const second = await store.advisoryChanges.since(first.seq);
    assert.deepEqual([second.kev, second.more, second.seq], [true, false, await store.advisoryChanges.lastSeq()]);
  });

  test('hosts by ecosystem, and grouped by their latest inventory content, by ecosystem or by id', async (t) => {
    const { store, sql: db } = await engine.open(t);
    await seedHosts(db);
    const changes = store.advisoryChanges;
    assert.deepEqual(await changes.hostsIn(['AlmaLinux:9', 'Alpine:v3.21']), ['a1', 'a2', 'a3', 'a5']);
    assert.deepEqual(await changes.hostsIn([]), []);
    assert.deepEqual(
      await changes.hostsByContentIn(['AlmaLinux:9', 'Debian:12']),
      new Map([
        ['c-alma', ['a1', 'a2']],
        ['c-alma-2', ['a3']],
        ['c-deb', ['a4']],
      ]),
    );
    assert.deepEqual(
      await changes.hostsByContentOf(['a2', 'a4', 'nobody']),
      new Map([
        ['c-alma', ['a2']],
        ['c-deb', ['a4']],
      ]),
    );
    // Enrolled ecosystems leave out the revoked agent's host (what the feed catalogue picks by).
    assert.deepEqual(await store.advisories.enrolledEcosystems(), ['AlmaLinux:9', 'Debian:12']);
  });
});
