/**
 * One CSAF 2.0 document (`csaf_security_advisory` or `csaf_vex`) of the RHEL family ->
 * normalized Advisories. The stream model is read from the document itself:
 *
 * - `product_tree.branches`: `product_name` leaves carry a stream and its CPE
 *   (`cpe:/a:redhat:enterprise_linux:9::appstream`, `cpe:/a:redhat:rhel_eus:9.4::appstream`,
 *   `cpe:2.3:o:ciq:rocky_linux_from_ciq:9.4:…`); `product_version` leaves carry one rpm
 *   build (purl `pkg:rpm/redhat/NAME@V-R?arch=…&epoch=…&rpmmod=…`, or a NEVRA name
 *   `NAME-E:V-R.ARCH` when there is no purl, as in CIQ's documents).
 * - `relationships` of category `default_component_of` join a build to a stream; the
 *   product ids in `product_status` name those joins.
 *
 * Stream -> ecosystem, from the CPE: the vendor names the distribution (`redhat` ->
 * `Red Hat`, `ciq` -> `Rocky Linux`) and the CPE version the release. A CPE version that
 * is a major alone (`9`) is the mainline stream and maps to the agent's ecosystem
 * (`Red Hat:9`, `Rocky Linux:9`); one with a minor (`9.4`: EUS, AUS, E4S, CIQ's LTS
 * streams) maps to its own ecosystem (`Red Hat:9.4`). The agent reports the major alone
 * (os-release VERSION_ID 9.5 still gives `Red Hat:9`), and the minor release a host is
 * held at only from the files subscription-manager and dnf keep (host.releasePin): a
 * held host is judged by its stream first (collector/domain/correlate/match.ts releaseStream).
 *
 * Binary rpms are matched (the RHEL family's advisories name binary rpms, as OSV's do);
 * `src` builds are left out. All arches of one (stream, binary name, module stream) give
 * one fixed EVR: the highest, so no arch is judged fixed early.
 *
 * Status: `fixed`/`first_fixed` -> a range fixed at the build's EVR; `known_affected`,
 * `first_affected`, `last_affected` -> no fix (`unfixed`); a remediation
 * `no_fix_planned`/`none_available` on those says why, kept in the entry's `note`;
 * `known_not_affected` (with nothing else for that name) -> a not-affected entry;
 * `under_investigation` and `recommended` raise nothing.
 *
 * Module streams (`rpmmod=ruby:3.1:…`): the inventory does not say which module stream
 * is enabled, so a ruby:3.1 fix must not flag a ruby 2.5 build. When the stream's version
 * is a prefix of the fixed version (`3.1` of `3.1.4-142.module+el8…`) the range starts at
 * it (introduced `3.1`), so other streams' builds fall outside; otherwise from `0`.
 *
 * Vulnerabilities with the same outcome share one Advisory with the document's id
 * (`RHSA-2024:1431`) and their CVEs as aliases; when they differ, each group is its own
 * Advisory `<doc id>/<first CVE>`.
 */
import * as z from 'zod';
import { FeedFormatError, FeedUnsupportedError, InputTooLargeError } from '../../../shared/errors.ts';
import { PACKAGE_NAME, VERSION } from '../../../shared/protocol.ts';
import { compareVersions } from '../../../shared/versions/index.ts';
import { normalizeDateTime } from './dates.ts';
import { maxSeverity, severityFromScore, severityFromWord } from './severity.ts';
import { ADVISORY_ID, ADVISORY_LIMITS, CVE_ID, type Advisory, type AdvisoryRange, type AffectedPackage, type FeedReport, type Severity } from './types.ts';

export const CSAF_SOURCE = 'csaf';

/** Real documents: branches 3-4 deep, a few thousand builds (kernel), 50-150 CVEs. */
export const CSAF_LIMITS = Object.freeze({
  branchDepth: 16,
  branches: 200_000,
  relationships: 500_000,
  vulnerabilities: 10_000,
  productIds: 500_000,
  note: 1024,
});

