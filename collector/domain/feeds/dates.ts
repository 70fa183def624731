/**
 * Feed timestamps normalized to one form (`Date#toISOString`, UTC with milliseconds) so
 * the store compares strings. Parsing is strict: `Date.parse` would accept
 * `2023-02-30` (rolling into March) and locale forms, and a wrong date moves a
 * compliance deadline.
 */

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2}))?$/;

function validDay(year: number, month: number, day: number): boolean {
  const d = new Date(Date.UTC(year, month - 1, day));
  return d.getUTCFullYear() === year && d.getUTCMonth() === month - 1 && d.getUTCDate() === day;
}

/**
 * An RFC 3339 date-time (or a bare `YYYY-MM-DD`, read as midnight UTC) as
 * `YYYY-MM-DDTHH:MM:SS.sssZ`; null when it is not one or names a day that does not exist.
 */
export function normalizeDateTime(value: string): string | null {
  const m = RFC3339.exec(value);
  if (m === null) return null;
  const [, y, mo, d, h = '00', mi = '00', s = '00', frac = '', zone = 'Z'] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  if (year < 1970 || !validDay(year, month, day)) return null;
  if (Number(h) > 23 || Number(mi) > 59 || Number(s) > 60) return null;
  let offsetMinutes = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const sign = zone.startsWith('-') ? -1 : 1;
    const oh = Number(zone.slice(1, 3));
    const om = Number(zone.slice(4, 6));
    if (oh > 23 || om > 59) return null;
    offsetMinutes = sign * (oh * 60 + om);
  }
  const ms = frac === '' ? 0 : Math.floor(Number(`0${frac}`) * 1000);
  // A leap second (`:60`) is filed as the following second, as Date.UTC does.
  const t = Date.UTC(year, month - 1, day, Number(h), Number(mi), Number(s), ms) - offsetMinutes * 60_000;
  return new Date(t).toISOString();
}

/** A calendar date `YYYY-MM-DD` that exists; null otherwise. */
export function normalizeDate(value: string): string | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (m === null) return null;
  return validDay(Number(m[1]), Number(m[2]), Number(m[3])) ? value : null;
}
