/**
 * `patchwarden-agent inventory [--root DIR] [--json] [--kernel-release R --kernel-version V]`
 *
 * Exit codes: 0 complete inventory; 3 partial inventory (a source was unreadable or
 * entries were skipped: the warnings say which); 2 usage error; 1 no inventory at all.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Inventory } from '../../shared/protocol.ts';
import { requireDirectory } from '../../shared/cli-args.ts';
import { UsageError } from '../../shared/errors.ts';
import { collectInventory } from '../inventory/inventory.ts';

export const EXIT_PARTIAL = 3;

export function summarize(inv: Inventory): string {
  const h = inv.host;
  const k = inv.kernel;
  const lines: string[] = [];
  const row = (label: string, value: string): void => {
    lines.push(`${label.padEnd(10)} ${value}`);
  };
  row('host', `${h.hostname}  ${h.os.prettyName ?? h.os.id ?? 'unknown OS'}  [${h.ecosystem ?? 'no ecosystem'}]`);
  row('packages', `${inv.packages.length} ${inv.packageFormat ?? '(no package database)'}`);
  row(
    'kernel',
    `${k.release} ${k.package === null ? '(no package provides it: unmanaged kernel)' : `(${k.package.name} ${k.package.version})`}`,
  );
  if (k.installed.length > 0) {
    row('installed', k.installed.map((i) => (i.version === null ? i.release : `${i.release} (${i.version})`)).join(', '));
  }
  const lp = k.livepatch;
  row('livepatch', lp.provider === 'none' ? 'none' : `${lp.provider} ${lp.active ? 'active' : 'inactive'}${lp.effectiveVersion === null ? '' : ` ${lp.effectiveVersion}`}, ${lp.fixedCves.length} CVEs`);
  row('reboot', inv.reboot.required ? `required: ${inv.reboot.reasons.map((r) => `${r.kind} (${r.detail})`).join('; ')}` : 'not required');
  if (inv.reboot.services.length > 0) {
    const names = inv.reboot.services.map((s) => s.unit ?? `${s.command ?? '?'}[${s.pids.join(',')}]`);
    row('restart', `${inv.reboot.services.length} using deleted files: ${names.slice(0, 10).join(', ')}${names.length > 10 ? ', …' : ''}`);
  }
  for (const w of inv.warnings) row('warning', `${w.source}: ${w.message} (${w.code})`);
  return lines.join('\n') + '\n';
}

export async function inventoryCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        root: { type: 'string' },
        json: { type: 'boolean', default: false },
        'kernel-release': { type: 'string' },
        'kernel-version': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.root !== undefined) await requireDirectory('--root', values.root);
  const release = values['kernel-release'];
  const running = release === undefined ? undefined : { release, version: values['kernel-version'] ?? '' };
  const inv = await collectInventory({
    ...(values.root === undefined ? {} : { root: resolve(values.root) }),
    ...(running === undefined ? {} : { running }),
  });
  out.write(values.json ? JSON.stringify(inv, null, 2) + '\n' : summarize(inv));
  return inv.warnings.length > 0 ? EXIT_PARTIAL : 0;
}
