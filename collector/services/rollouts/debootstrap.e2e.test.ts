/**
 * From a finding to a patched, verified server, for real (issue 5, "Must show"): a Debian 12
 * root made by debootstrap from Debian's point release; a collector on a temp SQLite file
 * with a Debian tracker feed built from the real bookworm-security changelogs; the agent
 * daemon enrolled with `root` = that directory, reporting it; a rollout that patches
 * "everything that fixes" one of the root's findings; the signed instruction sent over the
 * WebSocket, verified by the agent, run as real apt-get inside `chroot` with the
 * bookworm-security source; the result, the fresh inventory with the security version, and
 * the finding gone from the collector's view.
 *
 * Needs root, debootstrap and deb.debian.org (as agent/executor/handlers/apt.e2e.test.ts);
 * skipped loudly without them.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Agent } from '../../../agent/daemon/agent.ts';
import { loadConfig, loadPrivateKey } from '../../../agent/daemon/config.ts';
import { enroll } from '../../../agent/daemon/enroll.ts';
import { createLogger as agentLogger } from '../../../agent/daemon/log.ts';
import { logSink } from '../../../shared/testing/daemon-fixtures.ts';
import { runCommand } from '../../../agent/executor/handlers/run.ts';
import { debootstrapUnavailable, ensureDebianRoot, extractRoot, removeRoot } from '../../../shared/testing/debootstrap-root.ts';
import { compareVersions } from '../../../shared/versions/index.ts';
import { dataPath } from '../../../shared/testing/data.ts';
import { importFeedPath } from '../feeds/store-import.ts';
import { createLogger } from '../../logger.ts';
import { createCollector } from '../../server.ts';
import { asyncAdvisories } from '../../../shared/testing/store-fixtures.ts';

const STEP_MS = 10 * 60_000;

interface ChangelogLine {
  source: string;
  entries: { version: string; cves: string[] }[];
}

type Tracker = Record<string, Record<string, { releases: Record<string, { status: string; fixed_version: string; urgency: string; repositories: Record<string, string> }> }>>;

/** The Debian tracker's JSON view of the real bookworm-security fixes in the changelog data (as collector/domain/correlate/ecosystems.test.ts builds it). */
function trackerFromChangelogs(): Tracker {
  const lines = gunzipSync(readFileSync(dataPath('debian', 'bookworm-security-upgrade-changelogs.jsonl.gz')))
    .toString('utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as ChangelogLine);
  const tracker: Tracker = {};
  for (const l of lines) {
    const byCve = (tracker[l.source] ??= {});
    for (const e of [...l.entries].reverse()) {
      for (const cve of e.cves) byCve[cve] ??= { releases: { bookworm: { status: 'resolved', fixed_version: e.version, urgency: 'medium', repositories: { bookworm: e.version } } } };
    }
  }
  return tracker;
}

/** `Inst NAME [installed] (candidate Debian-Security:12/...security [arch])` lines of `apt-get -s upgrade`. */
function securityUpgrades(simulation: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of simulation.split('\n')) {
    const m = /^Inst (\S+) \[[^\]]+\] \((\S+) Debian-Security:12\/\S*security[ \]]/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) out.set(m[1], m[2]);
  }
  return out;
}

