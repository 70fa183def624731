/**
 * RFC 4180 CSV: fields separated by `,`, records by LF or CRLF, fields in double quotes
 * may hold commas, quotes (doubled: `""`) and line breaks. CISA's KEV CSV quotes every
 * free-text field, and its descriptions contain commas.
 */
import { FeedFormatError } from '../../../shared/errors.ts';

/**
 * All records of `text` (a leading BOM and a final empty line are dropped). Throws
 * FeedFormatError for a quote left open at the end or text right after a closing quote:
 * past such a point every later field would shift, so nothing after it can be trusted.
 */
export function parseCsv(text: string, where = 'csv'): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  const n = text.length;
  for (;;) {
    let field = '';
    if (text[i] === '"') {
      const startLine = line;
      i++;
      for (;;) {
        const q = text.indexOf('"', i);
        if (q === -1) throw new FeedFormatError(`${where}:${startLine}: quoted field never closed`);
        const chunk = text.slice(i, q);
        for (let k = chunk.indexOf('\n'); k !== -1; k = chunk.indexOf('\n', k + 1)) line++;
        field += chunk;
        if (text[q + 1] === '"') {
          field += '"';
          i = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      const c = text[i];
      if (i < n && c !== ',' && c !== '\n' && !(c === '\r' && text[i + 1] === '\n')) {
        throw new FeedFormatError(`${where}:${line}: text after a closing quote`);
      }
    } else {
      let end = i;
      while (end < n && text[end] !== ',' && text[end] !== '\n') end++;
      field = text.slice(i, end);
      if (text[end] === '\n' && field.endsWith('\r')) field = field.slice(0, -1);
      i = end;
    }
    row.push(field);
    if (i >= n) {
      if (!(row.length === 1 && row[0] === '')) rows.push(row);
      return rows;
    }
    if (text[i] === ',') {
      i++;
      continue;
    }
    // End of record: LF or CRLF.
    i += text[i] === '\r' ? 2 : 1;
    line++;
    rows.push(row);
    row = [];
    if (i >= n) return rows;
  }
}
