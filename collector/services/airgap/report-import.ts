/**
 * `reports import`: signed report and results files (`patchwarden-agent report --out DIR`,
 * `patchwarden-agent apply`) carried across an air gap, checked and stored as if the agent
 * had sent them.
 *
 * Each file is checked in full before anything of it is stored: the header's signature
 * against the key the agent enrolled with (an unknown signer is foreign), the size and
 * sha256 of the body, then the report itself with the gateway's own schema and hash check.
 * Files are imported oldest first by their signed time, whatever their names, so a
 * directory holding several reports of one host ends on the newest. One bad file is
 * refused with its code and the others still go in; each file is its own transaction.
 */
import { stat } from 'node:fs/promises';
import { PatchwardenError, MalformedInputError, errorMessage } from '../../../shared/errors.ts';
import { inventoryHash, packageSetRef } from '../../../shared/inventory-hash.ts';
import { type InstructionResult, ResultBundleSchema } from '../../../shared/instructions.ts';
import { DEFAULT_MAX_MESSAGE_BYTES, type Inventory, ReportMessageSchema } from '../../../shared/protocol.ts';
import { parseSignedBody, readSignedFile, readSignedFileHeader, signedFilesIn } from '../../../shared/signed-file.ts';
import type { AgentRecord } from '../../store/agents.ts';
import type { ImportStatus } from '../../store/report-imports.ts';
import type { AsyncStore } from '../../store/store.ts';

/** A file written by the future beyond this much clock skew is refused. */
const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;

export type ReportFileOutcome =
  | { file: string; kind: 'report'; status: ImportStatus; agentId: string; hostname: string; createdAt: string; packages: number }
  /** recorded: new results; known: recorded before (a file imported twice); unknown: no instruction of this collector for this agent. */
  | { file: string; kind: 'results'; status: 'stored' | 'duplicate'; agentId: string; createdAt: string; recorded: number; known: number; unknown: number }
  | { file: string; status: 'refused'; code: string; message: string };

/** Where results and inventories go besides the fleet store: the rollouts (collector/services/rollouts/engine.ts). */
export interface ImportSinks {
  /** 'recorded' the first time, 'known' after, 'unknown' for an id this collector never sent to this agent. */
  result: (agentId: string, result: InstructionResult) => Promise<'recorded' | 'known' | 'unknown'>;
  inventory: (agentId: string, inventory: Inventory) => Promise<void>;
}

/** Files named on the command line, and the report files inside named directories (sorted; temporary and hidden files skipped). */
export async function reportFilesIn(paths: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const p of paths) {
    const info = await stat(p).catch((err: unknown) => {
      throw new PatchwardenError(`cannot read ${p}: ${errorMessage(err)}`, 'PW_ERR_SOURCE_UNAVAILABLE', { cause: err });
    });
    if (!info.isDirectory()) {
      files.push(p);
      continue;
    }
    files.push(...(await signedFilesIn(p, ['report', 'results'])));
  }
  return files;
}

function refused(file: string, err: unknown): ReportFileOutcome {
  // Files that cannot be read are PW_ERR_SOURCE_UNAVAILABLE already (readSignedFile); anything else unnamed is the store's.
  if (err instanceof PatchwardenError) return { file, status: 'refused', code: err.code, message: err.message };
  return { file, status: 'refused', code: 'PW_ERR_STORE', message: errorMessage(err) };
}

async function importResults(file: string, agentId: string, createdAt: string, body: Buffer, opts: ImportOptions): Promise<ReportFileOutcome> {
  const bundle = parseSignedBody(body, ResultBundleSchema, 'a results bundle').value;
  if (bundle.agentId !== agentId) throw new PatchwardenError(`the file is signed by agent ${agentId} but carries results of agent ${bundle.agentId}`, 'PW_ERR_FILE_TAMPERED');
  const counts = { recorded: 0, known: 0, unknown: 0 };
  for (const r of bundle.results) counts[await opts.sinks.result(agentId, r)]++;
  if (counts.recorded === 0 && counts.known === 0) {
    throw new PatchwardenError(`none of the file's ${counts.unknown} results answers an instruction this collector sent to agent ${agentId}`, 'PW_ERR_FILE_FOREIGN');
  }
  await opts.fleet.audit.record(opts.actor, 'results.import', `agent:${agentId}`, JSON.stringify({ createdAt, ...counts }));
  return { file, kind: 'results', status: counts.recorded > 0 ? 'stored' : 'duplicate', agentId, createdAt, ...counts };
}

