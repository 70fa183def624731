/**
 * Maintenance windows: a cron expression (croner) says when a window opens, in its own
 * time zone, and it stays open for durationMinutes. No windows at all means always open.
 *
 * Daylight-saving edges follow croner (measured with 10.0.1 in Europe/Berlin): a start in
 * the hour skipped in spring (02:30 on 2026-03-29) opens at 03:30 CEST that day, and a
 * start in the hour repeated in autumn (02:30 on 2026-10-25) opens once, at the first
 * 02:30 (CEST). Asked from inside that repeated hour, croner 10.0.1 answers a time BEFORE
 * its argument (nextRun(2026-10-25T01:00Z) is 00:30Z for `30 2 * * *`), so such answers
 * are skipped and the search goes on from an hour later. Durations are real elapsed minutes, so a 01:00 + 240 min window closes at
 * 06:00 local on the spring day and at 04:00 local on the autumn day.
 */
import { Cron } from 'croner';
import type { MaintenanceWindow } from './plan.ts';

const MINUTE = 60_000;

function cronOf(w: MaintenanceWindow): Cron {
  return new Cron(w.cron, { timezone: w.timezone, paused: true });
}

/** The first start strictly after `from` (croner works in whole seconds). */
function nextAfter(cron: Cron, from: Date): Date | null {
  let probe = from;
  for (let tries = 0; tries < 4; tries++) {
    const next = cron.nextRun(probe);
    if (next === null || next.getTime() > from.getTime()) return next;
    probe = new Date(from.getTime() + (tries + 1) * 60 * MINUTE);
  }
  return null;
}

/** The opening of `w` that contains `at`, if any: the first start after (at - duration), if it is not after `at`. */
function occurrence(w: MaintenanceWindow, at: Date): { start: Date; end: Date } | null {
  const span = w.durationMinutes * MINUTE;
  const start = nextAfter(cronOf(w), new Date(at.getTime() - span));
  if (start === null || start.getTime() > at.getTime()) return null;
  return { start, end: new Date(start.getTime() + span) };
}

/** Whether any window is open at `at`, and until when (the latest end among the windows open then). null: closed. */
export function openUntil(windows: readonly MaintenanceWindow[], at: Date): Date | null | 'always' {
  if (windows.length === 0) return 'always';
  let end: Date | null = null;
  for (const w of windows) {
    const o = occurrence(w, at);
    if (o !== null && (end === null || o.end > end)) end = o.end;
  }
  return end;
}

export function isOpen(windows: readonly MaintenanceWindow[], at: Date): boolean {
  return openUntil(windows, at) !== null;
}

/** When a window is next open at or after `after`: `after` itself when one is open then; null when none ever opens. */
export function nextOpening(windows: readonly MaintenanceWindow[], after: Date): Date | null {
  if (isOpen(windows, after)) return after;
  let first: Date | null = null;
  for (const w of windows) {
    const next = nextAfter(cronOf(w), after);
    if (next !== null && (first === null || next < first)) first = next;
  }
  return first;
}
