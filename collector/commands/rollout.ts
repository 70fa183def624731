/**
 * `rollout create|preview|list|show|submit|approve|pause|resume|cancel`: rollouts for
 * operators on the collector's machine, on the same database a running collector serves.
 * The engine keeps nothing in memory, so this process and the serving collector agree on
 * every row; the collector's 15 s tick sends the waves, waits and gates from there on.
 *
 * Instructions this process enqueues (a submit, approve or resume that starts a wave) are
 * signed here with the collector's key (`collector.key` beside the database, as `serve`
 * keeps it) and reach an agent when it next connects: this process cannot reach the
 * serving collector's open connections. The API pushes them at once.
 *
 * Findings (which hosts a `findings` target or an `advisories` patch selects) are
 * correlated from the store's advisories as `serve` does, loaded only when a command
 * needs them.
 */
import { readFileSync, statSync } from 'node:fs';
import { InputTooLargeError, MalformedInputError, SourceUnavailableError, UsageError, errorMessage } from '../../shared/errors.ts';
import { createLogger } from '../logger.ts';
import { openCollector, type OpenedCollector } from '../open-collector.ts';
import { type Preview, ROLLOUT_OPERATIONS, type RolloutOperation } from '../services/rollouts/engine.ts';
import { listRollouts, type RolloutDetailJson, type RolloutJson, rolloutDetail } from '../services/rollouts/rollout-json.ts';
import { parsePlan } from '../domain/rollout/plan.ts';
import { cliActor } from './actor.ts';
import { parse } from './args.ts';
import { DEFAULT_DB } from './feed.ts';

type Io = { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };

/** The API's limit too: a plan with 10,000 explicit agent ids is about 400 KiB. */
export const MAX_PLAN_FILE_BYTES = 1024 * 1024;
/** Actors as the audit log's filter accepts them (`cli:root`, `api:ops`, `alice@example.org`). */
const ACTOR = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;


function checkId(id: string | undefined): string {
  if (id === undefined) throw new UsageError('--id ID is required (rollout list shows the ids)');
  if (!UUID.test(id)) throw new UsageError('--id: a rollout id is a uuid (rollout list shows the ids)');
  return id.toLowerCase();
}

function checkActor(actor: string | undefined): string {
  if (actor === undefined) return cliActor();
  if (!ACTOR.test(actor)) throw new UsageError('--actor: 1-128 letters, digits and _.:@- starting with a letter or digit (default: cli:<unix user>)');
  return actor;
}

