/**
 * `patchwarden-agent enroll --collector URL [--collector URL]... --token T [--config FILE] [--spool-dir DIR] [--ca-file PEM] [--root DIR] [--force] [--insecure-cleartext]`
 *
 * --insecure-cleartext: enroll over ws:// to a host that is not loopback. Refused without
 * it (PW_ERR_CLEARTEXT_REFUSED, exit 1, before anything is sent): the token and the
 * collector key the agent pins would cross the network unprotected. Loopback ws:// and
 * wss:// need no flag.
 *
 * --root DIR: the agent reports and patches the system under DIR (an image, a test root)
 * instead of this machine's; instructions then run there through chroot.
 *
 * The token may come from PATCHWARDEN_ENROLL_TOKEN instead of --token, which keeps it out
 * of `ps` output and shell history. Exit codes: 0 enrolled; 1 refused or unreachable
 * (the error names the collector's code, e.g. PW_ERR_TOKEN_REFUSED); 2 usage.
 */
import { parseArgs } from 'node:util';
import { UsageError } from '../../shared/errors.ts';
import { DEFAULT_CONFIG_PATH } from '../daemon/config.ts';
import { enroll } from '../daemon/enroll.ts';

const OPTIONS = {
  collector: { type: 'string', multiple: true },
  token: { type: 'string' },
  config: { type: 'string', default: DEFAULT_CONFIG_PATH },
  'spool-dir': { type: 'string' },
  'ca-file': { type: 'string' },
  root: { type: 'string' },
  force: { type: 'boolean', default: false },
  'insecure-cleartext': { type: 'boolean', default: false },
} as const;

/**
 * A base64url token starts with '-' one time in 64 (older collectors handed such tokens out;
 * so may a script), and parseArgs refuses `--token -x…` as ambiguous. `--token` therefore
 * takes the next argument whatever it starts with, unless that argument is one of enroll's
 * own options, which means the operator left the token out.
 */
export function glueTokenValue(argv: readonly string[]): string[] {
  const own = new Set(Object.keys(OPTIONS).map((name) => `--${name}`));
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = argv[i + 1];
    if (arg === '--token' && next?.startsWith('-') === true && !own.has(next.replace(/=.*$/s, ''))) {
      out.push(`--token=${next}`);
      i++;
    } else if (arg !== undefined) {
      out.push(arg);
    }
  }
  return out;
}

export async function enrollCommand(argv: string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: glueTokenValue(argv), options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const token = values.token ?? process.env.PATCHWARDEN_ENROLL_TOKEN;
  const [first, ...more] = values.collector ?? [];
  if (first === undefined) throw new UsageError('enroll needs --collector URL (wss://collector:8443)');
  if (token === undefined || token === '') throw new UsageError('enroll needs --token T (or PATCHWARDEN_ENROLL_TOKEN)');
  const { config, configPath } = await enroll({
    collectorUrl: first,
    collectorUrls: more,
    token,
    configPath: values.config,
    force: values.force,
    insecureCleartext: values['insecure-cleartext'],
    warn: (m) => err.write(`${m}\n`),
    ...(values['spool-dir'] === undefined ? {} : { spoolDir: values['spool-dir'] }),
    ...(values['ca-file'] === undefined ? {} : { caFile: values['ca-file'] }),
    ...(values.root === undefined ? {} : { root: values.root }),
  });
  out.write(
    `enrolled as agent ${config.agentId} with ${config.collectorUrl}\n` +
      (config.collectorUrls === undefined ? '' : `also served by ${config.collectorUrls.join(', ')}\n`) +
      `config ${configPath}\nkey    ${config.keyFile} (mode 0600)\nspool  ${config.spoolDir}\n` +
      `pinned collector key ${config.collectorPublicKey}\n` +
      `start it: patchwarden-agent run --config ${configPath}\n`,
  );
  return 0;
}
