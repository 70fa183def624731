/**
 * Free text the collector stores in a column of its own (an agent's version, a kernel
 * release, a result's message) is refused when it holds U+0000, which PostgreSQL's `text`
 * cannot store (grammar.ts NO_NUL). The check sits in the zod schema that reads the field,
 * so a refused value takes that schema's own error path and code: PW_ERR_PROTOCOL and close
 * 4000 on the agent wire, 400 PW_ERR_BAD_REQUEST on the HTTP API, exit 2 on the CLI.
 * Fields with a grammar of their own (host names, package names, versions) need nothing
 * more: no grammar of ours admits control characters.
 *
 * Documents stored whole as JSON text (an inventory, a result, a plan) keep any U+0000 as
 * JSON's escape `\u0000`, six characters `text` holds. Such a column must stay `text` on
 * PostgreSQL: a cast to `jsonb` (or `->>` on `json`) fails on that escape, for the whole
 * statement.
 */
import * as z from 'zod';
import { NO_NUL } from './grammar.ts';

export const NUL_REFUSED = 'must not contain U+0000 (NUL): the store cannot hold it';

/** `schema` that also refuses U+0000. */
export function noNul(schema: z.ZodString): z.ZodString {
  return schema.regex(NO_NUL, NUL_REFUSED);
}
