import { UsageError } from '../../shared/errors.ts';
import type { VersionScheme } from '../../shared/versions/index.ts';
import { parse } from './args.ts';
import { vercmp } from './vercmp.ts';

const SCHEMES = new Set(['deb', 'rpm', 'apk']);

/** `vercmp --scheme deb|rpm|apk`: exit 0 when every line compared, 1 when a line was invalid. */
export async function vercmpCommand(argv: string[], io: { stdin: NodeJS.ReadableStream; stdout: NodeJS.WritableStream }): Promise<number> {
  const { values } = parse(argv, { scheme: { type: 'string' } });
  if (values.scheme === undefined || !SCHEMES.has(values.scheme)) throw new UsageError('--scheme deb|rpm|apk is required');
  const { invalid } = await vercmp(values.scheme as VersionScheme, io.stdin, io.stdout);
  return invalid > 0 ? 1 : 0;
}
