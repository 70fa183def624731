/**
 * The distribution, from os-release(5): /etc/os-release, falling back to
 * /usr/lib/os-release, mapped to OSV's ecosystem names. An unknown distribution yields
 * `ecosystem: null` and a warning: a guess would raise findings from the wrong feed.
 */
import type { OsInfo } from '../../shared/protocol.ts';
import { errorMessage } from '../../shared/errors.ts';
import { type InventoryContext, readRootFile } from './context.ts';

const MAX_OS_RELEASE_BYTES = 64 * 1024;

/**
 * os-release is a shell-compatible assignment list: values may be bare, or in single or
 * double quotes with backslash escapes of `$ " \ \``. It is never evaluated here.
 */
export function parseOsRelease(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    if (!/^[A-Z0-9_]+$/.test(key)) continue;
    let value = line.slice(eq + 1);
    const q = value[0];
    if ((q === '"' || q === "'") && value.length >= 2 && value.endsWith(q)) {
      value = value.slice(1, -1);
      if (q === '"') value = value.replace(/\\([$"\\`])/g, '$1');
    }
    out.set(key, value);
  }
  return out;
}

function major(versionId: string | null): string | null {
  const m = versionId === null ? null : /^(\d+)/.exec(versionId);
  return m?.[1] ?? null;
}

/**
 * OSV ecosystem names (https://ossf.github.io/osv-schema/#affectedpackage-field):
 * `Debian:12`, `Ubuntu:24.04` (`:LTS` for LTS releases), `AlmaLinux:9`, `Rocky Linux:9`,
 * `Red Hat:9`, `Alpine:v3.21`, `SUSE:Linux Enterprise Server 15 SP5`, `openSUSE:Leap 15.5`.
 */
export function ecosystemFor(os: OsInfo, fields: ReadonlyMap<string, string>): string | null {
  const v = os.versionId;
  switch (os.id) {
    case 'debian':
      return major(v) === null ? null : `Debian:${major(v) ?? ''}`;
    case 'ubuntu': {
      if (v === null || !/^\d+\.\d+$/.test(v)) return null;
      const lts = /\bLTS\b/.test(fields.get('VERSION') ?? '') || /\bLTS\b/.test(os.prettyName ?? '');
      return lts ? `Ubuntu:${v}:LTS` : `Ubuntu:${v}`;
    }
    case 'almalinux':
      return major(v) === null ? null : `AlmaLinux:${major(v) ?? ''}`;
    case 'rocky':
      return major(v) === null ? null : `Rocky Linux:${major(v) ?? ''}`;
    case 'rhel':
      return major(v) === null ? null : `Red Hat:${major(v) ?? ''}`;
    case 'alpine': {
      const m = v === null ? null : /^(\d+)\.(\d+)/.exec(v);
      // Alpine edge reports VERSION_ID like 3.22.0_alpha20250108: that is not a release.
      if (m === null || (v ?? '').includes('_')) return null;
      return `Alpine:v${m[1] ?? ''}.${m[2] ?? ''}`;
    }
    case 'sles':
    case 'sled': {
      const m = v === null ? null : /^(\d+)(?:\.(\d+))?$/.exec(v);
      if (m === null) return null;
      const product = os.id === 'sles' ? 'Linux Enterprise Server' : 'Linux Enterprise Desktop';
      const sp = m[2] !== undefined && m[2] !== '0' ? ` SP${m[2]}` : '';
      return `SUSE:${product} ${m[1] ?? ''}${sp}`;
    }
    case 'opensuse-leap':
      return v === null ? null : `openSUSE:Leap ${v}`;
    default:
      return null;
  }
}

export interface OsReleaseResult {
  os: OsInfo;
  ecosystem: string | null;
}

const UNKNOWN_OS: OsInfo = { id: null, idLike: [], versionId: null, codename: null, prettyName: null };

export async function readOsRelease(ctx: InventoryContext): Promise<OsReleaseResult> {
  let text: string | null = null;
  for (const path of ['/etc/os-release', '/usr/lib/os-release']) {
    try {
      const buf = await readRootFile(ctx, path, MAX_OS_RELEASE_BYTES);
      if (buf !== null) {
        text = buf.toString('utf8');
        break;
      }
    } catch (err) {
      ctx.warn({ source: 'os-release', code: 'PW_WARN_OS_RELEASE_UNREADABLE', message: errorMessage(err) });
    }
  }
  if (text === null) {
    ctx.warn({ source: 'os-release', code: 'PW_WARN_UNKNOWN_OS', message: 'no readable /etc/os-release or /usr/lib/os-release' });
    return { os: UNKNOWN_OS, ecosystem: null };
  }
  const f = parseOsRelease(text);
  const clip = (s: string | undefined): string | null => (s === undefined || s === '' ? null : s.slice(0, 256));
  const os: OsInfo = {
    id: clip(f.get('ID')?.toLowerCase()),
    idLike: (f.get('ID_LIKE') ?? '').split(/\s+/).filter((s) => s !== '').slice(0, 32).map((s) => s.slice(0, 256)),
    versionId: clip(f.get('VERSION_ID')),
    codename: clip(f.get('VERSION_CODENAME') ?? f.get('UBUNTU_CODENAME')),
    prettyName: clip(f.get('PRETTY_NAME')),
  };
  const ecosystem = ecosystemFor(os, f);
  if (ecosystem === null) {
    ctx.warn({
      source: 'os-release',
      code: 'PW_WARN_UNKNOWN_OS',
      message: `no advisory ecosystem for ID=${os.id ?? '(none)'} VERSION_ID=${os.versionId ?? '(none)'}: packages are listed but no findings can be raised`,
    });
  }
  return { os, ecosystem };
}
