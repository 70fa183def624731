/**
 * The built-in catalogue of official upstream feeds, and the choice of which of them a
 * fleet needs. The ecosystems listed per entry are for that choice only: which hosts a
 * loaded feed really covers is decided from its data (collector/domain/correlate/coverage.ts).
 *
 * Every URL is https. A config may point an upstream (`bases`) or one entry (`sources`) at
 * an internal mirror; only a source marked `mirror: true` may be plain http
 * (PW_ERR_FEED_URL otherwise), because a feed decides what every host is told to patch and
 * a plain-http upstream can be rewritten by anyone on the path.
 */
import { PatchwardenError } from '../../../shared/errors.ts';
import { ecosystemFamily } from '../../../shared/ecosystem.ts';
import type { FeedSource } from './sync.ts';

export type Upstream = 'osv' | 'debianTracker' | 'alpineSecdb' | 'kev' | 'epss';

export const UPSTREAM_BASES: Readonly<Record<Upstream, string>> = {
  osv: 'https://osv-vulnerabilities.storage.googleapis.com',
  debianTracker: 'https://security-tracker.debian.org',
  alpineSecdb: 'https://secdb.alpinelinux.org',
  kev: 'https://www.cisa.gov',
  // FIRST's data and statistics page links its daily file here (https://www.first.org/epss/data_stats).
  epss: 'https://epss.empiricalsecurity.com',
};

/**
 * Points every upstream at `<value>/<upstream>/` on one server (a lab mirror, or the tests'
 * server on 127.0.0.1), as a mirror: plain http allowed.
 */
export const CATALOGUE_BASE_ENV = 'PW_FEED_CATALOGUE_BASE';

export interface CatalogueEntry {
  name: string;
  upstream: Upstream;
  /** The path under the upstream's base. */
  path: string;
  format: string;
  licence: string;
  /** OSV ecosystem families (`Debian`, `Rocky Linux`), or `*` for every fleet (KEV, EPSS). */
  ecosystems: readonly string[];
}

/** osv.dev's per-ecosystem export folders (`<Ecosystem>/all.zip`), as the ecosystem is named in OSV. */
const OSV_ECOSYSTEMS: readonly (readonly [string, string])[] = [
  ['Debian', 'osv-debian'],
  ['Ubuntu', 'osv-ubuntu'],
  ['AlmaLinux', 'osv-almalinux'],
  ['Rocky Linux', 'osv-rocky-linux'],
  ['Alpine', 'osv-alpine'],
  ['SUSE', 'osv-suse'],
  ['openSUSE', 'osv-opensuse'],
  ['Red Hat', 'osv-red-hat'],
];

/** Alpine secdb is one file per release and repository: the fleet's releases pick them. */
const ALPINE_REPOS = ['main', 'community'] as const;

export const CATALOGUE: readonly CatalogueEntry[] = [
  ...OSV_ECOSYSTEMS.map(([eco, name]) => ({
    name,
    upstream: 'osv' as const,
    path: `/${encodeURIComponent(eco)}/all.zip`,
    format: 'OSV JSON (zip of one record per file)',
    licence: 'CC-BY-4.0 (osv.dev); each record keeps its publisher’s terms',
    ecosystems: [eco],
  })),
  {
    name: 'debian-tracker',
    upstream: 'debianTracker',
    path: '/tracker/data/json',
    format: 'Debian security tracker JSON',
    licence: 'none stated (public Debian project data)',
    ecosystems: ['Debian'],
  },
  {
    name: 'cisa-kev',
    upstream: 'kev',
    path: '/sites/default/files/feeds/known_exploited_vulnerabilities.json',
    format: 'CISA KEV JSON',
    licence: 'CC0-1.0',
    ecosystems: ['*'],
  },
  {
    name: 'first-epss',
    upstream: 'epss',
    path: '/epss_scores-current.csv.gz',
    format: 'FIRST EPSS CSV (gzip), every scored CVE',
    licence: 'FIRST EPSS terms (free to use; FIRST asks that EPSS be cited)',
    ecosystems: ['*'],
  },
];

export const ALPINE_SECDB_LICENCE = 'Alpine Linux secdb (public; respect Alpine’s terms)';

/** `Alpine:v3.21` -> the secdb entries of v3.21 (main, community); anything else -> none. */
export function alpineSecdbEntries(ecosystem: string): CatalogueEntry[] {
  const m = /^Alpine:(v\d+\.\d+|edge)$/.exec(ecosystem);
  if (m === null) return [];
  const rel = m[1] as string;
  return ALPINE_REPOS.map((repo) => ({
    name: `alpine-secdb-${rel}-${repo}`,
    upstream: 'alpineSecdb' as const,
    path: `/${rel}/${repo}.json`,
    format: 'Alpine secdb JSON',
    licence: ALPINE_SECDB_LICENCE,
    ecosystems: [ecosystem],
  }));
}