const str = (max: number): z.ZodString => z.string().max(max);

const ProductSchema = z.looseObject({
  name: str(4096).optional(),
  product_id: str(4096),
  product_identification_helper: z.looseObject({ cpe: str(1024).optional(), purl: str(4096).optional() }).optional(),
});

const RelationshipSchema = z.looseObject({
  category: str(128),
  full_product_name: z.looseObject({ product_id: str(4096) }),
  product_reference: str(4096),
  relates_to_product_reference: str(4096),
});

const idList = z.array(str(4096)).max(CSAF_LIMITS.productIds).optional();

const VulnerabilitySchema = z.looseObject({
  cve: str(64).optional(),
  product_status: z
    .looseObject({
      fixed: idList,
      first_fixed: idList,
      known_affected: idList,
      first_affected: idList,
      last_affected: idList,
      known_not_affected: idList,
    })
    .optional(),
  remediations: z.array(z.looseObject({ category: str(128), details: str(64 * 1024).optional(), product_ids: idList })).max(10_000).optional(),
  threats: z.array(z.looseObject({ category: str(128), details: str(64 * 1024).optional() })).max(10_000).optional(),
  scores: z.array(z.looseObject({ cvss_v3: z.looseObject({ baseScore: z.number().optional(), baseSeverity: str(64).optional() }).optional() })).max(10_000).optional(),
});
type Vulnerability = z.infer<typeof VulnerabilitySchema>;

export const CsafDocumentSchema = z.looseObject({
  document: z.looseObject({
    category: str(128),
    csaf_version: z.literal('2.0'),
    title: str(64 * 1024).optional(),
    aggregate_severity: z.looseObject({ text: str(128) }).optional(),
    tracking: z.looseObject({ id: str(1024), initial_release_date: str(64).optional(), current_release_date: str(64).optional() }),
  }),
  product_tree: z.looseObject({
    branches: z.array(z.unknown()).max(CSAF_LIMITS.branches).optional(),
    relationships: z.array(RelationshipSchema).max(CSAF_LIMITS.relationships).optional(),
  }),
  vulnerabilities: z.array(VulnerabilitySchema).max(CSAF_LIMITS.vulnerabilities).optional(),
});

interface Stream {
  /** Null when the CPE is not a RHEL-family rpm distribution (OpenShift, middleware). */
  ecosystem: string | null;
  cpe: string;
}

interface Build {
  name: string;
  /** `E:V-R` with the epoch left out when it is 0. */
  evr: string;
  arch: string;
  /** `ruby:3.1`, from the purl's `rpmmod` or the `(ruby:3.1)` suffix of the name. */
  module: string | null;
}

const FIXED = ['fixed', 'first_fixed'] as const;
const AFFECTED = ['known_affected', 'first_affected', 'last_affected'] as const;
const WONT_FIX = new Set(['no_fix_planned', 'none_available']);
const SOURCE_ARCHES = new Set(['src', 'nosrc']);
/** The release's `el9` of `1.2-3.el9_4` or `…module+el8.9.0+…`. */
const DIST_TAG = /[.+]el(\d+)(?=[._+]|$)/;

function refuse(where: string, message: string): never {
  throw new FeedFormatError(`${where}: ${message}`);
}

/** The CPE's vendor, product and version, for CPE 2.2 URIs (`cpe:/a:v:p:ver`) and 2.3 strings. */
function cpeParts(cpe: string): { vendor: string; product: string; version: string } | null {
  const m = /^cpe:\/[aho]:([^:]+):([^:]+):?([^:]*)/.exec(cpe) ?? /^cpe:2\.3:[aho]:([^:]+):([^:]+):([^:]*)/.exec(cpe);
  if (m === null) return null;
  return { vendor: m[1] ?? '', product: m[2] ?? '', version: m[3] ?? '' };
}

const RED_HAT_PRODUCT = /^(enterprise_linux|rhel_(eus|aus|tus|e4s|els|eus_long_life))$/;
const CIQ_PRODUCT = /^rocky_linux(_from_ciq)?$/;

