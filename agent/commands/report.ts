/**
 * `patchwarden-agent report --out DIR [--config FILE]`
 *
 * For hosts that cannot reach the collector (air-gapped sites, DMZs): writes this host's
 * full inventory as one signed report file (shared/signed-file.ts) into DIR, to be carried
 * to the collector and loaded with `patchwarden-collector reports import`. It is the same
 * report message the daemon sends, signed with the agent's enrolled key, so the collector
 * stores it through the same code path and knows which agent made it.
 *
 * Exit codes: 0 written; 3 written, but the inventory is partial (the warnings say why);
 * 2 usage or config error; 1 no file written.
 */
import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { requireDirectory } from '../../shared/cli-args.ts';
import { UsageError } from '../../shared/errors.ts';
import { fullReport } from '../../shared/messages.ts';
import type { Inventory } from '../../shared/protocol.ts';
import { encodeSignedFile, signedFileName } from '../../shared/signed-file.ts';
import { writeFileAtomic } from '../../shared/atomic-write.ts';
import { type AgentConfig, DEFAULT_CONFIG_PATH, loadConfig, loadPrivateKey } from '../daemon/config.ts';
import { collectInventory } from '../inventory/inventory.ts';
import { EXIT_PARTIAL } from './inventory.ts';

export function reportFileName(createdAt: Date, agentId: string, reportId: string): string {
  return signedFileName('report', createdAt, agentId, reportId.slice(0, 8));
}

/** Collects this host's inventory and writes it into `dir` as a signed report file (also `apply`'s fresh report). */
export async function writeReportFile(dir: string, config: AgentConfig, key: KeyObject): Promise<{ file: string; bytes: number; inventory: Inventory; reportId: string }> {
  const inventory = await collectInventory(config.root === undefined ? {} : { root: config.root });
  const report = fullReport(inventory);
  const createdAt = new Date();
  const file = join(dir, reportFileName(createdAt, config.agentId, report.id));
  const bytes = encodeSignedFile({ kind: 'report', signer: config.agentId, createdAt, body: Buffer.from(JSON.stringify(report), 'utf8'), key });
  // 0600 whatever the umask: an inventory maps every unpatched package on this host; the
  // operator carrying it reads it as its owner, other local users have no need to.
  await writeFileAtomic(file, bytes, 0o600);
  return { file, bytes: bytes.length, inventory, reportId: report.id };
}

export async function reportCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { out: { type: 'string' }, config: { type: 'string', default: DEFAULT_CONFIG_PATH } }, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.out === undefined) throw new UsageError('report needs --out DIR (where the report file is written)');
  const dir = values.out;
  await requireDirectory('--out', dir);
  const config = await loadConfig(values.config);
  const { key } = await loadPrivateKey(config.keyFile);

  const { file, bytes, inventory, reportId } = await writeReportFile(dir, config, key);
  out.write(`wrote ${file}\n${inventory.packages.length} packages, ${bytes} bytes, report ${reportId}\n`);
  for (const w of inventory.warnings) out.write(`warning: ${w.source}: ${w.message} (${w.code})\n`);
  return inventory.warnings.length > 0 ? EXIT_PARTIAL : 0;
}
