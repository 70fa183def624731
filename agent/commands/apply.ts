/**
 * `patchwarden-agent apply --from DIR [--out DIR] [--config FILE] [--dry-run]`
 *
 * The other half of `patchwarden-collector instructions export`, for hosts that cannot
 * reach the collector: runs the instructions in DIR's `*.pwinstr` files that are meant for
 * this agent, then writes what happened as a signed results file and a fresh report file
 * into --out (default: DIR itself), for `patchwarden-collector reports import`.
 *
 * Trust is the daemon's: a file must be signed with the collector key pinned at enrollment,
 * and each instruction in it goes through the same Executor (signature, target agent,
 * expiry, the ledger that keeps any instruction from running twice, whichever way it came).
 * Files for other agents are skipped, so one directory can be carried to many hosts.
 * Instructions whose notBefore has not come are left for a later run; nothing waits.
 * Every result is also kept in the agent's result outbox, as the daemon keeps its own,
 * so a daemon that reaches a collector later still delivers it.
 *
 * Exit codes: 0 every instruction succeeded (or there was none for this host); 1 one
 * failed; 2 one or a file was refused, or a usage error.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { requireDirectory } from '../../shared/cli-args.ts';
import { errorMessage, UsageError } from '../../shared/errors.ts';
import { InstructionBundleSchema, type InstructionResult, type SignedInstruction } from '../../shared/instructions.ts';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../../shared/protocol.ts';
import { COLLECTOR_SIGNER, encodeSignedFile, parseSignedBody, readSignedFile, signedFileName, signedFilesIn } from '../../shared/signed-file.ts';
import { writeFileAtomic } from '../../shared/atomic-write.ts';
import { type AgentConfig, DEFAULT_CONFIG_PATH, loadConfig, loadPrivateKey } from '../daemon/config.ts';
import { ResultOutbox } from '../daemon/results.ts';
import { Executor, readInstalledPackages, readRebootRequired, stateDirFor } from '../executor/executor.ts';
import { exitCodeFor, summarizeResult } from './execute.ts';
import { writeReportFile } from './report.ts';
import { REFUSAL_CODES } from '../executor/verify.ts';

const REPLAYED = REFUSAL_CODES.replayed;

interface Loaded {
  file: string;
  instructions: SignedInstruction[];
}

/** The instruction files in `dir` meant for this agent, checked; what was refused or skipped is written to `err`. */
async function loadBundles(dir: string, config: AgentConfig, err: NodeJS.WritableStream): Promise<{ bundles: Loaded[]; refused: number }> {
  const bundles: Loaded[] = [];
  let refused = 0;
  for (const file of await signedFilesIn(dir, ['instructions'])) {
    try {
      const { body } = await readSignedFile(file, 'the file', {
        kind: 'instructions',
        maxBodyBytes: DEFAULT_MAX_MESSAGE_BYTES,
        keyOf: (signer) => (signer === COLLECTOR_SIGNER ? config.collectorPublicKey : undefined),
        reader: 'this agent',
      });
      const bundle = parseSignedBody(body, InstructionBundleSchema, 'an instruction bundle').value;
      if (bundle.agentId !== config.agentId) {
        err.write(`skipped    ${file}: for agent ${bundle.agentId}, not this one\n`);
        continue;
      }
      bundles.push({ file, instructions: bundle.instructions });
    } catch (e) {
      refused++;
      err.write(`refused    ${file}: ${errorMessage(e)}\n`);
    }
  }
  return { bundles, refused };
}

/** notBefore as the payload says, read only to leave an instruction that is not due for a later run; the Executor verifies everything it runs. */
function notBeforeOf(signed: SignedInstruction): Date | null {
  try {
    const v = (JSON.parse(signed.payload) as { notBefore?: unknown }).notBefore;
    return typeof v === 'string' && !Number.isNaN(Date.parse(v)) ? new Date(v) : null;
  } catch {
    return null;
  }
}

