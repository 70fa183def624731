/**
 * Hosts that cannot reach the collector, both ways: their report and results files come in
 * (`reports import`), and their pending instructions go out signed (`instructions export`).
 * Results move their rollouts on here, as a live agent's do at the gateway.
 */
import type { SigningKey } from '../../signing-key.ts';
import type { AsyncStore } from '../../store/store.ts';
import type { RolloutEngine } from '../rollouts/engine.ts';
import { type ExportedFile, exportInstructions } from './instruction-export.ts';
import { type ImportSinks, importReportFiles, type ReportFileOutcome } from './report-import.ts';

export type { ExportedFile } from './instruction-export.ts';
export { reportFilesIn, type ReportFileOutcome } from './report-import.ts';

export interface AirGapDeps {
  store: Pick<AsyncStore, 'agents' | 'audit' | 'outbox' | 'reportImports' | 'transaction'>;
  /** The engine, made when first needed. */
  rollouts: () => RolloutEngine;
  /** The collector's key, read when first needed. */
  key: () => SigningKey;
}

export class AirGap {
  readonly #deps: AirGapDeps;

  constructor(deps: AirGapDeps) {
    this.#deps = deps;
  }

  /** Results go to the rollouts, which record them in the outbox and move their hosts on; inventories tell them of reboots. */
  importSinks(): ImportSinks {
    const { store } = this.#deps;
    return {
      result: async (agentId, result) => {
        const entry = result.instructionId === null ? undefined : await store.outbox.get(result.instructionId);
        if (entry?.agentId !== agentId) return 'unknown';
        if (entry.resultAt !== null) return 'known';
        await this.#deps.rollouts().onResult(agentId, result);
        return 'recorded';
      },
      inventory: (agentId, inventory) => this.#deps.rollouts().onInventory(agentId, inventory),
    };
  }

  /** Every file, oldest signed time first; a refused file is an outcome, never a throw. */
  importReports(files: readonly string[], actor: string): Promise<ReportFileOutcome[]> {
    const { store } = this.#deps;
    return importReportFiles(files, { fleet: store, imports: store.reportImports, sinks: this.importSinks(), actor });
  }

  /**
   * One signed file per agent with pending instructions (only `agentIds` when given), written
   * atomically into `dir`; each file is written to the audit log as `actor`'s.
   */
  exportInstructions(dir: string, agentIds: readonly string[] | undefined, actor: string): Promise<ExportedFile[]> {
    return exportInstructions({ store: this.#deps.store, actor, dir, key: this.#deps.key().privateKeyPem, ...(agentIds === undefined ? {} : { agentIds }) });
  }
}
