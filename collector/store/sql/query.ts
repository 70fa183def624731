/**
 * Query definitions shared by the SQLite and PostgreSQL stores (issue 12, collector/store/POSTGRES.md).
 *
 * A query is written once, with `?` placeholders, and defined at module level: its
 * PostgreSQL text (`$1`, `$2`, ...) is made once, and its name lets each PostgreSQL
 * connection prepare it once, as better-sqlite3 prepares each statement once. Where the two
 * dialects differ (upserts of a whole row, `max()` of two values, JSON functions), the
 * definition names both texts; the store's behavioural suite runs every query on both.
 */
import { createHash } from 'node:crypto';

export type Dialect = 'sqlite' | 'postgres';

export interface Query {
  /** A stable name from the PostgreSQL text: each connection prepares a name once. */
  readonly name: string;
  /** Null for a PostgreSQL-only statement (leases, set-based bulk writes): SQLite refuses it. */
  readonly sqlite: string | null;
  readonly postgres: string;
}

/** One text for both dialects, or one per dialect (each with `?` placeholders), or PostgreSQL's alone. */
export function sql(text: string | { sqlite?: string; postgres: string }): Query {
  const sqlite = typeof text === 'string' ? text : (text.sqlite ?? null);
  const postgres = numberPlaceholders(typeof text === 'string' ? text : text.postgres);
  return { name: `pw_${createHash('sha256').update(postgres).digest('base64url').slice(0, 20)}`, sqlite, postgres };
}

/** The SQLite text of a query; a PostgreSQL-only one is refused here rather than prepared as something else. */
export function sqliteText(query: Query): string {
  if (query.sqlite === null) throw new Error(`a PostgreSQL-only statement on SQLite: ${query.postgres.slice(0, 60)}`);
  return query.sqlite;
}

/**
 * `?` to `$1`, `$2`, ... outside string literals, quoted identifiers and comments, where a
 * `?` is text (`'what?'`), not a parameter. Written here, not taken from a library: the
 * grammar is these four token kinds, and the translation runs once per query, at load.
 */
export function numberPlaceholders(text: string): string {
  let out = '';
  let n = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === "'" || c === '"') {
      const end = closingQuote(text, i, c);
      out += text.slice(i, end);
      i = end;
    } else if (c === '-' && text[i + 1] === '-') {
      const nl = text.indexOf('\n', i);
      const end = nl === -1 ? text.length : nl;
      out += text.slice(i, end);
      i = end;
    } else if (c === '/' && text[i + 1] === '*') {
      const close = text.indexOf('*/', i + 2);
      const end = close === -1 ? text.length : close + 2;
      out += text.slice(i, end);
      i = end;
    } else if (c === '?') {
      out += `$${++n}`;
      i++;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Index just past the quote closing the one at `start`; a doubled quote is an escaped one. */
function closingQuote(text: string, start: number, quote: string): number {
  let i = start + 1;
  while (i < text.length) {
    if (text[i] === quote) {
      if (text[i + 1] === quote) i += 2;
      else return i + 1;
    } else i++;
  }
  return text.length;
}
