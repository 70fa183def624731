/**
 * Test helpers for the daemon: temporary directories and real inventories. Tests only.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inventoryHash } from '../inventory-hash.ts';
import { unchangedReport } from '../messages.ts';
import type { Inventory, ReportMessage } from '../protocol.ts';
import { collectInventory } from '../../agent/inventory/inventory.ts';

export function tempDir(t: { after: (fn: () => void) => void }, prefix = 'pw-daemon-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

let thisHost: Promise<Inventory> | undefined;

/** This machine's real inventory, collected once per test process. */
export function hostInventory(): Promise<Inventory> {
  thisHost ??= collectInventory();
  return thisHost;
}

/**
 * The real inventory as it would look after `apt-get remove` of its first `n` packages:
 * a different, equally real state with a different hash.
 */
export function withoutFirstPackages(inv: Inventory, n: number): Inventory {
  return { ...inv, packages: inv.packages.slice(n) };
}

/** The hash-only report an agent sends while `inv` is unchanged. */
export function hashReport(inv: Inventory): ReportMessage {
  return unchangedReport(inventoryHash(inv));
}

/** A pino destination that keeps the agent's log lines, parsed. */
export function logSink(): { lines: Record<string, unknown>[]; write: (s: string) => void; codes: () => string[] } {
  const lines: Record<string, unknown>[] = [];
  return {
    lines,
    write: (s: string) => {
      lines.push(JSON.parse(s) as Record<string, unknown>);
    },
    codes: () => lines.map((l) => l.code).filter((c): c is string => typeof c === 'string'),
  };
}
