/**
 * A serving collector follows advisory changes another process makes on its database (a
 * CLI `feed import` or `feed remove` on the same SQLite file) without a restart: the API
 * shows the new findings within one tick, and only the changed (ecosystem, package)
 * pairs of a host's cached matches are matched again.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import type { Findings } from '../../shared/protocol.ts';
import { dataPath } from '../../shared/testing/data.ts';
import { feedCommand } from '../commands/feed.ts';
import { indexKey } from '../domain/correlate/advisory-index.ts';
import { planInventory } from '../domain/correlate/match.ts';
import { hostInventory } from '../../shared/testing/rollout-bench.ts';
import { openDatabase } from '../store/db.ts';
import { randomUUID } from 'node:crypto';
import { inventoryHash } from '../../shared/inventory-hash.ts';
import { generateKeyPair } from '../../shared/signing.ts';
import { DEFAULT_POLICY } from '../domain/correlate/policy.ts';
import { createLogger } from '../logger.ts';
import { storeOn } from '../store/store.ts';
import { HostFindings } from '../services/findings/host-findings.ts';
import { sink, startCollector, until } from '../../shared/testing/collector-harness.ts';

const TICK_MS = 200;
/** One tick, plus the time to correlate one host and answer: far under a second. */
const WITHIN_MS = TICK_MS + 1000;
/** ALSA-2026:54510 fixes bind 9.16.23, which the RHEL 9.5 image has (bind-libs, bind-license, bind-utils). */
const BIND_ADVISORY = 'ALSA-2026:54510';

