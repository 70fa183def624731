/**
 * Canonical's real USN OVAL through a serving collector: a CLI `feed import` of the noble
 * file on the collector's database reaches two Ubuntu 24.04 hosts running Canonical
 * Livepatch without a restart, and the API shows the kernel USN whose CVE an LSN fixes as
 * mitigated-livepatch on the host whose module is at the LSN's level, open on the other,
 * and a package USN (binary names) as one finding per source package.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Findings } from '../../shared/protocol.ts';
import { dataPath } from '../../shared/testing/data.ts';
import { runCaptured } from '../../shared/testing/capture.ts';
import { feedCommand } from '../commands/feed.ts';
import { ubuntuNobleInventory } from '../../shared/testing/correlate-fixtures.ts';
import { startCollector, until } from '../../shared/testing/collector-harness.ts';

const TICK_MS = 200;
const NOBLE = dataPath('oval', 'com.ubuntu.noble.usn.oval.xml.gz');

describe('Ubuntu OVAL end to end', () => {
  it('a CLI import of the real noble OVAL shows USN-6863-1 mitigated-livepatch (LSN-0105-1, module at 105) and open at 104, through the API', { timeout: 60_000 }, async (t) => {
    const tc = await startCollector(t, { rolloutTickMs: TICK_MS });
    const viewer = (await tc.collector.store.apiTokens.create({ name: 'viewer', role: 'viewer', createdBy: 'cli:test' })).token;
    const hosts: Record<string, string> = {};
    for (const [hostname, level] of [['noble-lp105', 105], ['noble-lp104', 104]] as const) {
      const inv = ubuntuNobleInventory({ livepatchLevel: level });
      inv.host.hostname = hostname;
      const { client, agentId } = await tc.agent(hostname);
      await client.report(inv);
      hosts[hostname] = agentId;
    }
    await until('both reports correlated', 5000, () => Promise.resolve(tc.collector.findings.stats.correlated >= 2 ? true : undefined));
    await tc.collector.findings.drained();

    const assessment = async (agentId: string): Promise<{ state: string; reason: string }> => {
      const res = await fetch(`${tc.collector.url}/api/v1/hosts/${agentId}`, { headers: { authorization: `Bearer ${viewer}` } });
      return ((await res.json()) as { host: { assessment: { state: string; reason: string } } }).host.assessment;
    };
    assert.equal((await assessment(hosts['noble-lp105'] as string)).state, 'not-assessed', 'no feed covers Ubuntu 24.04 yet');

    const r = await runCaptured(feedCommand, ['import', '--db', tc.dbPath, '--name', 'ubuntu-noble-oval', NOBLE]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ubuntu-noble-oval/);

    const doc = async (agentId: string): Promise<{ findings: Findings }> => {
      const res = await fetch(`${tc.collector.url}/api/v1/hosts/${agentId}`, { headers: { authorization: `Bearer ${viewer}` } });
      assert.equal(res.status, 200);
      return (await res.json()) as { findings: Findings };
    };
    const usn = async (agentId: string, id: string) => (await doc(agentId)).findings.findings.find((f) => f.advisory === id && f.status !== 'resolved');

    const mitigated = (await until('USN-6863-1 in the API', 5000, () => usn(hosts['noble-lp105'] as string, 'USN-6863-1'))).value;
    assert.equal(mitigated.status, 'mitigated-livepatch');
    assert.equal(mitigated.package, 'uname_6.8.0-generic');
    assert.equal(mitigated.installed, '6.8.0-31');
    assert.equal(mitigated.fixed, '6.8.0-36');
    assert.match(mitigated.why, /LSN-0105-1 \(Canonical Livepatch module lkp_Ubuntu_6_8_0_31_31_linux_105, level 105 >= 105\) fixes CVE-/);

    const open = (await until('USN-6863-1 on the 104 host', 5000, () => usn(hosts['noble-lp104'] as string, 'USN-6863-1'))).value;
    assert.equal(open.status, 'open', open.why);
    // A USN with CVEs no LSN fixes is open on both.
    assert.equal((await usn(hosts['noble-lp105'] as string, 'USN-6816-1'))?.status, 'open');
    // The feed covers the host from its own data (Ubuntu:24.04:LTS in its affected entries).
    const after = await assessment(hosts['noble-lp105'] as string);
    assert.equal(after.state, 'assessed', after.reason);
    assert.match(after.reason, /ubuntu-noble-oval/);
    // A package USN, by binary name: one finding for the source package naming both binaries.
    const openssl = await usn(hosts['noble-lp105'] as string, 'USN-6986-1');
    assert.equal(openssl?.status, 'open');
    assert.equal(openssl.package, 'openssl');
    assert.deepEqual(openssl.binaries, ['libssl3t64', 'openssl']);
    assert.equal(openssl.fixed, '3.0.13-0ubuntu3.4');
  });
});
