/**
 * A host held at a minor release (EUS, CIQ's LTS: the agent's host.releasePin) is judged
 * by that release's stream, from the publisher's own CSAF: the real Rocky Linux from CIQ
 * documents of ../shared/data, whose streams are 9 (mainline) and 9.3, 9.4, 9.5.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Inventory, Package } from '../../../shared/protocol.ts';
import { packagesHash } from '../../../shared/inventory-hash.ts';
import { dataPath } from '../../../shared/testing/data.ts';
import { parseFeedPath } from '../../services/feeds/import.ts';
import type { Advisory } from '../feeds/types.ts';
import { Correlator } from './correlator.ts';
import { releaseStream } from './match.ts';
import { DEFAULT_POLICY } from './policy.ts';
import { inventoryOf } from '../../../shared/testing/correlate-fixtures.ts';

const ctx = { policy: DEFAULT_POLICY, now: new Date('2026-11-26T18:00:00Z'), kev: new Map() };

function rocky(packages: Package[], pin?: string): Inventory {
  const inv = inventoryOf('Rocky Linux:9', 'rpm', packages);
  inv.host.os = { ...inv.host.os, id: 'rocky', versionId: pin ?? '9.5' };
  if (pin !== undefined) inv.host.releasePin = pin;
  return inv;
}

function rpm(name: string, version: string, source = name): Package {
  return { name, version, arch: 'x86_64', source, sourceVersion: version };
}

describe('a host held at a minor release is judged by its stream', async () => {
  const { advisories } = await parseFeedPath(dataPath('csaf-ciq', 'rocky-linux-from-ciq-2024.csaf.jsonl.gz'));
  const find = (id: string): Advisory => {
    const a = advisories.find((x) => x.id === id || x.id.startsWith(`${id}/`));
    assert.ok(a !== undefined, id);
    return a;
  };

  it('releaseStream: only an rpm host whose pin is of its own major', () => {
    const table: [string, string | undefined, string | null][] = [
      ['Rocky Linux:9', '9.4', 'Rocky Linux:9.4'],
      ['Red Hat:9', '9.2', 'Red Hat:9.2'],
      ['Rocky Linux:9', undefined, null],
      ['Rocky Linux:9', '8.10', null],
      ['Debian:12', '12.1', null],
    ];
    for (const [ecosystem, pin, want] of table) {
      const inv = inventoryOf(ecosystem, ecosystem.startsWith('Debian') ? 'deb' : 'rpm', []);
      if (pin !== undefined) inv.host.releasePin = pin;
      assert.equal(releaseStream(inv), want, `${ecosystem} ${pin ?? '(no pin)'}`);
    }
  });

  it('CRLSA-2024:0465 fixes sqlite in 9.3 only: a host held at 9.3 has it, a mainline host does not', () => {
    const c = new Correlator();
    c.apply(advisories);
    const sqlite = [rpm('sqlite-libs', '3.34.1-6.el9', 'sqlite')];
    const ids = (inv: Inventory) => c.findings(inv, ctx).findings.map((f) => f.advisory);
    assert.ok(!ids(rocky(sqlite)).includes('CRLSA-2024:0465'));
    const held = c.findings(rocky(sqlite, '9.3'), ctx).findings.find((f) => f.advisory === 'CRLSA-2024:0465');
    assert.ok(held !== undefined);
    assert.match(held.why, /\(Rocky Linux:9\.3, /);
    assert.ok(!ids(rocky(sqlite, '9.4')).includes('CRLSA-2024:0465'), 'another stream gets nothing from 9.3');
  });

  it("the stream's fix decides over mainline's for the same CVEs; mainline still judges CVEs the stream does not name", () => {
    // CRLSA-2024:2463 fixes systemd in 9.4 (252-32.el9_4). Mainline's fix of the same CVE is a
    // later el9_5 build here (made from it: the 2024 documents have no pair with one CVE in both).
    const eus = find('CRLSA-2024:2463');
    const fixed94 = eus.affected.find((f) => f.ecosystem === 'Rocky Linux:9.4' && f.package === 'systemd')?.ranges[0]?.fixed;
    assert.equal(fixed94, '252-32.el9_4');
    const mainline: Advisory = {
      ...eus,
      id: 'CRLSA-2099:0001',
      affected: eus.affected.filter((f) => f.ecosystem === 'Rocky Linux:9.4').map((f) => ({ ...f, ecosystem: 'Rocky Linux:9', ranges: [{ introduced: '0', fixed: '252-46.el9_5', lastAffected: null }] })),
    };
    const other: Advisory = { ...mainline, id: 'CRLSA-2099:0002', aliases: ['CVE-2099-4242'] };
    const c = new Correlator();
    c.apply([eus, mainline, other]);
    const at = (version: string, pin?: string) =>
      c
        .findings(rocky([rpm('systemd', version)], pin), ctx)
        .findings.map((f) => `${f.advisory} ${f.fixed ?? ''}`)
        .sort();
    assert.deepEqual(at('252-32.el9_4'), ['CRLSA-2099:0001 252-46.el9_5', 'CRLSA-2099:0002 252-46.el9_5'], 'mainline: the 9.4 build is below the fix');
    assert.deepEqual(at('252-32.el9_4', '9.4'), ['CRLSA-2099:0002 252-46.el9_5'], 'held at 9.4: the stream fixed CVE-2023-7008, mainline still judges the CVE it does not name');
    assert.deepEqual(at('252-31.el9_4', '9.4'), ['CRLSA-2024:2463 252-32.el9_4', 'CRLSA-2099:0002 252-46.el9_5'].sort());
    const why = c.findings(rocky([rpm('systemd', '252-32.el9_4')], '9.4'), ctx).findings[0]?.why ?? '';
    assert.match(why, /Rocky Linux:9 mainline: the Rocky Linux:9\.4 stream has no entry for its CVEs/);
  });

  it('a held and a mainline host with the same packages do not share matches, and a change to the stream re-matches the held one', () => {
    const eus = find('CRLSA-2024:2463');
    const c = new Correlator();
    c.apply([]);
    const pkgs = [rpm('systemd', '252-31.el9_4')];
    const held = rocky(pkgs, '9.4');
    const main = rocky(pkgs);
    assert.notEqual(packagesHash(held), packagesHash(main));
    assert.deepEqual(c.findings(held, ctx).findings, []);
    assert.deepEqual(c.findings(main, ctx).findings, []);
    // The stream's advisory arrives: the held host's cached set is re-matched, the mainline one is not affected.
    c.apply([eus]);
    assert.deepEqual(
      c.findings(held, ctx).findings.map((f) => f.advisory),
      ['CRLSA-2024:2463'],
    );
    assert.deepEqual(c.findings(main, ctx).findings, []);
    assert.deepEqual(
      c.matchesOf(packagesHash(held))?.map((m) => m.advisory.id),
      ['CRLSA-2024:2463'],
    );
    assert.equal(c.stats.misses, 2, 'both refreshed in place, neither rebuilt');
  });
});