/** The Advisory ecosystem of a stream's CPE, or null for streams that are not a RHEL-family rpm distribution. */
export function ecosystemOfCpe(cpe: string): string | null {
  const p = cpeParts(cpe);
  if (p === null || !/^\d+(\.\d+)?$/.test(p.version)) return null;
  if (p.vendor === 'redhat' && RED_HAT_PRODUCT.test(p.product)) return `Red Hat:${p.version}`;
  if ((p.vendor === 'ciq' || p.vendor === 'rocky') && CIQ_PRODUCT.test(p.product)) return `Rocky Linux:${p.version}`;
  return null;
}

function evrOf(epoch: string, vr: string): string {
  return epoch === '' || epoch === '0' ? vr : `${epoch}:${vr}`;
}

/** `pkg:rpm/redhat/ruby@3.1.4-142.module%2Bel8?arch=x86_64&epoch=1&rpmmod=ruby:3.1:…` */
function buildOfPurl(purl: string): Build | null {
  const m = /^pkg:rpm\/[^/@?#]+\/([^@?#]+)@([^?#]+)(?:\?([^#]*))?/.exec(purl);
  if (m === null) return null;
  let name: string;
  let vr: string;
  try {
    name = decodeURIComponent(m[1] ?? '');
    vr = decodeURIComponent(m[2] ?? '');
  } catch {
    return null;
  }
  const q = new URLSearchParams(m[3] ?? '');
  const arch = q.get('arch') ?? '';
  const mod = /^([^:]+:[^:]+)/.exec(q.get('rpmmod') ?? '');
  return { name, evr: evrOf(q.get('epoch') ?? '', vr), arch, module: mod?.[1] ?? null };
}

/** `sqlite-0:3.34.1-7.el9_3.x86_64`, `ruby-2.5.9-111.module+el8.9.0+19193+435404ae.i686.rpm (ruby:2.5)`. */
function buildOfName(text: string): Build | null {
  const m = /^(.+?)-(?:(\d+):)?([^-:\s]+)-([^-\s]+)\.([A-Za-z0-9_]+?)(?:\.rpm)?(?: \(([^()\s]+)\))?$/.exec(text);
  if (m === null) return null;
  return { name: m[1] ?? '', evr: evrOf(m[2] ?? '', `${m[3] ?? ''}-${m[4] ?? ''}`), arch: m[5] ?? '', module: m[6] ?? null };
}

interface Tree {
  streams: Map<string, Stream>;
  builds: Map<string, Build>;
}

/** Walks `branches` with its own stack: a crafted 100,000-deep tree must not exhaust the call stack. */
function readTree(branches: readonly unknown[], where: string, report: FeedReport): Tree {
  const streams = new Map<string, Stream>();
  const builds = new Map<string, Build>();
  const stack: { node: unknown; depth: number }[] = branches.map((node) => ({ node, depth: 1 }));
  let seen = 0;
  while (stack.length > 0) {
    const { node, depth } = stack.pop() as { node: unknown; depth: number };
    if (++seen > CSAF_LIMITS.branches) throw new InputTooLargeError(`${where}: product_tree has more than ${CSAF_LIMITS.branches} branches`);
    if (depth > CSAF_LIMITS.branchDepth) throw new InputTooLargeError(`${where}: product_tree branches nest deeper than ${CSAF_LIMITS.branchDepth}`);
    if (typeof node !== 'object' || node === null || Array.isArray(node)) refuse(where, 'a product_tree branch is not an object');
    const b = node as Record<string, unknown>;
    if (typeof b.category !== 'string') refuse(where, 'a product_tree branch has no category');
    if (b.branches !== undefined) {
      if (!Array.isArray(b.branches)) refuse(where, 'product_tree branches is not an array');
      for (const child of b.branches as unknown[]) stack.push({ node: child, depth: depth + 1 });
    }
    if (b.product === undefined) continue;
    const parsed = ProductSchema.safeParse(b.product);
    if (!parsed.success) refuse(where, `product_tree product: ${parsed.error.issues[0]?.message ?? 'not a product'}`);
    const p = parsed.data;
    const helper = p.product_identification_helper;
    if (b.category === 'product_version') {
      const build = (helper?.purl === undefined ? null : buildOfPurl(helper.purl)) ?? buildOfName(p.name ?? p.product_id);
      if (build === null) report.count('products not an rpm build');
      else builds.set(p.product_id, build);
    } else if (helper?.cpe !== undefined) {
      streams.set(p.product_id, { ecosystem: ecosystemOfCpe(helper.cpe), cpe: helper.cpe });
    }
  }
  return { streams, builds };
}

interface Component {
  ecosystem: string;
  build: Build;
}

interface Outcome {
  fixed: Map<string, string>;
  unfixed: Set<string>;
  notes: Map<string, string>;
  notAffected: boolean;
}

function moduleIntroduced(module: string | null, fixed: string | null): string {
  if (module === null) return '0';
  const stream = module.slice(module.indexOf(':') + 1);
  if (!/^\d+(\.\d+)*$/.test(stream)) return '0';
  if (fixed !== null && !(fixed.replace(/^\d+:/, '').startsWith(`${stream}.`) || fixed.replace(/^\d+:/, '').startsWith(`${stream}-`))) return '0';
  return stream;
}

function cleanNote(text: string): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > CSAF_LIMITS.note ? `${one.slice(0, CSAF_LIMITS.note - 1)}…` : one;
}

