/**
 * The minor release a RHEL-family host's package manager is held at: an EUS/AUS/E4S host
 * (`subscription-manager release --set=9.4`) or one on a rebuild's long-term stream (CIQ's
 * Rocky Linux LTS, dnf's `releasever` variable) takes its updates from that release's
 * stream, not from mainline, and the collector judges it by that stream's advisories
 * (collector/domain/correlate/match.ts). Without a pin the host follows mainline.
 *
 * Read from the files those tools keep, never guessed from VERSION_ID: a 9.4 host that is
 * not pinned moves to 9.5 with its next update, and judging it by the 9.4 stream's older
 * fixed builds would pass it as clean when mainline has newer fixes it lacks.
 */
import { errorMessage } from '../../shared/errors.ts';
import type { OsInfo } from '../../shared/protocol.ts';
import { type InventoryContext, readRootFile } from './context.ts';

const SOURCE = 'release-pin';
/** Both files hold a few bytes; anything near this is not what we think. */
const MAX_BYTES = 4096;
/** The families whose vendors publish minor-release streams (RHEL EUS, CIQ LTS), and their rebuilds. */
const RHEL_FAMILY = new Set(['rhel', 'rocky', 'almalinux', 'centos', 'ol']);
const PIN = /^(\d+)\.(\d+)$/;

/** `subscription-manager release --set` keeps `{"releaseVer": "9.4"}` here. */
export const RHSM_RELEASE_FILE = '/var/lib/rhsm/cache/releasever.json';
/** dnf's variable file: `releasever` set by hand or by a vendor's LTS tooling overrides the release dnf derives. */
export const DNF_RELEASEVER_FILE = '/etc/dnf/vars/releasever';

export function parseRhsmRelease(text: string): string | null {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return null;
  const v = (doc as Record<string, unknown>).releaseVer;
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : null;
}

export function parseDnfReleasever(text: string): string | null {
  const v = text.trim();
  return v === '' ? null : v;
}

/**
 * The pinned `MAJOR.MINOR`, or null. A value that is not `MAJOR.MINOR` of the host's own
 * major (`9` alone, `8.10` on a 9 host, `$releasever`, a file too large) is warned about
 * and ignored: the host is then judged by mainline, which can only over-report.
 */
export async function readReleasePin(ctx: InventoryContext, os: OsInfo): Promise<string | null> {
  if (os.id === null || !RHEL_FAMILY.has(os.id)) return null;
  const major = /^(\d+)/.exec(os.versionId ?? '')?.[1];
  if (major === undefined) return null;
  for (const [path, parse] of [
    [RHSM_RELEASE_FILE, parseRhsmRelease],
    [DNF_RELEASEVER_FILE, parseDnfReleasever],
  ] as const) {
    let raw: Buffer | null;
    try {
      raw = await readRootFile(ctx, path, MAX_BYTES);
    } catch (err) {
      ctx.warn({ source: SOURCE, code: 'PW_WARN_RELEASE_PIN', message: `${path}: ${errorMessage(err)}` });
      continue;
    }
    if (raw === null) continue;
    const value = parse(raw.toString('utf8'));
    if (value === null) continue;
    const m = PIN.exec(value);
    if (m === null || m[1] !== major) {
      ctx.warn({
        source: SOURCE,
        code: 'PW_WARN_RELEASE_PIN',
        message: `${path} holds ${JSON.stringify(value.slice(0, 64))}, not a ${major}.N release of this host: judged by mainline`,
      });
      continue;
    }
    return value;
  }
  return null;
}