/** The plan file's JSON, bounded; the engine validates what it says. */
export function readPlanFile(path: string): unknown {
  let text: string;
  try {
    const size = statSync(path).size;
    if (size > MAX_PLAN_FILE_BYTES) throw new InputTooLargeError(`the plan ${path} is ${size} bytes; a plan is at most ${MAX_PLAN_FILE_BYTES}`);
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (err instanceof InputTooLargeError) throw err;
    throw new SourceUnavailableError(`cannot read the plan ${path}: ${errorMessage(err)}`, { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new MalformedInputError(`the plan ${path} is not JSON: ${errorMessage(err).slice(0, 200)}`, { cause: err });
  }
}

/**
 * The collector on a database as a CLI process uses it (the caller closes it): the
 * findings' warnings and each rollout or host that fails alone go to stderr, and the key
 * is read when an instruction is first signed.
 */
export function openCliCollector(dbPath: string, io: Io, readonly: boolean): Promise<OpenedCollector> {
  return openCollector({
    store: { kind: 'sqlite', path: dbPath, readonly },
    logger: createLogger({ level: 'warn', destination: { write: (l: string) => io.stderr.write(l) } }),
    rollouts: {
      // A host that fails alone or a rollout that cannot advance says so here, besides its stored reason.
      onError: (err, where) => {
        io.stderr.write(`rollout ${where.rolloutId ?? '-'}${where.agentId === null ? '' : ` host ${where.agentId}`} (${where.during}): ${errorMessage(err).slice(0, 1000)}\n`);
      },
    },
  });
}

async function withCollector<T>(dbPath: string, io: Io, readonly: boolean, fn: (c: OpenedCollector) => Promise<T>): Promise<T> {
  const collector = await openCliCollector(dbPath, io, readonly);
  try {
    return await fn(collector);
  } finally {
    await collector.close();
  }
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((_, i) => Math.max(header[i]?.length ?? 0, ...rows.map((r) => r[i]?.length ?? 0)));
  return [header, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n') + '\n';
}

function rebootCell(h: Preview['hosts'][number]): string {
  if (h.livepatchInsteadOfReboot) return 'avoided (live patch)';
  return h.needsReboot ? 'needed' : 'no';
}

/** The human preview: one row per host, the skipped ones with their reason, a totals line. */
export function previewTable(p: Preview): string {
  const rows = p.hosts.map((h) => [
    h.hostname,
    String(h.wave),
    h.action,
    h.packages.length === 0 ? '-' : h.packages.map((x) => `${x.name} ${x.from ?? '?'}->${x.to ?? 'newest'}`).join(', '),
    h.findingsResolved.length === 0 ? '-' : h.findingsResolved.join(' '),
    rebootCell(h),
  ]);
  let out = p.hosts.length === 0 ? 'no host to act on\n' : table(['HOST', 'WAVE', 'ACTION', 'PACKAGES (FROM->TO)', 'FINDINGS RESOLVED', 'REBOOT'], rows);
  for (const h of p.hosts) if (h.error !== null) out += `will fail ${h.hostname} (${h.agentId}): ${h.error.code}: ${h.error.message}\n`;
  for (const s of p.skipped) out += `skipped ${s.hostname ?? s.agentId} (${s.agentId}): ${s.reason}\n`;
  const t = p.totals;
  out += `total: ${t.hosts} host${t.hosts === 1 ? '' : 's'} in ${p.waves.length} wave${p.waves.length === 1 ? '' : 's'} (${p.waves.join(', ') || '-'}), ${t.packages} package upgrades, ${t.findingsResolved} findings resolved, ${t.rebootsNeeded} reboots needed, ${t.rebootsAvoidedByLivepatch} avoided by live patching, ${p.skipped.length} skipped\n`;
  return out;
}

function hostsCell(r: RolloutJson): string {
  const s = r.hostStates;
  const failed = s.failed + s.refused + s.expired + s['not-back'];
  return `${s.succeeded}/${s.total} ok${failed > 0 ? `, ${failed} failed` : ''}${s.sent > 0 ? `, ${s.sent} sent` : ''}`;
}

export function listTable(items: readonly RolloutJson[]): string {
  if (items.length === 0) return 'no rollouts\n';
  return table(
    ['ID', 'STATE', 'ACTION', 'WAVES', 'HOSTS', 'CREATED', 'BY', 'NAME'],
    items.map((r) => [r.id, r.state, r.action + (r.dryRun ? ' (dry run)' : ''), `${r.waves.current}/${r.waves.total}`, hostsCell(r), r.createdAt, r.createdBy, r.name]),
  );
}

export function showText(r: RolloutDetailJson): string {
  const lines = [
    `rollout ${r.id}: ${r.name}`,
    `state: ${r.state}${r.haltedReason === null ? '' : ` (${r.haltedReason})`}`,
    `action: ${r.action}${r.dryRun ? ' (dry run)' : ''}; approval: ${r.requireApproval ? (r.fourEyes ? 'required, four eyes' : 'required') : 'not required'}`,
    `created ${r.createdAt} by ${r.createdBy}; submitted by ${r.submittedBy ?? '-'}; approved by ${r.approvedBy ?? '-'}${r.approvedAt === null ? '' : ` at ${r.approvedAt}`}`,
    `waves: ${r.waves.current} of ${r.waves.total} sent; hosts: ${hostsCell(r)}`,
  ];
  if (r.lastError !== null) lines.push(`last error: ${r.lastError.at} ${r.lastError.code}: ${r.lastError.message} (the collector tries again at each tick)`);
  let out = lines.join('\n') + '\n';
  if (r.hosts.length > 0) {
    out += table(
      ['HOST', 'WAVE', 'STATE', 'STEP', 'NEXT', 'DETAIL'],
      r.hosts.map((h) => [h.hostname ?? h.agentId, String(h.wave), h.state, h.step ?? '-', h.stepsLeft.join('+') || '-', h.detail ?? '']),
    );
  }
  return out;
}

async function create(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, plan: { type: 'string' }, actor: { type: 'string' }, json: { type: 'boolean', default: false } });
  if (values.plan === undefined) throw new UsageError('--plan FILE.json is required');
  const actor = checkActor(values.actor);
  const plan = readPlanFile(values.plan);
  return withCollector(values.db, io, false, async ({ rollouts: engine }) => {
    const id = await engine.create(plan, actor);
    const r = await engine.get(id);
    if (values.json) io.stdout.write(JSON.stringify({ id, name: r.name, state: r.state, createdBy: r.createdBy }) + '\n');
    else {
      io.stdout.write(`${id}\n`);
      io.stderr.write(`rollout ${id} (${r.name}) created as a draft by ${actor}; next: rollout preview --id ${id}, then rollout submit --id ${id}\n`);
    }
    return 0;
  });
}

async function preview(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, plan: { type: 'string' }, id: { type: 'string' }, json: { type: 'boolean', default: false } });
  if ((values.plan === undefined) === (values.id === undefined)) throw new UsageError('preview takes --plan FILE.json or --id ID');
  // A plan file is parsed here, so a JSON string in it is a bad plan and never read as a rollout id.
  const input = values.plan === undefined ? checkId(values.id) : parsePlan(readPlanFile(values.plan));
  return withCollector(values.db, io, true, async ({ rollouts: engine }) => {
    const p = await engine.preview(input);
    io.stdout.write(values.json ? JSON.stringify(p, null, 2) + '\n' : previewTable(p));
    return 0;
  });
}

