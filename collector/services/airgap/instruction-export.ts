/**
 * `instructions export`: the outbox of hosts that cannot reach the collector, as one signed
 * `instructions` file per agent (shared/signed-file.ts, signed with the collector key every
 * agent pinned at enrollment), for `patchwarden-agent apply --from DIR` on the other side.
 *
 * Every instruction still waiting for a result is written, sent before or not: a file lost
 * on the way is replaced by exporting again, and the agent's ledger makes sure none runs
 * twice. Exported instructions are marked sent, which is when a rollout's reboot grace and
 * wave timing start, as they do for a live agent; the marks and the file's audit row
 * (`instructions.export`) go in one transaction, after the file is written.
 */
import { join } from 'node:path';
import { writeFileAtomic } from '../../../shared/atomic-write.ts';
import type { InstructionBundle } from '../../../shared/instructions.ts';
import { COLLECTOR_SIGNER, encodeSignedFile, signedFileName } from '../../../shared/signed-file.ts';
import type { AsyncStore } from '../../store/store.ts';

export interface ExportedFile {
  agentId: string;
  file: string;
  instructions: number;
}

/** Writes the files atomically (a reader or a crash never leaves half of one). */
export async function exportInstructions(opts: {
  store: Pick<AsyncStore, 'outbox' | 'audit' | 'transaction'>;
  /** Who the audit rows name. */
  actor: string;
  dir: string;
  key: string;
  /** Only these agents; all with pending instructions when undefined. */
  agentIds?: readonly string[];
  now?: Date;
}): Promise<ExportedFile[]> {
  const now = opts.now ?? new Date();
  const out: ExportedFile[] = [];
  for (const agentId of opts.agentIds ?? (await opts.store.outbox.agentsWithPending(now))) {
    const pending = await opts.store.outbox.pendingFor(agentId, now);
    if (pending.length === 0) continue;
    const bundle: InstructionBundle = { agentId, instructions: pending.map((p) => ({ payload: p.payload, signature: p.signature })) };
    const bytes = encodeSignedFile({ kind: 'instructions', signer: COLLECTOR_SIGNER, createdAt: now, body: Buffer.from(JSON.stringify(bundle)), key: opts.key });
    const file = join(opts.dir, signedFileName('instructions', now, agentId, `${pending.length}`));
    // 0600 whatever the umask: which hosts get which patches and reboots, and when.
    await writeFileAtomic(file, bytes, 0o600);
    await opts.store.transaction(async (tx) => {
      for (const p of pending) await tx.outbox.markSent(p.id, now);
      await tx.audit.record(opts.actor, 'instructions.export', `agent:${agentId}`, JSON.stringify({ instructions: pending.length }));
    });
    out.push({ agentId, file, instructions: pending.length });
  }
  return out;
}
