/**
 * Clearing the advisory change log when several collectors share it (issue 12 §3). Each
 * replica reads the log at its own pace (every tick) into its own correlator, so none may
 * delete what it has read: the others may not have read it yet. The replica holding the
 * `housekeeping` duty clears, instead, what it had read a retention period ago: every
 * running replica follows the log every tick, so by then each has read it. A replica that
 * starts later loads the advisories whole and never needs the old rows.
 */

/** Far longer than a tick (15 s): a replica would have to stall this long to miss a row. */
export const CHANGE_LOG_RETENTION_MS = 10 * 60_000;

export class ChangeLogHousekeeping {
  readonly #clear: (seq: number) => Promise<void>;
  readonly #retentionMs: number;
  /** What the log's newest read row was at each tick, oldest first. */
  readonly #samples: { at: number; seq: number }[] = [];
  #cleared = 0;

  constructor(clear: (seq: number) => Promise<void>, retentionMs = CHANGE_LOG_RETENTION_MS) {
    this.#clear = clear;
    this.#retentionMs = retentionMs;
  }

  /**
   * Notes that the log was read up to `seq` at `nowMs`, and clears up to the newest row
   * read a retention period ago or earlier. Resolves with the row cleared up to (0: none yet).
   */
  async tick(seq: number, nowMs: number): Promise<number> {
    this.#samples.push({ at: nowMs, seq });
    let cut = 0;
    while (this.#samples.length > 0 && (this.#samples[0] as { at: number }).at <= nowMs - this.#retentionMs) cut = (this.#samples.shift() as { seq: number }).seq;
    if (cut > this.#cleared) {
      await this.#clear(cut);
      this.#cleared = cut;
    }
    return this.#cleared;
  }

  /** Another replica held the duty meanwhile: this one's samples say nothing about the time since. */
  reset(): void {
    this.#samples.length = 0;
  }
}