async function until<T>(what: string, get: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await get();
    if (v !== undefined && v !== false) return v;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

describe('rollout end to end: a debootstrapped Debian 12 root patched by a signed instruction', () => {
  it('the finding is patched by real apt-get in the root, the fresh inventory shows the security version and the finding is gone', { timeout: 20 * 60_000 }, async (t) => {
    const why = await debootstrapUnavailable();
    if (why !== null) {
      t.skip(`SKIPPED: the rollout end-to-end test did NOT run: ${why}`);
      return;
    }
    const cached = await ensureDebianRoot();
    const dir = await mkdtemp(join(tmpdir(), 'pw-rollout-e2e-'));
    t.after(() => removeRoot(dir));
    const root = join(dir, 'root');
    await extractRoot(cached.tarball, root);

    // What bookworm-security upgrades in this root today, asked of the root's own apt.
    const ctx = { root, timeoutMs: STEP_MS, signal: new AbortController().signal };
    const update = await runCommand(['apt-get', 'update'], ctx);
    assert.equal(update.record.exitCode, 0, update.record.outputTail);
    const sim = await runCommand(['apt-get', '-s', 'upgrade'], ctx);
    assert.equal(sim.record.exitCode, 0, sim.record.outputTail);
    const upgrades = securityUpgrades(sim.record.outputTail);
    assert.ok(upgrades.size > 0, `bookworm-security upgrades nothing in the root:\n${sim.record.outputTail}`);

    const collector = await createCollector({ dbPath: join(dir, 'collector.db'), listen: '127.0.0.1:0', logger: createLogger({ level: 'silent' }), rolloutTickMs: 200 });
    t.after(() => collector.close());
    const feedFile = join(dir, 'debian-tracker.json');
    writeFileSync(feedFile, JSON.stringify(trackerFromChangelogs()));
    await importFeedPath(asyncAdvisories(collector.sqlite!.db), feedFile, { name: 'debian-tracker' });
    await collector.findings.load();

    const { token } = await collector.store.tokens.create({ uses: 1, ttlMs: 3600_000, createdBy: 'e2e' });
    const configPath = join(dir, 'agent', 'agent.json');
    await enroll({ collectorUrl: collector.agentUrl, token, configPath, root, intervalSeconds: 3600 });
    const config = await loadConfig(configPath);
    const { key } = await loadPrivateKey(config.keyFile);
    const sink = logSink();
    const agent = await Agent.create({ config, key, log: agentLogger({ destination: sink }), watch: [] });
    const running = agent.run();
    t.after(async () => {
      await agent.stop();
      await running;
    });
    const agentId = config.agentId;
    const before = await until('the root inventory at the collector', async () => await collector.store.reports.latestInventory(agentId), 60_000);
    assert.equal(before.host.ecosystem, 'Debian:12');

    // A finding of the root that bookworm-security fixes: its source has a CVE fixed after
    // the installed version, and apt offers an upgrade of one of its binaries.
    const findings = await until('findings for the root', async () => (await collector.findings.findings(agentId))?.findings, 30_000);
    const target = findings.find((f) => f.status === 'open' && f.binaries.some((b) => upgrades.has(b)));
    assert.ok(target !== undefined, `no open finding of the root is upgraded by bookworm-security (upgrades: ${[...upgrades.keys()].join(', ')}; findings: ${findings.map((f) => `${f.advisory} ${f.package}`).join(', ')})`);
    const binary = target.binaries.find((b) => upgrades.has(b)) ?? '';
    const candidate = upgrades.get(binary) ?? '';
    const installedBefore = before.packages.find((p) => p.name === binary)?.version ?? '';
    assert.equal(compareVersions('deb', installedBefore, candidate), -1);

    const id = await collector.rollouts.create(
      {
        name: `e2e ${target.advisory}`,
        target: { findings: [target.advisory] },
        action: { kind: 'patch', advisories: [target.advisory] },
        waves: { canary: { hosts: 1 } },
        waitMinutes: 0,
        windows: [],
      },
      'e2e',
    );
    const preview = await collector.rollouts.preview(id);
    assert.deepEqual(
      preview.hosts.map((h) => h.agentId),
      [agentId],
    );
    await collector.rollouts.submit(id, 'e2e');
    const done = await until(
      'the rollout to end',
      async () => {
        const r = await collector.rollouts.get(id);
        return ['completed', 'halted', 'cancelled'].includes(r.state) ? r : undefined;
      },
      STEP_MS,
    );
    assert.equal(done.state, 'completed', JSON.stringify(done));

    const result = (await collector.outbox.forRollout(id))[0];
    assert.equal(result?.result?.status, 'succeeded', JSON.stringify(result?.result));
    assert.ok(result.result.commands.some((c) => c.argv.includes('apt-get') || c.argv.some((a) => a.endsWith('apt-get'))));
    assert.ok(result.result.changes.some((c) => c.name === binary && c.before === installedBefore && c.after === candidate), JSON.stringify(result.result.changes));

    // The facts: the agent's fresh inventory of the root, and the finding gone from it.
    const after = await until('the patched inventory', async () => {
      const inv = await collector.store.reports.latestInventory(agentId);
      return inv?.packages.find((p) => p.name === binary)?.version === candidate ? inv : undefined;
    }, 60_000);
    assert.equal(after.packages.find((p) => p.name === binary)?.version, candidate);
    const open = await until('findings after the patch', async () => (await collector.findings.findings(agentId, after))?.findings, 30_000);
    assert.equal(open.filter((f) => f.advisory === target.advisory && f.status === 'open').length, 0);
  });
});