async function list(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, json: { type: 'boolean', default: false } });
  return withCollector(values.db, io, true, async ({ rollouts: engine }) => {
    const items = await listRollouts(engine);
    io.stdout.write(values.json ? JSON.stringify(items, null, 2) + '\n' : listTable(items));
    return 0;
  });
}

async function show(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, id: { type: 'string' }, json: { type: 'boolean', default: false } });
  const id = checkId(values.id);
  return withCollector(values.db, io, true, async ({ rollouts: engine, store }) => {
    const r = await rolloutDetail(store, engine, id);
    io.stdout.write(values.json ? JSON.stringify(r, null, 2) + '\n' : showText(r));
    return 0;
  });
}

async function transition(op: RolloutOperation, argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { db: { type: 'string', default: DEFAULT_DB }, id: { type: 'string' }, actor: { type: 'string' }, json: { type: 'boolean', default: false } });
  const id = checkId(values.id);
  const actor = checkActor(values.actor);
  return withCollector(values.db, io, false, async ({ rollouts: engine }) => {
    const from = (await engine.get(id)).state;
    await engine.act(op, id, actor);
    const r = await engine.get(id);
    if (values.json) io.stdout.write(JSON.stringify({ id, from, state: r.state, actor }) + '\n');
    else io.stdout.write(`rollout ${id}: ${from} -> ${r.state} (${op} by ${actor})\n`);
    return 0;
  });
}

export function rolloutCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case 'create':
        return create(rest, io);
      case 'preview':
        return preview(rest, io);
      case 'list':
        return list(rest, io);
      case 'show':
        return show(rest, io);
      default:
        if ((ROLLOUT_OPERATIONS as readonly (string | undefined)[]).includes(sub)) return transition(sub as RolloutOperation, rest, io);
        throw new UsageError(`rollout ${sub ?? ''}: expected create, preview, list, show, ${ROLLOUT_OPERATIONS.join(', ')}`);
    }
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}
