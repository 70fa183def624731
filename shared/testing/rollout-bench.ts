/**
 * A rollout test bench: a real SQLite file in a temp dir, a real Fleet with enrolled
 * agents and ingested inventories built from ../shared/data (the RHEL 9.5 image's rpms as
 * AlmaLinux 9, this project's Debian 12 dpkg status), findings from the real Correlator
 * over the real AlmaLinux 9 OSV export plus ALSA-2026:A009 (a real kernel advisory), and
 * instructions signed with a real ed25519 key. Tests only.
 */
import { sqliteSide } from './store-fixtures.ts';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { parseDpkgStatus } from '../../agent/inventory/dpkg.ts';
import { inventoryHash } from '../inventory-hash.ts';
import { InstructionSchema, type Instruction, type InstructionResult } from '../instructions.ts';
import type { Finding, Inventory, Package } from '../protocol.ts';
import { generateKeyPair, type KeyPair } from '../signing.ts';
import { dataPath, readData } from './data.ts';
import { Correlator } from '../../collector/domain/correlate/correlator.ts';
import { DEFAULT_POLICY } from '../../collector/domain/correlate/policy.ts';
import { inventoryOf, loadOsv, rhel95Packages } from './correlate-fixtures.ts';
import type { Advisory } from '../../collector/domain/feeds/types.ts';
import { collectorOn, openCollector, type OpenedCollector } from '../../collector/open-collector.ts';
import type { Db } from '../../collector/store/db.ts';
import { openStore, type Store } from '../../collector/store/store.ts';
import type { RolloutEngine, RolloutErrorContext } from '../../collector/services/rollouts/engine.ts';
import type { PlanInput } from '../../collector/domain/rollout/plan.ts';
import type { InstructionOutbox, OutboxEntry } from '../../collector/store/rollouts.ts';

export const NOW = new Date('2026-11-26T18:00:00.000Z');
/** ALSA-2026:A009 (kernel) is fixed in NEW_KERNEL; hosts built with `kernel: 'old'` run OLD_KERNEL. */
export const OLD_KERNEL = '5.14.0-611.5.1.el9_7';
export const NEW_KERNEL = '5.14.0-611.54.6.el9_7';

let advisories: Advisory[] | undefined;
let debianPackages: Package[] | undefined;

async function loadAdvisories(): Promise<Advisory[]> {
  advisories ??= [...(await loadOsv(dataPath('osv', 'almalinux9.osv.jsonl.gz'))), ...(await loadOsv(dataPath('osv', 'samples', 'ALSA-2026_A009.json')))];
  return advisories;
}

export interface HostSpec {
  hostname: string;
  os?: 'alma' | 'debian';
  tags?: string[];
  /** Run the old kernel from ALSA-2026:A009 (one open kernel finding). */
  kernel?: 'old' | 'unmanaged';
  livepatch?: 'kpatch' | 'none';
  rebootRequired?: boolean;
}

export function hostInventory(spec: HostSpec, bootId = randomUUID()): Inventory {
  const kpkg = (name: string, version: string): Package => ({ name, version, arch: 'x86_64', source: 'kernel', sourceVersion: version });
  let inv: Inventory;
  if (spec.os === 'debian') {
    debianPackages ??= parseDpkgStatus(readData('host-inventory', 'debian12-host.dpkg-status.gz'));
    inv = inventoryOf('Debian:12', 'deb', debianPackages);
  } else if (spec.kernel === 'old') {
    inv = inventoryOf('AlmaLinux:9', 'rpm', [...rhel95Packages(), kpkg('kernel-core', OLD_KERNEL), kpkg('kernel-modules', OLD_KERNEL)], {
      release: `${OLD_KERNEL}.x86_64`,
      package: { name: 'kernel-core', source: 'kernel', version: OLD_KERNEL },
      installed: [{ name: 'kernel-core', version: OLD_KERNEL, release: `${OLD_KERNEL}.x86_64` }],
    });
  } else {
    inv = inventoryOf('AlmaLinux:9', 'rpm', rhel95Packages());
  }
  inv.host.hostname = spec.hostname;
  inv.host.bootId = bootId;
  if (spec.livepatch === 'kpatch') inv.kernel.livepatch = { provider: 'kpatch', active: true, effectiveVersion: null, fixedCves: [], modules: ['kpatch_5_14_0_611_5_1_1_1'] };
  if (spec.rebootRequired === true) inv.reboot = { required: true, reasons: [{ kind: 'kernel-update', detail: 'newer kernel installed' }], services: [] };
  return inv;
}

