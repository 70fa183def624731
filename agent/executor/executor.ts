/**
 * Runs instructions one at a time, each at most once, and reports every one of them: what
 * ran (or why nothing did) goes to onResult as an InstructionResult.
 *
 * Flow per instruction: verify on submit (a refusal is reported at once); hold it until
 * notBefore if it is not yet due (a held reboot does not block a refresh behind it); when
 * its turn comes, verify again (it may have expired while held or queued), record its id in
 * the ledger (fsync'd) and only then run it. A crash after the record never allows a second
 * run; a crash before it never ran anything. A host that has no handler for it (no package
 * manager, no live-patch provider) refuses it before the record: it was never run.
 */
import { dirname } from 'node:path';
import { errorMessage, PatchwardenError, SourceUnavailableError } from '../../shared/errors.ts';
import type { Instruction, InstructionResult, PackageChange } from '../../shared/instructions.ts';
import { withoutNul } from '../../shared/grammar.ts';
import { LIMITS, type Package } from '../../shared/protocol.ts';
import { createContext } from '../inventory/context.ts';
import { readKernel } from '../inventory/kernel.ts';
import { readPackages } from '../inventory/packages.ts';
import { readReboot } from '../inventory/reboot.ts';
import { type CommandRecord, type HandlerContext, type HandlerOutcome, isHandlerOutcome, type HandlerResolver } from './handler.ts';
import { Ledger, LEDGER_CODE } from './ledger.ts';
import { verifyInstruction } from './verify.ts';

/** apt-get upgrading a kernel and building its initramfs takes minutes; a hung dpkg hook must not hold the queue for ever. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 30 * 60_000;
export const IN_PROGRESS_CODE = 'PW_ERR_INSTRUCTION_IN_PROGRESS';
/** setTimeout's limit: a longer hold waits in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const MAX_COMMANDS = 64;

export interface ExecutorOptions {
  collectorPublicKey: string;
  agentId: string;
  /** Where the ledger lives (the agent's state directory, see stateDirFor). */
  stateDir: string;
  /** '/' normally; a directory: handlers chroot into it. */
  root: string;
  resolveHandler: HandlerResolver;
  readPackages: (root: string) => Promise<Package[]>;
  readRebootRequired: (root: string) => Promise<boolean | null>;
  onResult: (result: InstructionResult) => void | Promise<void>;
  onRefresh: () => void;
  now?: () => Date;
  /** Per command run by a handler. */
  timeoutMs?: number;
  /** Forces every instruction to a dry run, whatever it says. */
  dryRun?: boolean;
  maxClockSkewMs?: number;
  /** Where an onResult that throws is reported; the queue goes on either way. */
  onError?: (err: unknown) => void;
  /** Told when a verified instruction is held until its notBefore (for the log, or a CLI waiting on it). */
  onHeld?: (instruction: Instruction, until: Date) => void;
}

/**
 * The agent's state directory: the spool's parent (/var/lib/patchwarden-agent for the
 * default spool), so the daemon and `execute` share one ledger and an instruction run
 * from a file is never run again from the network, or the other way round.
 */
export function stateDirFor(config: { spoolDir: string }): string {
  return dirname(config.spoolDir);
}

/** The host's installed packages, from the same readers as the inventory; throws when there is no readable database (an empty list would read as "everything removed"). */
export async function readInstalledPackages(root: string): Promise<Package[]> {
  const ctx = createContext(root);
  const r = await readPackages(ctx);
  if (r.format === null) {
    throw new SourceUnavailableError(`cannot read the installed packages in ${root}: ${ctx.warnings.map((w) => w.message).join('; ') || 'no package database'}`);
  }
  return r.packages;
}

/** Whether the host needs a reboot, as the inventory reports it; null when that cannot be read. */
export async function readRebootRequired(root: string): Promise<boolean | null> {
  try {
    const ctx = createContext(root);
    const pkgs = await readPackages(ctx);
    const kernel = await readKernel(ctx, pkgs.packages, pkgs.format);
    return (await readReboot(ctx, kernel)).required;
  } catch {
    return null;
  }
}