export async function applyCommand(argv: string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { from: { type: 'string' }, out: { type: 'string' }, config: { type: 'string', default: DEFAULT_CONFIG_PATH }, 'dry-run': { type: 'boolean', default: false } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.from === undefined) throw new UsageError('apply needs --from DIR (instruction files from `patchwarden-collector instructions export`)');
  const outDir = values.out ?? values.from;
  await requireDirectory('--from', values.from);
  await requireDirectory('--out', outDir);
  const config = await loadConfig(values.config);
  const { key } = await loadPrivateKey(config.keyFile);
  const { bundles, refused: refusedFiles } = await loadBundles(values.from, config, err);

  const now = new Date();
  const due: SignedInstruction[] = [];
  for (const b of bundles) {
    for (const signed of b.instructions) {
      const notBefore = notBeforeOf(signed);
      if (notBefore !== null && notBefore.getTime() > now.getTime()) out.write(`not due   an instruction in ${b.file} waits until ${notBefore.toISOString()}: run apply again then\n`);
      else due.push(signed);
    }
  }
  if (due.length === 0) {
    out.write(`nothing to run for agent ${config.agentId}\n`);
    return refusedFiles > 0 ? 2 : 0;
  }

  const outbox = await ResultOutbox.open(join(stateDirFor(config), 'results'), (w) => err.write(`warning: ${w.message} (${w.code})\n`));
  const { resolveHandler } = await import('../executor/handlers/index.ts');
  const results: InstructionResult[] = [];
  let answered = 0;
  let failedWrites = 0;
  const written: { results: string | null } = { results: null };
  const resultsFile = join(outDir, signedFileName('results', now, config.agentId, randomUUID().slice(0, 8)));
  let settled: () => void = () => undefined;
  const allDone = new Promise<void>((r) => (settled = r));
  const executor = new Executor({
    collectorPublicKey: config.collectorPublicKey,
    agentId: config.agentId,
    stateDir: stateDirFor(config),
    root: config.root ?? '/',
    resolveHandler,
    readPackages: readInstalledPackages,
    readRebootRequired,
    dryRun: values['dry-run'],
    onResult: async (r) => {
      try {
        // A re-exported instruction that ran before is refused as a replay; the collector
        // must hear how it ran, not that it was refused now (it keeps the first result it gets).
        const kept = r.code === REPLAYED && r.instructionId !== null ? outbox.forInstruction(r.instructionId) : undefined;
        if (kept !== undefined) out.write(`ran here before; its result goes back again:\n${summarizeResult(kept)}`);
        else out.write(summarizeResult(r));
        if (r.code === REPLAYED && kept === undefined) {
          out.write(`(its result went back in an earlier results file)\n`);
          return;
        }
        const result = kept ?? r;
        results.push(result);
        if (kept === undefined) await outbox.add(result);
        // Written after every result: a reboot that takes the host down mid-run keeps what ran before it.
        const body = Buffer.from(JSON.stringify({ agentId: config.agentId, results }));
        // 0600 as the report files are (report.ts): what ran and what failed on this host.
        await writeFileAtomic(resultsFile, encodeSignedFile({ kind: 'results', signer: config.agentId, createdAt: new Date(), body, key }), 0o600);
        written.results = resultsFile;
      } finally {
        if (++answered === due.length) settled();
      }
    },
    onError: (e) => {
      err.write(`apply: ${errorMessage(e)}\n`);
      failedWrites++;
    },
    onRefresh: () => undefined,
  });
  try {
    for (const signed of due) executor.submit(signed);
    await allDone;
  } finally {
    await executor.close();
  }

  // The daemon sends a fresh inventory after every run; this is its file.
  const { file: reportFile } = await writeReportFile(outDir, config, key);
  out.write(`wrote ${written.results ?? '(no results file: nothing new ran)'}\nwrote ${reportFile}\ncarry both back: patchwarden-collector reports import DIR\n`);
  // A result that could not be written is not lost (it is in the result outbox) but the run did not finish its job.
  return Math.max(...results.map((r) => exitCodeFor(r.status)), refusedFiles > 0 ? 2 : 0, failedWrites > 0 ? 1 : 0);
}