export interface Bench {
  dir: string;
  path: string;
  db: Db;
  /** The store over db (storeOn). */
  store: Store;
  /** The outbox on the asynchronous store (store.async.outbox). */
  outbox: InstructionOutbox;
  engine: RolloutEngine;
  key: KeyPair;
  clock: { now: Date };
  /** Agents onEnqueued was called for, in order. */
  pushed: string[];
  /** Enrolls an agent and stores its inventory; returns the agent id. */
  addHost(spec: HostSpec): Promise<string>;
  /** A new report from the agent (a new boot id when it rebooted), passed to the engine as the gateway would. */
  report(agentId: string, inv: Inventory): Promise<void>;
  findings(agentId: string): Promise<Finding[]>;
  /** Closes the database and opens it again with a new engine: a collector restart. */
  restart(): void;
  /** What the engine passed to onError, in order. */
  errors: { err: unknown; where: RolloutErrorContext }[];
}

export async function makeBench(t: TestContext, opts: { advisories?: readonly Advisory[] } = {}): Promise<Bench> {
  const dir = await mkdtemp(join(tmpdir(), 'pw-rollout-'));
  const path = join(dir, 'c.db');
  const correlator = new Correlator();
  correlator.apply([...(await loadAdvisories()), ...(opts.advisories ?? [])]);
  const key = generateKeyPair();
  const clock = { now: NOW };
  const pushed: string[] = [];
  const errors: Bench['errors'] = [];
  const bench = {} as Bench;
  // The collector as openCollector builds it, with the bench's clock, key and findings (the
  // correlator over the fixtures' advisories, judged at the bench's clock).
  const wire = (collector: OpenedCollector): void => {
    const store = sqliteSide(collector);
    Object.assign(bench, { db: store.db, store, outbox: store.async.outbox, engine: collector.rollouts, findings: findingsOf });
  };
  const findingsOf = async (agentId: string): Promise<Finding[]> => {
    const inv = await bench.store.async.reports.latestInventory(agentId);
    return inv === undefined ? [] : correlator.findings(inv, { policy: DEFAULT_POLICY, now: clock.now, kev: new Map() }).findings;
  };
  const options = {
    store: { kind: 'sqlite' as const, path },
    signingKey: key,
    now: () => clock.now,
    rollouts: {
      findings: findingsOf,
      onEnqueued: (agentId: string) => pushed.push(agentId),
      onError: (err: unknown, where: RolloutErrorContext) => errors.push({ err, where }),
    },
  };
  wire(await openCollector(options));
  t.after(async () => {
    if (bench.db.open) bench.db.close();
    await rm(dir, { recursive: true, force: true });
  });
  Object.assign(bench, {
    dir,
    path,
    key,
    clock,
    pushed,
    errors,
    addHost: async (spec: HostSpec) => {
      const inv = hostInventory(spec);
      const parts = bench.store.async;
      const id = await parts.agents.enroll({ publicKey: generateKeyPair().publicKey, hostname: spec.hostname, machineId: null, tokenId: null }, clock.now);
      await parts.reports.ingest(id, randomUUID(), inventoryHash(inv), inv, clock.now);
      if (spec.tags !== undefined) await parts.agents.setTags(id, spec.tags, 'cli:test', clock.now);
      return id;
    },
    report: async (agentId: string, inv: Inventory) => {
      await bench.store.async.reports.ingest(agentId, randomUUID(), inventoryHash(inv), inv, clock.now);
      await bench.engine.onInventory(agentId, inv);
    },
    // Synchronous, as the tests call it: the store is opened here and wired by collectorOn, as openCollector does.
    restart: () => {
      bench.db.close();
      wire(collectorOn(openStore(options.store), options));
    },
  });
  return bench;
}

/** The instruction inside an outbox entry, parsed as the agent would after checking its signature. */
export function instructionOf(e: OutboxEntry): Instruction {
  return InstructionSchema.parse(JSON.parse(e.payload));
}