/** One vulnerability's statuses as AffectedPackage entries, sorted by ecosystem then name. */
function affectedOf(v: Vulnerability, components: ReadonlyMap<string, Component>, where: string, report: FeedReport): AffectedPackage[] {
  const byName = new Map<string, Outcome>();
  const outcome = (c: Component): Outcome => {
    const key = `${c.ecosystem}\u0000${c.build.name}`;
    let o = byName.get(key);
    if (o === undefined) {
      o = { fixed: new Map(), unfixed: new Set(), notes: new Map(), notAffected: false };
      byName.set(key, o);
    }
    return o;
  };
  const resolve = (id: string): Component | null => {
    const c = components.get(id);
    if (c === undefined) {
      report.count('product ids without a RHEL-family rpm component');
      return null;
    }
    if (SOURCE_ARCHES.has(c.build.arch)) return null;
    // CIQ's rlc-8 stream also lists the el9 builds of the same fix: an el9 EVR sorts above
    // el8's and would keep a fixed el8 host flagged.
    const tag = DIST_TAG.exec(c.build.evr)?.[1];
    if (tag !== undefined && tag !== c.ecosystem.replace(/^[^:]*:(\d+).*$/, '$1')) {
      report.count('builds of another release (dist tag) ignored');
      return null;
    }
    return c;
  };
  const status = v.product_status ?? {};
  for (const kind of FIXED) {
    for (const id of status[kind] ?? []) {
      const c = resolve(id);
      if (c === null) continue;
      const o = outcome(c);
      const mod = c.build.module ?? '';
      const prev = o.fixed.get(mod);
      if (prev === undefined) o.fixed.set(mod, c.build.evr);
      else if (prev !== c.build.evr) {
        report.count('arch builds with differing fixed versions');
        if (compareVersions('rpm', c.build.evr, prev) > 0) o.fixed.set(mod, c.build.evr);
      }
    }
  }
  const wontFix = new Map<string, string>();
  for (const r of v.remediations ?? []) {
    if (!WONT_FIX.has(r.category)) continue;
    const why = cleanNote(`${r.category === 'no_fix_planned' ? 'no fix planned' : 'no fix available'}${r.details === undefined || r.details.trim() === '' ? '' : `: ${r.details}`}`);
    for (const id of r.product_ids ?? []) wontFix.set(id, why);
  }
  for (const kind of AFFECTED) {
    for (const id of status[kind] ?? []) {
      const c = resolve(id);
      if (c === null) continue;
      const o = outcome(c);
      const mod = c.build.module ?? '';
      o.unfixed.add(mod);
      const why = wontFix.get(id);
      if (why !== undefined) o.notes.set(mod, why);
    }
  }
  for (const id of status.known_not_affected ?? []) {
    const c = resolve(id);
    if (c !== null) outcome(c).notAffected = true;
  }

  const out: AffectedPackage[] = [];
  for (const [key, o] of [...byName].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const [ecosystem = '', name = ''] = key.split('\u0000');
    if (name.length > ADVISORY_LIMITS.name || !PACKAGE_NAME.test(name)) {
      report.warn(`${where} ${ecosystem}/${name.slice(0, 64)}`, new FeedFormatError('package name is not an rpm name; entry skipped'));
      continue;
    }
    const ranges: AdvisoryRange[] = [];
    const notes: string[] = [];
    for (const [mod, fixed] of o.fixed) ranges.push({ introduced: moduleIntroduced(mod || null, fixed), fixed, lastAffected: null });
    for (const mod of o.unfixed) {
      if (o.fixed.has(mod)) {
        report.count('builds both fixed and affected (fixed kept)');
        continue;
      }
      ranges.push({ introduced: moduleIntroduced(mod || null, null), fixed: null, lastAffected: null });
      const note = o.notes.get(mod);
      if (note !== undefined) notes.push(note);
    }
    const bad = ranges.flatMap((r) => [r.introduced, r.fixed]).find((x) => x !== null && (x.length > ADVISORY_LIMITS.version || !VERSION.test(x)));
    if (bad !== undefined && bad !== null) {
      report.warn(`${where} ${ecosystem}/${name}`, new FeedFormatError(`version ${JSON.stringify(bad.slice(0, 64))} is not an rpm version; entry skipped`));
      continue;
    }
    if (ranges.length > 0) {
      const entry: AffectedPackage = { ecosystem, package: name, ranges, versions: [], notAffected: false };
      if (notes.length > 0) entry.note = cleanNote([...new Set(notes)].join('; '));
      out.push(entry);
    } else if (o.notAffected) {
      out.push({ ecosystem, package: name, ranges: [], versions: [], notAffected: true });
    }
  }
  return out;
}