export interface UrlOverride {
  url: string;
  mirror?: boolean | undefined;
}

export interface CatalogueConfig {
  /** false: the catalogue adds nothing; only the config's own feeds are synced. */
  enabled: boolean;
  bases?: Partial<Record<Upstream, UrlOverride>> | undefined;
  /** Per entry name: another URL (a mirror), or `disabled: true`. */
  sources?: Readonly<Record<string, { url?: string | undefined; mirror?: boolean | undefined; disabled?: boolean | undefined }>> | undefined;
}

export interface SelectedSource extends FeedSource {
  mirror: boolean;
  /** The catalogue entry, or null for a source the config added. */
  entry: CatalogueEntry | null;
}

export class FeedUrlError extends PatchwardenError {
  constructor(message: string) {
    super(message, 'PW_ERR_FEED_URL');
  }
}

/** The one URL rule: https, or http for a source marked as a mirror; nothing else, no user info. */
export function checkFeedUrl(url: string, mirror: boolean, what: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FeedUrlError(`${what}: ${JSON.stringify(url.slice(0, 200))} is not a URL`);
  }
  if (u.protocol === 'https:') return url;
  if (u.protocol === 'http:' && mirror) return url;
  if (u.protocol === 'http:') throw new FeedUrlError(`${what}: ${u.protocol}//${u.host} is plain http: feeds come over https, or mark the source as an internal mirror with "mirror": true`);
  throw new FeedUrlError(`${what}: ${u.protocol} is not a feed scheme (https, or http for a mirror)`);
}

/** The catalogue entries the fleet's ecosystems need (`Debian:12`, `Alpine:v3.21`), KEV and EPSS always; in catalogue order. */
export function entriesFor(ecosystems: Iterable<string>): CatalogueEntry[] {
  const families = new Set<string>();
  const alpine: CatalogueEntry[] = [];
  const seen = new Set<string>();
  for (const eco of [...ecosystems].sort()) {
    families.add(ecosystemFamily(eco));
    for (const e of alpineSecdbEntries(eco)) {
      if (seen.has(e.name)) continue;
      seen.add(e.name);
      alpine.push(e);
    }
  }
  return [...CATALOGUE.filter((e) => e.ecosystems.includes('*') || e.ecosystems.some((f) => families.has(f))), ...alpine];
}

function baseFor(upstream: Upstream, config: CatalogueConfig, env: NodeJS.ProcessEnv): UrlOverride {
  const own = config.bases?.[upstream];
  if (own !== undefined) return own;
  const lab = env[CATALOGUE_BASE_ENV];
  if (lab !== undefined && lab !== '') return { url: `${lab.replace(/\/+$/, '')}/${upstream}`, mirror: true };
  return { url: UPSTREAM_BASES[upstream], mirror: false };
}

/**
 * What `feed sync` and the scheduled sync fetch: the config's own feeds, then the
 * catalogue entries for the fleet's ecosystems (unless disabled), each URL checked.
 * A config feed with a catalogue entry's name replaces that entry.
 */
export function selectSources(
  ecosystems: Iterable<string>,
  config: { feeds: readonly (FeedSource & { mirror?: boolean | undefined })[]; catalogue: CatalogueConfig },
  env: NodeJS.ProcessEnv = process.env,
): SelectedSource[] {
  const out: SelectedSource[] = [];
  const taken = new Set<string>();
  for (const f of config.feeds) {
    const mirror = f.mirror ?? false;
    out.push({ ...f, url: checkFeedUrl(f.url, mirror, `feed ${f.name}`), mirror, entry: null });
    taken.add(f.name);
  }
  if (!config.catalogue.enabled) return out;
  for (const entry of entriesFor(ecosystems)) {
    if (taken.has(entry.name)) continue;
    const own = config.catalogue.sources?.[entry.name];
    if (own?.disabled === true) continue;
    const base = baseFor(entry.upstream, config.catalogue, env);
    const url = own?.url ?? `${base.url.replace(/\/+$/, '')}${entry.path}`;
    const mirror = own?.url === undefined ? (base.mirror ?? false) : (own.mirror ?? false);
    out.push({ name: entry.name, url: checkFeedUrl(url, mirror, `catalogue entry ${entry.name}`), mirror, entry });
  }
  return out;
}