export function resultFor(instructionId: string, status: InstructionResult['status'], at: Date, opts: { rebootRequired?: boolean | null; code?: string | null } = {}): InstructionResult {
  return {
    instructionId,
    status,
    code: opts.code ?? (status === 'succeeded' ? null : status === 'failed' ? 'PW_ERR_COMMAND_FAILED' : 'PW_ERR_INSTRUCTION_EXPIRED'),
    message: status === 'succeeded' ? 'done' : 'dnf exited with 1',
    dryRun: false,
    startedAt: at.toISOString(),
    finishedAt: at.toISOString(),
    commands: [],
    changes: [],
    rebootRequired: opts.rebootRequired === undefined ? false : opts.rebootRequired,
  };
}

/** The real AlmaLinux 9 bind advisory the rollout tests patch (in almalinux9.osv.jsonl.gz). */
export const BIND = 'ALSA-2026:54510';

/** A plan patching everything that fixes BIND on the hosts tagged `web`, canary of one, no wait. */
export function bindPlan(over: Partial<PlanInput> = {}): PlanInput {
  return {
    name: 'bind week 48',
    target: { tags: ['web'] },
    action: { kind: 'patch', advisories: [BIND] },
    waves: { canary: { hosts: 1 }, growth: { factor: 2 } },
    waitMinutes: 0,
    ...over,
  };
}

/**
 * A feed advisory whose id is longer than an instruction may carry (the feeds keep ids up
 * to 256 characters, an instruction 128: the Debian tracker's `DEBIAN-CVE-…/<source>` ids
 * grow with the source name). It aliases POISON_CVE and affects POISON_PACKAGE, which only
 * a host given poison() has: that host's patch instruction cannot be built.
 */
export const POISON_CVE = 'CVE-2026-99001';
export const POISON_PACKAGE = 'pwpoison';
export const POISON_ADVISORY: Advisory = {
  source: 'osv',
  id: `ALSA-2026:${'9'.repeat(130)}`,
  aliases: [POISON_CVE],
  summary: 'an advisory id over the instruction limit',
  severity: 'high',
  published: '2026-11-01T00:00:00.000Z',
  modified: null,
  affected: [{ ecosystem: 'AlmaLinux:9', package: POISON_PACKAGE, ranges: [{ introduced: '0', fixed: '2.0-1.el9', lastAffected: null }], versions: [], notAffected: false }],
  withdrawn: null,
};

/** The inventory with POISON_PACKAGE installed below its fix. */
export function poison(inv: Inventory): Inventory {
  return { ...inv, packages: [...inv.packages, { name: POISON_PACKAGE, version: '1.0-1.el9', arch: 'x86_64', source: POISON_PACKAGE, sourceVersion: '1.0-1.el9' }] };
}

/**
 * Two Debian advisories on two source packages, each building `binaries` binaries with
 * long names: a host with both installed needs more packages upgraded than one patch
 * instruction holds (LIMITS.list, MAX_INSTRUCTION_BYTES).
 */
export const BIG_ADVISORIES = ['DSA-9901-1', 'DSA-9902-1'] as const;

export function bigAdvisories(): Advisory[] {
  return BIG_ADVISORIES.map((id, i) => ({
    source: 'osv',
    id,
    aliases: [],
    summary: null,
    severity: 'high' as const,
    published: '2026-11-01T00:00:00.000Z',
    modified: null,
    affected: [{ ecosystem: 'Debian:12', package: `pwbig${i}`, ranges: [{ introduced: '0', fixed: '2.0-1', lastAffected: null }], versions: [], notAffected: false }],
    withdrawn: null,
  }));
}

export function bigInventory(hostname: string, binaries: number): Inventory {
  const inv = hostInventory({ hostname, os: 'debian' });
  const extra: Package[] = [];
  for (let s = 0; s < BIG_ADVISORIES.length; s++) {
    for (let i = 0; i < binaries; i++) {
      extra.push({ name: `pwbig${s}-a-binary-package-with-a-long-name-${i}`, version: '1.0-1', arch: 'amd64', source: `pwbig${s}`, sourceVersion: '1.0-1' });
    }
  }
  return { ...inv, packages: [...inv.packages, ...extra] };
}