/**
 * What changed between two package lists, keyed by name and architecture (multi-arch
 * libc6:amd64 and libc6:i386 are two packages). A key with several versions (rpm installs
 * kernels side by side) pairs one removed with one added version when it can, else lists
 * each. Targets are always listed, even unchanged, so "not upgraded" is visible.
 */
export function packageChanges(before: readonly Package[], after: readonly Package[], targets: readonly string[] = []): PackageChange[] {
  const group = (list: readonly Package[]): Map<string, { name: string; versions: Set<string> }> => {
    const m = new Map<string, { name: string; versions: Set<string> }>();
    for (const p of list) {
      const key = `${p.name}\u0000${p.arch}`;
      const g = m.get(key) ?? { name: p.name, versions: new Set<string>() };
      g.versions.add(p.version);
      m.set(key, g);
    }
    return m;
  };
  const b = group(before);
  const a = group(after);
  const wanted = new Set(targets);
  const changes: PackageChange[] = [];
  for (const key of new Set([...b.keys(), ...a.keys()])) {
    const was = b.get(key);
    const now = a.get(key);
    const name = (was ?? now)?.name as string;
    const gone = [...(was?.versions ?? [])].filter((v) => now?.versions.has(v) !== true);
    const added = [...(now?.versions ?? [])].filter((v) => was?.versions.has(v) !== true);
    if (gone.length === 0 && added.length === 0) {
      if (wanted.has(name)) for (const v of was?.versions ?? []) changes.push({ name, before: v, after: v });
      continue;
    }
    if (gone.length === 1 && added.length === 1) {
      changes.push({ name, before: gone[0] as string, after: added[0] as string });
      continue;
    }
    for (const v of gone) changes.push({ name, before: v, after: null });
    for (const v of added) changes.push({ name, before: null, after: v });
  }
  for (const t of wanted) if (!changes.some((c) => c.name === t)) changes.push({ name: t, before: null, after: null });
  return changes.sort((x, y) => x.name.localeCompare(y.name)).slice(0, LIMITS.packages);
}

interface Pending {
  instruction: Instruction;
  signed: unknown;
  timer: NodeJS.Timeout | null;
}

export class Executor {
  readonly #o: ExecutorOptions;
  readonly #now: () => Date;
  readonly #abort = new AbortController();
  readonly #ledger: Promise<Ledger>;
  /** Ids held, queued or running: a second copy of one is refused, not queued twice. */
  readonly #pending = new Map<string, Pending>();
  readonly #queue: Pending[] = [];
  #running: Promise<void> | null = null;
  #closed = false;
  /** Results being delivered; close() waits for them. */
  readonly #deliveries = new Set<Promise<void>>();