describe('a serving collector follows advisory changes made by another process', () => {
  it('shows a CLI feed import’s findings within one tick, re-matching only the changed pairs, and drops them on feed remove', async (t) => {
    const tc = await startCollector(t, { rolloutTickMs: TICK_MS });
    const viewer = (await tc.collector.store.apiTokens.create({ name: 'viewer', role: 'viewer', createdBy: 'cli:test' })).token;
    const inventory = hostInventory({ hostname: 'web-1' });
    const { client, agentId } = await tc.agent('web-1');
    await client.report(inventory);
    await until('the first report correlated', 5000, () => Promise.resolve(tc.collector.findings.stats.correlated > 0 ? true : undefined));
    await tc.collector.findings.drained();
    const host = async (): Promise<{ host: { findings: { open: number } }; findings: Findings }> => {
      const res = await fetch(`${tc.collector.url}/api/v1/hosts/${agentId}`, { headers: { authorization: `Bearer ${viewer}` } });
      assert.equal(res.status, 200);
      return (await res.json()) as { host: { findings: { open: number } }; findings: Findings };
    };
    // A finding that goes away stays in the document as `resolved` (the host's history).
    const bindFindings = (doc: { findings: Findings }) => doc.findings.findings.filter((f) => f.advisory === BIND_ADVISORY && f.status !== 'resolved');
    assert.equal(bindFindings(await host()).length, 0, 'no advisories loaded yet');

    // One real advisory, as its own feed file.
    const line = gunzipSync(readFileSync(dataPath('osv', 'almalinux9.osv.jsonl.gz'))).toString('utf8').split('\n').find((l) => l.includes(`"${BIND_ADVISORY}"`));
    assert.ok(line !== undefined);
    const advisory = JSON.parse(line) as { affected: { package: { ecosystem: string; name: string } }[] };
    const feedFile = join(tc.dir, 'alma9-bind.osv.jsonl');
    await writeFile(feedFile, line + '\n');
    const keys = new Set(advisory.affected.map((a) => indexKey(a.package.ecosystem, a.package.name)));
    const units = planInventory(inventory).units.filter((u) => !u.kernel);
    const changedUnits = units.filter((u) => keys.has(u.key)).length;
    assert.ok(changedUnits > 0 && changedUnits < units.length / 10, `${changedUnits} of ${units.length} units`);

    const stats = tc.collector.findings.correlator.stats;
    const rematchedBefore = stats.unitsRematched;
    const missesBefore = stats.misses;
    const io = sink();
    assert.equal(await feedCommand(['import', '--db', tc.dbPath, '--name', 'alma9-bind', feedFile], io), 0, io.text());
    const added = await until('the imported advisory’s findings in the API', WITHIN_MS, async () => {
      const doc = await host();
      return bindFindings(doc).length > 0 && doc.host.findings.open > 0 ? doc : undefined;
    });
    t.diagnostic(`findings shown ${added.ms.toFixed(0)} ms after the CLI import (tick ${TICK_MS} ms)`);
    assert.ok(bindFindings(added.value).every((f) => f.status === 'open'));
    assert.equal(stats.unitsRematched - rematchedBefore, changedUnits, 'only the bind units were matched again');
    assert.equal(stats.misses, missesBefore, 'the host’s cached matches were refreshed, not rebuilt');

    const rematchedAfterImport = stats.unitsRematched;
    const io2 = sink();
    assert.equal(await feedCommand(['remove', '--db', tc.dbPath, 'alma9-bind'], io2), 0, io2.text());
    assert.match(io2.text(), /alma9-bind: removed, with 1 advisories and 0 KEV entries/);
    const removed = await until('the removed feed’s findings gone from the API', WITHIN_MS, async () => {
      const doc = await host();
      return bindFindings(doc).length === 0 && doc.host.findings.open === 0 ? doc : undefined;
    });
    t.diagnostic(`findings gone ${removed.ms.toFixed(0)} ms after feed remove`);
    assert.equal(stats.unitsRematched - rematchedAfterImport, changedUnits, 'only the bind units were matched again');
    assert.equal((await tc.collector.store.hosts.get(agentId))?.openFindings ?? 0, 0);
  });

  it('feed remove refuses an unknown name with PW_ERR_FEED_UNKNOWN and audits a removal with the CLI actor', async (t) => {
    const tc = await startCollector(t);
    await tc.collector.close();
    const io = sink();
    await assert.rejects(feedCommand(['remove', '--db', tc.dbPath, 'no-such-feed'], io), { code: 'PW_ERR_FEED_UNKNOWN' });
    const io2 = sink();
    assert.equal(await feedCommand(['import', '--db', tc.dbPath, '--name', 'kev', dataPath('kev', 'known_exploited_vulnerabilities-2025-11-17.csv.gz')], io2), 0, io2.text());
    assert.equal(await feedCommand(['remove', '--db', tc.dbPath, 'kev'], io2), 0, io2.text());
    const db = openDatabase(tc.dbPath, { readonly: true });
    try {
      const rows = db.prepare<[], { actor: string; action: string; target: string; detail: string }>("SELECT actor, action, target, detail FROM audit WHERE action = 'feed.remove'").all();
      assert.equal(rows.length, 1);
      const [row] = rows;
      assert.ok(row !== undefined);
      assert.match(row.actor, /^cli:/);
      assert.equal(row.target, 'feed:kev');
      assert.ok((JSON.parse(row.detail) as { kev: number }).kev > 1000);
      assert.equal(db.prepare('SELECT count(*) FROM kev').pluck().get(), 0);
      assert.equal(db.prepare('SELECT count(*) FROM feeds').pluck().get(), 0);
    } finally {
      db.close();
    }
  });

  it('takes each change in once, leaves the log to the serving collector when another process loads, re-queues only the changed ecosystem’s hosts, and every host on a KEV change', async (t) => {
    const tc = await startCollector(t);
    await tc.collector.close();
    const open = () => {
      const db = openDatabase(tc.dbPath);
      const fleet = storeOn(db);
      return { db, fleet, hf: new HostFindings({ store: fleet.async, policy: DEFAULT_POLICY, logger: createLogger({ level: 'silent' }) }) };
    };
    const serving = open();
    const cli = open();
    t.after(async () => {
      await serving.hf.stop();
      serving.db.close();
      cli.db.close();
    });
    const inv = hostInventory({ hostname: 'web-1' });
    const id = await serving.fleet.async.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: 'web-1', machineId: null, tokenId: null }, new Date());
    await serving.fleet.async.reports.ingest(id, randomUUID(), inventoryHash(inv), inv, new Date());
    const deb = hostInventory({ hostname: 'deb-1', os: 'debian' });
    const debId = await serving.fleet.async.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: 'deb-1', machineId: null, tokenId: null }, new Date());
    await serving.fleet.async.reports.ingest(debId, randomUUID(), inventoryHash(deb), deb, new Date());
    await serving.hf.load();
    assert.deepEqual(await serving.hf.followStore(), { advisories: 0, keys: 0, hosts: 0 });
    const logRows = () => serving.db.prepare('SELECT count(*) FROM advisory_changes').pluck().get() as number;

    // Another process imports and then loads (as `rollout` does): the rows stay for the serving collector.
    const io = sink();
    assert.equal(await feedCommand(['import', '--db', tc.dbPath, '--name', 'alma9', dataPath('osv', 'samples', 'ALSA-2022_4587.json')], io), 0, io.text());
    await cli.hf.load();
    assert.ok(logRows() > 0);
    assert.deepEqual(await serving.hf.followStore(), { advisories: 1, keys: 2, hosts: 1 }, 'an AlmaLinux 9 advisory: the Debian host is not judged again');
    assert.equal(logRows(), 0, 'the rows taken in are deleted');
    assert.deepEqual(await serving.hf.followStore(), { advisories: 0, keys: 0, hosts: 0 }, 'taken in once');
    await serving.hf.drained();

    // A KEV import changes no advisory, but due dates: every host is judged again.
    assert.equal(await feedCommand(['import', '--db', tc.dbPath, '--name', 'kev', dataPath('kev', 'known_exploited_vulnerabilities-2025-11-17.csv.gz')], io), 0, io.text());
    assert.deepEqual(await serving.hf.followStore(), { advisories: 0, keys: 0, hosts: 2 });
  });
});