function severityOfVulnerability(v: Vulnerability): Severity {
  let word: Severity = 'unknown';
  for (const t of v.threats ?? []) if (t.category === 'impact' && t.details !== undefined) word = maxSeverity(word, severityFromWord(t.details) ?? 'unknown');
  if (word !== 'unknown') return word;
  let cvss: Severity = 'unknown';
  for (const s of v.scores ?? []) {
    const c = s.cvss_v3;
    if (c?.baseScore !== undefined && Number.isFinite(c.baseScore) && c.baseScore >= 0 && c.baseScore <= 10) cvss = maxSeverity(cvss, severityFromScore(c.baseScore));
    else if (c?.baseSeverity !== undefined) cvss = maxSeverity(cvss, severityFromWord(c.baseSeverity) ?? 'unknown');
  }
  return cvss;
}

function date(where: string, field: string, value: string | undefined): string | null {
  if (value === undefined) return null;
  const iso = normalizeDateTime(value);
  if (iso === null) refuse(where, `${field} ${JSON.stringify(value.slice(0, 64))} is not an RFC 3339 date`);
  return iso;
}

/**
 * Parses one CSAF document. Throws FeedFormatError (wrong types, no product_tree, not
 * CSAF 2.0) or InputTooLargeError (over a CSAF_LIMITS bound) when the document is
 * refused; skipped entries are warnings and counts in `report`.
 */