async function importOne(file: string, opts: ImportOptions, now: Date): Promise<ReportFileOutcome> {
  const { fleet, imports, actor } = opts;
  let agent: AgentRecord | undefined;
  // Messages say "the file": the outcome names it once, beside them.
  const { header, body } = await readSignedFile(file, 'the file', {
    kind: ['report', 'results'],
    maxBodyBytes: DEFAULT_MAX_MESSAGE_BYTES,
    keyOf: async (signer) => (agent = await fleet.agents.get(signer))?.publicKey,
  });
  const createdAt = new Date(header.createdAt);
  if (createdAt.getTime() > now.getTime() + MAX_CLOCK_SKEW_MS) {
    throw new PatchwardenError(`the file was written at ${header.createdAt}, in the future by this collector's clock (${now.toISOString()})`, 'PW_ERR_FILE_FROM_FUTURE');
  }
  if (agent?.revokedAt != null) throw new PatchwardenError(`agent ${header.signer} was revoked at ${agent.revokedAt}`, 'PW_ERR_AGENT_REVOKED');
  if (header.kind === 'results') return importResults(file, header.signer, header.createdAt, body, opts);
  const { value: msg, json } = parseSignedBody(body, ReportMessageSchema, 'a report');
  // A file carries the whole inventory: there is no collector to ask for a held package set.
  if (msg.inventory === null || msg.packageSet !== undefined) throw new MalformedInputError(`a report file must carry the full inventory`);
  // As at the gateway: the hash is checked on the inventory in the agent's own key order.
  const raw = (json as { inventory: Inventory }).inventory;
  if (inventoryHash(raw, packageSetRef(raw.packages).hash) !== msg.hash) throw new MalformedInputError(`the report's hash ${msg.hash} is not the hash of its inventory`);
  // header.sha256 is the body's digest, checked as the body was read.
  const status = await imports.import({ agentId: header.signer, reportId: msg.id, hash: msg.hash, inventory: msg.inventory, createdAt, fileSha256: header.sha256 }, actor, now);
  if (status === 'stored') await opts.sinks.inventory(header.signer, msg.inventory);
  return { file, kind: 'report', status, agentId: header.signer, hostname: msg.inventory.host.hostname, createdAt: header.createdAt, packages: msg.inventory.packages.length };
}

export interface ImportOptions {
  fleet: Pick<AsyncStore, 'agents' | 'audit'>;
  imports: AsyncStore['reportImports'];
  sinks: ImportSinks;
  actor: string;
  now?: () => Date;
}

/** Imports every file, oldest signed time first; never throws for a file, only reports it refused. */
export async function importReportFiles(files: readonly string[], opts: ImportOptions): Promise<ReportFileOutcome[]> {
  const now = opts.now ?? (() => new Date());
  const outcomes: ReportFileOutcome[] = [];
  const ordered: { file: string; createdAt: string }[] = [];
  for (const file of files) {
    try {
      ordered.push({ file, createdAt: (await readSignedFileHeader(file, 'the file')).createdAt });
    } catch (err) {
      outcomes.push(refused(file, err));
    }
  }
  ordered.sort((a, b) => Date.parse(a.createdAt) - Date.parse(b.createdAt) || (a.file < b.file ? -1 : 1));
  for (const { file } of ordered) {
    try {
      outcomes.push(await importOne(file, opts, now()));
    } catch (err) {
      outcomes.push(refused(file, err));
    }
  }
  return outcomes;
}
