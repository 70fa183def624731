/**
 * The one rule for a feed's name, wherever it comes from: `feed import`'s file name or
 * `--name`, a `feed sync` config, a feed bundle's lines. A name `feed import` took and a
 * bundle then refused made `feed export` write bundles that every offline collector refused
 * whole; with one schema, a name is refused where it is given, with the fix in the message.
 * Letters, digits and `._@+-`, so a name is one word in a shell, a log line, a URL and
 * the dashboard, with nothing to escape.
 */
import * as z from 'zod';
import { PatchwardenError } from '../../../shared/errors.ts';

export const FEED_NAME_RULE = '1-128 letters, digits and ._@+- starting with a letter or digit';

export const FeedNameSchema = z.string().min(1).max(128).regex(/^[A-Za-z0-9][A-Za-z0-9._@+-]*$/, `not a feed name (${FEED_NAME_RULE})`);

/** `name` if it is a valid feed name, else PW_ERR_FEED_NAME; `from` says where it came from and how to give another. */
export function checkFeedName(name: string, from: string): string {
  if (FeedNameSchema.safeParse(name).success) return name;
  throw new PatchwardenError(`feed name ${JSON.stringify(name.slice(0, 200))} (${from}) is not ${FEED_NAME_RULE}`, 'PW_ERR_FEED_NAME');
}