export function parseCsaf(record: unknown, report: FeedReport, where = 'csaf document'): Advisory[] {
  const parsed = CsafDocumentSchema.safeParse(record);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.map(String).join('.') ?? '';
    const message = `${path === '' ? '(document)' : path}: ${issue?.message ?? 'not a CSAF document'}`;
    if (issue?.code === 'too_big') throw new InputTooLargeError(`${where}: ${message}`);
    refuse(where, message);
  }
  const d = parsed.data;
  const trackingId = d.document.tracking.id;
  if (trackingId.length > ADVISORY_LIMITS.id - 40 || !ADVISORY_ID.test(trackingId)) refuse(where, `tracking.id ${JSON.stringify(trackingId.slice(0, 64))} is not a valid advisory id`);
  const at = `${where} ${trackingId}`;
  if (d.document.category !== 'csaf_security_advisory' && d.document.category !== 'csaf_vex') {
    throw new FeedUnsupportedError(`${at}: document category ${JSON.stringify(d.document.category.slice(0, 64))} carries no product status`);
  }
  const published = date(at, 'initial_release_date', d.document.tracking.initial_release_date);
  const modified = date(at, 'current_release_date', d.document.tracking.current_release_date);

  const tree = readTree(d.product_tree.branches ?? [], at, report);
  const components = new Map<string, Component>();
  for (const r of d.product_tree.relationships ?? []) {
    if (r.category !== 'default_component_of') {
      report.count(`relationships ${r.category.slice(0, 64)} ignored`);
      continue;
    }
    const stream = tree.streams.get(r.relates_to_product_reference);
    const build = tree.builds.get(r.product_reference);
    if (stream === undefined || build === undefined) {
      report.count('relationships naming no stream or build');
      continue;
    }
    if (stream.ecosystem === null) {
      report.count('components of streams that are not RHEL-family rpm distributions');
      continue;
    }
    components.set(r.full_product_name.product_id, { ecosystem: stream.ecosystem, build });
  }
  if (components.size === 0) throw new FeedUnsupportedError(`${at}: no rpm build of a RHEL-family stream in the product tree`);

  // Group vulnerabilities by outcome: most documents fix every CVE in the same builds.
  const groups = new Map<string, { cves: string[]; severity: Severity; affected: AffectedPackage[] }>();
  for (const v of d.vulnerabilities ?? []) {
    const affected = affectedOf(v, components, at, report);
    const key = JSON.stringify(affected);
    let g = groups.get(key);
    if (g === undefined) {
      g = { cves: [], severity: 'unknown', affected };
      groups.set(key, g);
    }
    if (v.cve !== undefined && CVE_ID.test(v.cve)) g.cves.push(v.cve);
    g.severity = maxSeverity(g.severity, severityOfVulnerability(v));
  }
  const aggregate = d.document.aggregate_severity === undefined ? null : severityFromWord(d.document.aggregate_severity.text);
  const title = d.document.title === undefined || d.document.title.trim() === '' ? null : d.document.title.slice(0, ADVISORY_LIMITS.summary);
  const list = [...groups.values()].filter((g) => g.affected.length > 0);
  if (list.length === 0) throw new FeedUnsupportedError(`${at}: no vulnerability has a status for a RHEL-family binary rpm`);
  return list.map((g, i) => {
    const cves = [...new Set(g.cves)].sort();
    const id = list.length === 1 ? trackingId : `${trackingId}/${cves[0] ?? `${i + 1}`}`;
    return {
      source: CSAF_SOURCE,
      id,
      aliases: cves.slice(0, ADVISORY_LIMITS.aliases),
      summary: title,
      severity: g.severity === 'unknown' ? (aggregate ?? 'unknown') : g.severity,
      published,
      modified,
      affected: g.affected,
      withdrawn: null,
    };
  });
}

/**
 * parseCsaf for the import loop, which goes on past FeedFormatError only: a document
 * refused for its size or for naming no RHEL-family product is a warning with its own
 * code (PW_ERR_INPUT_TOO_LARGE, PW_ERR_FEED_UNSUPPORTED), the rest of a directory goes on,
 * and a path where every document is refused is refused with that code.
 */
export function parseCsafRecord(record: unknown, report: FeedReport, where: string): Advisory[] {
  try {
    return parseCsaf(record, report, where);
  } catch (err) {
    if (!(err instanceof InputTooLargeError || err instanceof FeedUnsupportedError)) throw err;
    report.warn(where, err);
    report.count('records refused');
    return [];
  }
}