  constructor(options: ExecutorOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => new Date());
    this.#ledger = Ledger.open(options.stateDir, { now: this.#now });
    // Surfaced per instruction as a refusal; this only keeps the rejection from going unhandled.
    this.#ledger.catch(() => undefined);
  }

  /** Takes a signed instruction (an object, or the JSON text of one); its result comes through onResult. */
  submit(signed: unknown): void {
    const startedAt = this.#now();
    if (this.#closed) return;
    void this.#ledger.then(
      (ledger) => {
        this.#accept(signed, ledger, startedAt);
      },
      (err: unknown) => {
        this.#report(this.#refusal(null, null, startedAt, LEDGER_CODE, errorMessage(err)));
      },
    );
  }

  /** Stops taking instructions, aborts the running one's commands, drops held ones (unreported: the collector re-sends them), and waits. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#abort.abort();
    for (const p of this.#pending.values()) if (p.timer !== null) clearTimeout(p.timer);
    this.#queue.length = 0;
    await this.#running;
    await Promise.all(this.#deliveries);
    await (await this.#ledger.catch(() => null))?.close();
  }

  #accept(signed: unknown, ledger: Ledger, startedAt: Date): void {
    if (this.#closed) return;
    const v = verifyInstruction(signed, this.#verifyOptions(ledger));
    if (!v.ok) {
      this.#report(this.#refusal(v.instructionId, null, startedAt, v.code, v.message));
      return;
    }
    const instruction = v.instruction;
    const id = instruction.id.toLowerCase();
    if (this.#pending.has(id)) {
      this.#report(this.#refusal(id, instruction, startedAt, IN_PROGRESS_CODE, `instruction ${id} is already held or running here; its result will follow`));
      return;
    }
    const pending: Pending = { instruction, signed, timer: null };
    this.#pending.set(id, pending);
    const notBefore = new Date(instruction.notBefore);
    if (notBefore.getTime() > this.#now().getTime()) this.#o.onHeld?.(instruction, notBefore);
    this.#holdUntilDue(pending);
  }

  #holdUntilDue(p: Pending): void {
    if (this.#closed) return;
    const wait = Date.parse(p.instruction.notBefore) - this.#now().getTime();
    if (wait <= 0) {
      p.timer = null;
      this.#queue.push(p);
      this.#pump();
      return;
    }
    p.timer = setTimeout(() => {
      this.#holdUntilDue(p);
    }, Math.min(wait, MAX_TIMER_MS));
  }

  #pump(): void {
    if (this.#running !== null || this.#closed) return;
    const next = this.#queue.shift();
    if (next === undefined) return;
    this.#running = this.#turn(next).finally(() => {
      this.#pending.delete(next.instruction.id.toLowerCase());
      this.#running = null;
      this.#pump();
    });
  }

  async #turn(p: Pending): Promise<void> {
    const startedAt = this.#now();
    const ledger = await this.#ledger;
    // Again at its turn: it may have expired while held or queued.
    const v = verifyInstruction(p.signed, this.#verifyOptions(ledger));
    if (!v.ok) {
      this.#report(this.#refusal(v.instructionId, p.instruction, startedAt, v.code, v.message));
      return;
    }
    const instruction = v.instruction;
    const spent = { recorded: false };
    const record = async (): Promise<void> => {
      await ledger.record(instruction.id, instruction.expiresAt);
      spent.recorded = true;
    };
    let result: InstructionResult;
    try {
      result = await this.#run(instruction, startedAt, record);
    } catch (err) {
      const code = err instanceof PatchwardenError ? err.code : 'PW_ERR_COMMAND_FAILED';
      // Not recorded: nothing ran (the ledger could not be written, or the resolver failed).
      result = spent.recorded
        ? this.#result(instruction, startedAt, { status: 'failed', code, message: `the ${instruction.kind} handler failed: ${errorMessage(err)}`, commands: [] })
        : this.#refusal(instruction.id, instruction, startedAt, code, errorMessage(err));
    }
    this.#report(result);
  }

  /**
   * `record` goes before anything that acts on the instruction or decides its outcome; only
   * a resolver's refusal (no package manager, no such provider) comes first, so an
   * instruction this host could not run at all is not spent.
   */
  async #run(instruction: Instruction, startedAt: Date, record: () => Promise<void>): Promise<InstructionResult> {
    const ctx: HandlerContext = {
      root: this.#o.root,
      dryRun: instruction.dryRun || this.#o.dryRun === true,
      timeoutMs: this.#o.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
      signal: this.#abort.signal,
    };
    if (instruction.kind === 'refresh') {
      await record();
      this.#o.onRefresh();
      return this.#result(instruction, startedAt, { status: 'succeeded', code: null, message: 'inventory refresh requested', commands: [] });
    }
    if (instruction.kind === 'reboot' && instruction.onlyIfNeeded) {
      await record();
      const needed = await this.#o.readRebootRequired(this.#o.root);
      if (needed === false) {
        return this.#result(instruction, startedAt, { status: 'succeeded', code: null, message: 'reboot not needed: the host no longer requires one', commands: [] }, false);
      }
      if (needed === null) {
        return this.#result(instruction, startedAt, {
          status: 'failed',
          code: 'PW_ERR_SOURCE_UNAVAILABLE',
          message: 'cannot tell whether the host needs a reboot; not rebooting (onlyIfNeeded)',
          commands: [],
        });
      }
    }
    const handler = await this.#o.resolveHandler(instruction, ctx);
    if (isHandlerOutcome(handler)) return this.#result(instruction, startedAt, handler);
    if (!(instruction.kind === 'reboot' && instruction.onlyIfNeeded)) await record();

    const isPatch = instruction.kind === 'patch';
    const notes: string[] = [];
    const before = isPatch ? await this.#packagesOrNote(notes, 'before') : null;
    const outcome = await handler.run(instruction, ctx);
    const after = isPatch ? await this.#packagesOrNote(notes, 'after') : null;
    const changes = before !== null && after !== null ? packageChanges(before, after, isPatch ? instruction.packages.map((t) => t.name) : []) : [];
    const rebootRequired = await this.#o.readRebootRequired(this.#o.root).catch(() => null);
    const message = notes.length === 0 ? outcome.message : `${outcome.message} (${notes.join('; ')})`;
    return { ...this.#result(instruction, startedAt, { ...outcome, message }, rebootRequired), changes };
  }

  async #packagesOrNote(notes: string[], when: string): Promise<Package[] | null> {
    try {
      return await this.#o.readPackages(this.#o.root);
    } catch (err) {
      notes.push(`installed versions ${when} could not be read: ${errorMessage(err)}`);
      return null;
    }
  }

  // A message may quote what a command or a file said, U+0000 included, which the collector
  // refuses in a result's message (shared/text.ts): it is replaced so the result still arrives.
  #result(instruction: Instruction, startedAt: Date, outcome: HandlerOutcome, rebootRequired: boolean | null = null): InstructionResult {
    return {
      instructionId: instruction.id.toLowerCase(),
      status: outcome.status,
      code: outcome.status === 'succeeded' ? null : (outcome.code ?? 'PW_ERR_COMMAND_FAILED'),
      message: withoutNul(outcome.message.slice(0, LIMITS.text)),
      dryRun: instruction.dryRun || this.#o.dryRun === true,
      startedAt: startedAt.toISOString(),
      finishedAt: this.#now().toISOString(),
      commands: clampCommands(outcome.commands),
      changes: [],
      rebootRequired,
    };
  }

  #refusal(instructionId: string | null, instruction: Instruction | null, startedAt: Date, code: string, message: string): InstructionResult {
    const at = startedAt.toISOString();
    return {
      instructionId,
      status: 'refused',
      code,
      message: withoutNul(message.slice(0, LIMITS.text)),
      dryRun: (instruction?.dryRun ?? false) || this.#o.dryRun === true,
      startedAt: at,
      finishedAt: this.#now().toISOString(),
      commands: [],
      changes: [],
      rebootRequired: null,
    };
  }

  #report(result: InstructionResult): void {
    const delivery = (async () => {
      try {
        await this.#o.onResult(result);
      } catch (err) {
        this.#o.onError?.(err);
      }
    })();
    this.#deliveries.add(delivery);
    void delivery.finally(() => this.#deliveries.delete(delivery));
  }

  #verifyOptions(ledger: Ledger): Parameters<typeof verifyInstruction>[1] {
    return {
      collectorPublicKey: this.#o.collectorPublicKey,
      agentId: this.#o.agentId,
      now: this.#now(),
      ledger,
      ...(this.#o.maxClockSkewMs === undefined ? {} : { maxClockSkewMs: this.#o.maxClockSkewMs }),
    };
  }
}

function clampCommands(commands: readonly CommandRecord[]): CommandRecord[] {
  return commands.slice(0, MAX_COMMANDS);
}
