/**
 * Instruction results waiting for the collector's ack, one file each in the agent's
 * state directory (results/), written atomically before the daemon tries to send them.
 * An operator must learn how a patch or a reboot went even when the collector was away
 * while it ran, or the host rebooted before the result left: nothing is lost.
 *
 * Results are small (the output tail is bounded), so the directory is read once at start
 * and kept in memory; a file that no longer parses as a result message is renamed to
 * `*.bad` and reported, never sent and never silently dropped.
 */
import { mkdir, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../../shared/errors.ts';
import type { InstructionResult } from '../../shared/instructions.ts';
import { resultMessage } from '../../shared/messages.ts';
import { type ResultMessage, ResultMessageSchema } from '../../shared/protocol.ts';
import { TEMP_PREFIX, writeFileAtomic } from '../../shared/atomic-write.ts';

/** A result is a few KB (16 KiB of output tail per command at most); anything far larger is not one. */
const MAX_RESULT_FILE_BYTES = 4 * 1024 * 1024;

export interface PendingResult {
  file: string;
  message: ResultMessage;
}

export class ResultOutbox {
  readonly dir: string;
  readonly #pending: PendingResult[];
  #seq: number;

  private constructor(dir: string, pending: PendingResult[], seq: number) {
    this.dir = dir;
    this.#pending = pending;
    this.#seq = seq;
  }

  /** Reads what an earlier run left; `warn` hears of files that cannot be sent. */
  static async open(dir: string, warn: (w: { code: string; message: string }) => void): Promise<ResultOutbox> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const names = (await readdir(dir)).filter((n) => n.endsWith('.json') && !n.startsWith(TEMP_PREFIX)).sort();
    const pending: PendingResult[] = [];
    let seq = 0;
    for (const name of names) {
      seq = Math.max(seq, Number.parseInt(name, 10) || 0);
      const file = join(dir, name);
      try {
        const text = await readFile(file, 'utf8');
        if (text.length > MAX_RESULT_FILE_BYTES) throw new Error(`${text.length} bytes`);
        pending.push({ file, message: ResultMessageSchema.parse(JSON.parse(text)) });
      } catch (err) {
        warn({ code: 'PW_ERR_MALFORMED_INPUT', message: `instruction result ${file} cannot be sent (${errorMessage(err).slice(0, 300)}); kept as ${name}.bad` });
        await rename(file, `${file}.bad`).catch(() => undefined);
      }
    }
    return new ResultOutbox(dir, pending, seq);
  }

  get size(): number {
    return this.#pending.length;
  }

  /** The oldest result not yet acknowledged. */
  first(): PendingResult | undefined {
    return this.#pending[0];
  }

  /** The result kept for this instruction, if one is still here (not yet acknowledged). */
  forInstruction(instructionId: string): InstructionResult | undefined {
    const id = instructionId.toLowerCase();
    return this.#pending.find((p) => p.message.result.instructionId?.toLowerCase() === id)?.message.result;
  }

  /** Durable when it resolves: the file is written and fsync'd. */
  async add(result: InstructionResult): Promise<PendingResult> {
    this.#seq++;
    const message = resultMessage(result);
    const file = join(this.dir, `${String(this.#seq).padStart(12, '0')}-${message.id}.json`);
    await writeFileAtomic(file, JSON.stringify(message), 0o600);
    const entry = { file, message };
    this.#pending.push(entry);
    return entry;
  }

  /** After the collector's ack. */
  async remove(entry: PendingResult): Promise<void> {
    const i = this.#pending.indexOf(entry);
    if (i >= 0) this.#pending.splice(i, 1);
    await unlink(entry.file).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    });
  }
}
