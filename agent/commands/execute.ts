/**
 * `patchwarden-agent execute --instruction FILE [--config FILE] [--root DIR] [--dry-run] [--json]`
 *
 * For air-gapped sites: a signed instruction file carried across the gap runs through the
 * same Executor as one from the network, with the collector key and agent id pinned in the
 * enrolled config, and the same ledger (so it never runs twice, whichever way it came).
 *
 * Exit codes: 0 succeeded, 1 failed (it ran and a command failed), 2 refused (nothing ran)
 * or a usage error.
 */
import { open } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { requireDirectory } from '../../shared/cli-args.ts';
import { UsageError } from '../../shared/errors.ts';
import type { InstructionResult, ResultStatus } from '../../shared/instructions.ts';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../daemon/config.ts';
import { Executor, readInstalledPackages, readRebootRequired, stateDirFor } from '../executor/executor.ts';
import { MAX_ENVELOPE_BYTES } from '../executor/verify.ts';

const EXIT: Record<ResultStatus, number> = { succeeded: 0, failed: 1, refused: 2 };

export function exitCodeFor(status: ResultStatus): number {
  return EXIT[status];
}

export function summarizeResult(r: InstructionResult): string {
  const lines = [`${r.status}${r.code === null ? '' : ` (${r.code})`}${r.dryRun ? ' [dry run]' : ''}: ${r.message}`];
  if (r.instructionId !== null) lines.push(`instruction ${r.instructionId}`);
  for (const c of r.commands) lines.push(`ran ${JSON.stringify(c.argv)}: exit ${c.exitCode ?? 'none'}${c.signal === null ? '' : ` (${c.signal})`} in ${Math.round(c.durationMs)} ms`);
  for (const c of r.changes) lines.push(`${c.name}: ${c.before ?? '(not installed)'} -> ${c.after ?? '(not installed)'}`);
  if (r.rebootRequired !== null) lines.push(`reboot ${r.rebootRequired ? 'required' : 'not required'}`);
  return lines.join('\n') + '\n';
}

/**
 * The file's text, up to one byte past the limit: the verifier refuses anything larger
 * with its own code, so an oversize file still gets a result, and an endless one
 * (/dev/zero) is never read whole.
 */
async function readInstructionFile(file: string): Promise<string> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw new UsageError(`cannot open the instruction file ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const buf = Buffer.alloc(MAX_ENVELOPE_BYTES + 1);
    let total = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, total, buf.length - total, null);
      if (bytesRead === 0 || (total += bytesRead) === buf.length) break;
    }
    return buf.subarray(0, total).toString('utf8');
  } catch (err) {
    throw new UsageError(`cannot read the instruction file ${file}: ${(err as Error).message}`, { cause: err });
  } finally {
    await handle.close();
  }
}

export async function executeCommand(argv: string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        instruction: { type: 'string' },
        config: { type: 'string', default: DEFAULT_CONFIG_PATH },
        root: { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.instruction === undefined) throw new UsageError('execute needs --instruction FILE (a signed instruction exported by the collector)');
  let root = '/';
  if (values.root !== undefined) {
    await requireDirectory('--root', values.root);
    root = resolve(values.root);
  }
  const config = await loadConfig(values.config);
  const text = await readInstructionFile(values.instruction);
  // The handlers load only here: `inventory` and `version` never pay for them.
  const { resolveHandler } = await import('../executor/handlers/index.ts');

  let settle: (r: InstructionResult) => void = () => undefined;
  const result = new Promise<InstructionResult>((r) => (settle = r));
  const executor = new Executor({
    collectorPublicKey: config.collectorPublicKey,
    agentId: config.agentId,
    stateDir: stateDirFor(config),
    root,
    resolveHandler,
    readPackages: readInstalledPackages,
    readRebootRequired,
    dryRun: values['dry-run'],
    onResult: settle,
    onRefresh: () => {
      err.write('refresh: there is no daemon here; run `patchwarden-agent inventory --json` for a fresh inventory\n');
    },
    onHeld: (instruction, until) => {
      err.write(`instruction ${instruction.id} (${instruction.kind}) is not due yet: waiting until ${until.toISOString()} (Ctrl-C to stop; nothing has run)\n`);
    },
  });
  let onSignal: (s: NodeJS.Signals) => void = () => undefined;
  const stop = new Promise<NodeJS.Signals>((r) => (onSignal = r));
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  try {
    executor.submit(text);
    const r = await Promise.race([result, stop]);
    if (typeof r === 'string') {
      // close() below aborts a running command; a held instruction was never recorded.
      err.write(`execute: stopped by ${r}; an instruction that had started is recorded as run and will not run again\n`);
      return 1;
    }
    out.write(values.json ? JSON.stringify(r, null, 2) + '\n' : summarizeResult(r));
    return exitCodeFor(r.status);
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    await executor.close();
  }
}
