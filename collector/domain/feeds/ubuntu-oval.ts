/**
 * Canonical's USN OVAL (`com.ubuntu.<codename>.usn.oval.xml`) -> normalized advisories.
 * The file is one XML document (read by xml.ts, which refuses DOCTYPEs, entities, deep
 * nesting and huge nodes); its definitions are resolved through their tests, objects,
 * states and variables. Three shapes are read, each as Canonical writes it:
 *
 * - LSN (Kernel Live Patch Security Notice): file_test(/snap/bin/canonical-livepatch) AND
 *   textfilecontent54_test(/proc/modules, module patterns, subexpression less than N):
 *   vulnerable while a loaded livepatch module has a patch level below N. It becomes an
 *   advisory with no affected entry and a `livepatch` fix (patterns, N): it raises no
 *   finding itself, it marks the running kernel's findings of its CVEs mitigated-livepatch
 *   on a host whose Canonical Livepatch has such a module at level >= N.
 * - Kernel USN: uname_test(os_release pattern match `6.8.0-\d+(-aws|-gcp)`) AND
 *   variable_test(uname's ABI version less than `0:6.8.0-NN`): one affected entry per
 *   flavour, keyed `uname_6.8.0-aws` (see correlate/ubuntu-kernel.ts for why).
 * - Package USN: dpkginfo_test(BINARY package names, evr less than `0:3.0.13-0ubuntu3.2`):
 *   one affected entry per binary name, marked `binary: true`. The collector keys other deb
 *   advisories by source package; these are matched against each installed binary's own
 *   version, one finding per (advisory, source package) naming the affected binaries
 *   (correlate/match.ts matchBinaries).
 *
 * Anything else in a definition (negated criteria, other test kinds, operations other
 * than the ones above, a module pattern outside livepatch-pattern.ts's grammar) drops that
 * branch with a PW_ERR_FEED_UNSUPPORTED warning: never read as "affected", never as "fixed".
 */
import { FeedFormatError, FeedUnsupportedError } from '../../../shared/errors.ts';
import { unameUnitName } from '../correlate/ubuntu-kernel.ts';
import { compileModulePattern } from './livepatch-pattern.ts';
import { severityFromWord } from './severity.ts';
import { type Advisory, ADVISORY_LIMITS, type AffectedPackage, CVE_ID, type FeedReport, type LivepatchFix, type Severity } from './types.ts';
import { child, children, parseXml, type XmlElement } from './xml.ts';
import { PACKAGE_NAME, VERSION } from '../../../shared/protocol.ts';
import { compareVersions } from '../../../shared/versions/index.ts';

export const SOURCE = 'ubuntu-oval';

/** OR branches one definition may expand to: real ones have a few dozen flavours at most. */
const MAX_BRANCHES = 10_000;
const LIVEPATCH_BINARY = '/snap/bin/canonical-livepatch';

/** A text starts like an XML document (after a BOM and blank space). */
export function looksLikeXml(text: string): boolean {
  const head = text.replace(/^\ufeff/, '').trimStart().slice(0, 64);
  return head.startsWith('<?xml') || head.startsWith('<oval_definitions');
}

interface Doc {
  name: string;
  byId: Map<string, XmlElement>;
  report: FeedReport;
}

/** `Check that Ubuntu 24.04 LTS (noble) is installed.` -> `Ubuntu:24.04:LTS`, as agent/inventory/os-release.ts names it. */
function ecosystemOf(root: XmlElement, name: string): string {
  const defs = child(root, 'definitions');
  for (const d of defs === undefined ? [] : children(defs, 'definition')) {
    if (d.attrs.class !== 'inventory') continue;
    const title = child(child(d, 'metadata') ?? d, 'title')?.text ?? '';
    const m = /\bUbuntu (\d{2}\.\d{2})( LTS)?\b/.exec(title);
    if (m !== null) return m[2] === undefined ? `Ubuntu:${m[1]}` : `Ubuntu:${m[1]}:LTS`;
  }
  throw new FeedFormatError(`${name}: no inventory definition names the Ubuntu release ("Check that Ubuntu NN.NN ... is installed")`);
}

/** Criteria as OR of AND groups of test ids (DNF); null when something cannot be read (negation, an unknown operator). */
function branches(c: XmlElement, out: { why: string | null }): string[][] | null {
  if (c.attrs.negate === 'true') {
    out.why = 'negated criteria';
    return null;
  }
  if (c.name === 'criterion') {
    const ref = c.attrs.test_ref;
    if (ref === undefined) {
      out.why = 'a criterion without test_ref';
      return null;
    }
    return [[ref]];
  }
  const op = (c.attrs.operator ?? 'AND').toUpperCase();
  const parts: string[][][] = [];
  for (const x of c.children) {
    // The inventory check ("Ubuntu 24.04 is installed") is what the ecosystem says already.
    if (x.name === 'extend_definition') continue;
    if (x.name !== 'criteria' && x.name !== 'criterion') continue;
    const b = branches(x, out);
    if (b === null) return null;
    parts.push(b);
  }
  if (op === 'OR') {
    const all = parts.flat();
    if (all.length > MAX_BRANCHES) {
      out.why = `more than ${MAX_BRANCHES} branches`;
      return null;
    }
    return all;
  }
  if (op !== 'AND') {
    out.why = `criteria operator ${op.slice(0, 20)}`;
    return null;
  }
  let acc: string[][] = [[]];
  for (const p of parts) {
    const next: string[][] = [];
    for (const a of acc) for (const b of p) next.push([...a, ...b]);
    if (next.length > MAX_BRANCHES) {
      out.why = `more than ${MAX_BRANCHES} branches`;
      return null;
    }
    acc = next;
  }
  return acc;
}

function ref(doc: Doc, el: XmlElement | undefined, attr: string): XmlElement | undefined {
  const id = el?.attrs[attr];
  return id === undefined ? undefined : doc.byId.get(id);
}

/** A test's object and state elements. */
function parts(doc: Doc, test: XmlElement): { object: XmlElement | undefined; state: XmlElement | undefined } {
  return { object: ref(doc, child(test, 'object'), 'object_ref'), state: ref(doc, child(test, 'state'), 'state_ref') };
}

/** The values of a constant_variable a field names through var_ref. */
function constantValues(doc: Doc, field: XmlElement | undefined): string[] | null {
  if (field === undefined) return null;
  if (field.attrs.var_ref === undefined) return field.text === '' ? null : [field.text];
  const v = doc.byId.get(field.attrs.var_ref);
  if (v === undefined || v.name !== 'constant_variable') return null;
  return children(v, 'value').map((x) => x.text);
}

/** `0:6.8.0-35` -> `6.8.0-35`: epoch 0 is no epoch to dpkg, and the finding reads better without it. */
function evr(v: string): string {
  return v.startsWith('0:') ? v.slice(2) : v;
}

function lessThan(el: XmlElement | undefined, datatype: string): string | null {
  if (el === undefined || el.attrs.operation !== 'less than' || el.attrs.datatype !== datatype || el.text === '') return null;
  return el.text;
}

interface Reading {
  affected: AffectedPackage[];
  livepatch: LivepatchFix | null;
  kinds: Set<'lsn' | 'kernel' | 'package'>;
}

/** `6.8.0-\d+(-generic|-generic-64k)` -> base 6.8.0, flavours; null for any other shape. */
function flavours(pattern: string): { base: string; flavours: string[] } | null {
  const m = /^(\d{1,5}(?:\.\d{1,5}){1,3})-\\d\+\((-[a-z0-9][a-z0-9-]{0,63}(?:\|-[a-z0-9][a-z0-9-]{0,63}){0,63})\)$/.exec(pattern);
  if (m === null) return null;
  return { base: m[1] as string, flavours: (m[2] as string).split('|').map((f) => f.slice(1)) };
}

/** One AND group of tests -> what it says, or a reason it cannot be read. */
function readBranch(doc: Doc, ecosystem: string, tests: XmlElement[], into: Reading): string | null {
  const kinds = tests.map((t) => t.name).sort().join('+');
  if (kinds === 'file_test+textfilecontent54_test') {
    const file = tests.find((t) => t.name === 'file_test') as XmlElement;
    const text = tests.find((t) => t.name === 'textfilecontent54_test') as XmlElement;
    if (child(parts(doc, file).object ?? file, 'filepath')?.text !== LIVEPATCH_BINARY) return 'a file_test of another file than canonical-livepatch';
    const { object, state } = parts(doc, text);
    if (object === undefined || child(object, 'filepath')?.text !== '/proc/modules') return 'a textfilecontent54 test of another file than /proc/modules';
    const level = lessThan(child(state ?? text, 'subexpression'), 'int');
    if (level === null || !/^\d{1,9}$/.test(level)) return 'a live-patch state other than subexpression less than N';
    const patterns = constantValues(doc, child(object, 'pattern'));
    if (patterns === null || patterns.length === 0) return 'no module patterns';
    const good = patterns.filter((p) => compileModulePattern(p) !== null);
    for (const p of patterns) if (!good.includes(p)) doc.report.warn(doc.name, new FeedUnsupportedError(`module pattern ${JSON.stringify(p.slice(0, 80))} is outside the accepted grammar; skipped`));
    if (good.length === 0) return 'every module pattern is outside the accepted grammar';
    const fixedLevel = Number(level);
    if (into.livepatch !== null && into.livepatch.fixedLevel !== fixedLevel) return 'two live-patch levels in one definition';
    into.livepatch = { provider: 'canonical-livepatch', ecosystem, modules: [...new Set([...(into.livepatch?.modules ?? []), ...good])].slice(0, 100), fixedLevel };
    into.kinds.add('lsn');
    return null;
  }
  if (kinds === 'uname_test+variable_test') {
    const uname = tests.find((t) => t.name === 'uname_test') as XmlElement;
    const variable = tests.find((t) => t.name === 'variable_test') as XmlElement;
    const release = child(parts(doc, uname).state ?? uname, 'os_release');
    if (release === undefined || release.attrs.operation !== 'pattern match') return 'a uname state other than os_release pattern match';
    const f = flavours(release.text);
    if (f === null) return `kernel pattern ${JSON.stringify(release.text.slice(0, 80))} is not <version>-\\d+(-flavour|...)`;
    const { object, state } = parts(doc, variable);
    // The variable must be the running kernel's own release (a local_variable over uname's os_release).
    const local = object === undefined ? undefined : doc.byId.get(child(object, 'var_ref')?.text ?? '');
    if (local?.name !== 'local_variable' || !JSON.stringify(local).includes('"item_field":"os_release"')) return 'a variable_test not over the running kernel release';
    const fixed = lessThan(child(state ?? variable, 'value'), 'debian_evr_string');
    if (fixed === null || !VERSION.test(evr(fixed))) return 'a kernel state other than debian_evr_string less than V';
    for (const fl of f.flavours) into.affected.push(entry(ecosystem, unameUnitName(f.base, fl), evr(fixed)));
    into.kinds.add('kernel');
    return null;
  }
  if (kinds === 'dpkginfo_test') {
    const { object, state } = parts(doc, tests[0] as XmlElement);
    const names = constantValues(doc, object === undefined ? undefined : child(object, 'name'));
    if (names === null || names.length === 0) return 'a dpkginfo_test without package names';
    const fixed = lessThan(child(state ?? (tests[0] as XmlElement), 'evr'), 'debian_evr_string');
    if (fixed === null || !VERSION.test(evr(fixed))) return 'a package state other than evr debian_evr_string less than V';
    for (const n of names) {
      if (!PACKAGE_NAME.test(n) || n.length > ADVISORY_LIMITS.name) return `binary package name ${JSON.stringify(n.slice(0, 80))} is not a package name`;
    }
    for (const n of names) into.affected.push({ ...entry(ecosystem, n, evr(fixed)), binary: true });
    into.kinds.add('package');
    return null;
  }
  return `tests ${kinds.slice(0, 120)}`;
}


function entry(ecosystem: string, pkg: string, fixed: string): AffectedPackage {
  return { ecosystem, package: pkg, ranges: [{ introduced: '0', fixed, lastAffected: null }], versions: [], notAffected: false };
}

/**
 * One entry per package: branches repeat a flavour (USN-6816-1 names -generic in two), and
 * the definition is true while the release is below any of their fixes, so the highest wins.
 */
function dedupe(affected: AffectedPackage[]): AffectedPackage[] {
  const by = new Map<string, AffectedPackage>();
  for (const a of affected) {
    const key = `${a.binary === true ? 'b' : 's'}\u0000${a.package}`;
    const seen = by.get(key);
    const fixed = a.ranges[0]?.fixed ?? null;
    const had = seen?.ranges[0]?.fixed ?? null;
    if (seen === undefined || had === null || (fixed !== null && compareVersions('deb', fixed, had) > 0)) by.set(key, a);
  }
  return [...by.values()];
}

function severityOf(d: XmlElement): Severity {
  const word = child(child(child(d, 'metadata') ?? d, 'advisory') ?? d, 'severity')?.text ?? '';
  return severityFromWord(word) ?? 'unknown';
}

function cvesOf(meta: XmlElement): string[] {
  const out = new Set<string>();
  for (const r of children(meta, 'reference')) if (r.attrs.source === 'CVE' && r.attrs.ref_id !== undefined && CVE_ID.test(r.attrs.ref_id)) out.add(r.attrs.ref_id);
  for (const c of children(child(meta, 'advisory') ?? meta, 'cve')) if (CVE_ID.test(c.text)) out.add(c.text);
  return [...out].sort().slice(0, ADVISORY_LIMITS.aliases);
}

function dateOf(meta: XmlElement): string | null {
  const d = child(child(meta, 'advisory') ?? meta, 'issued')?.attrs.date;
  if (d === undefined || !/^\d{4}-\d{2}-\d{2}$/.test(d)) return null;
  const t = Date.parse(`${d}T00:00:00Z`);
  return Number.isNaN(t) ? null : new Date(t).toISOString();
}

/** The whole document -> one advisory per USN/LSN definition that could be read. */
export function parseUbuntuOval(text: string, report: FeedReport, name: string): Advisory[] {
  const root = parseXml(text, name);
  if (root.name !== 'oval_definitions') throw new FeedFormatError(`${name}: the root element is <${root.name.slice(0, 40)}>, not <oval_definitions>`);
  const defs = child(root, 'definitions');
  if (defs === undefined) throw new FeedFormatError(`${name}: no <definitions>`);
  const ids = children(defs, 'definition').map((d) => d.attrs.id ?? '');
  if (!ids.some((id) => id.startsWith('oval:com.ubuntu.'))) throw new FeedUnsupportedError(`${name}: OVAL that is not Canonical's (definition ids are not oval:com.ubuntu.*): only Ubuntu's USN OVAL is read`);
  const ecosystem = ecosystemOf(root, name);
  const byId = new Map<string, XmlElement>();
  for (const section of ['tests', 'objects', 'states', 'variables']) {
    for (const el of child(root, section)?.children ?? []) {
      const id = el.attrs.id;
      if (id === undefined) continue;
      if (byId.has(id)) report.count('duplicate OVAL ids (first kept)');
      else byId.set(id, el);
    }
  }
  const doc: Doc = { name, byId, report };
  const out: Advisory[] = [];
  for (const d of children(defs, 'definition')) {
    if (d.attrs.class !== 'patch') continue;
    const meta = child(d, 'metadata');
    const title = meta === undefined ? '' : (child(meta, 'title')?.text ?? '');
    const idMatch = /^((?:USN|LSN)-\d{1,6}-\d{1,4})\b/.exec(title);
    const where = `${name}:${d.attrs.id ?? '?'}`;
    if (meta === undefined || idMatch === null) {
      report.warn(where, new FeedUnsupportedError(`definition titled ${JSON.stringify(title.slice(0, 80))} is not a USN or LSN; skipped`));
      continue;
    }
    const id = idMatch[1] as string;
    const criteria = child(d, 'criteria');
    const why = { why: null as string | null };
    const groups = criteria === undefined ? null : branches(criteria, why);
    if (groups === null) {
      report.warn(where, new FeedUnsupportedError(`${id}: ${why.why ?? 'no criteria'}; skipped`));
      continue;
    }
    const reading: Reading = { affected: [], livepatch: null, kinds: new Set() };
    let skipped = 0;
    for (const g of groups) {
      const tests = g.map((t) => byId.get(t));
      const missing = tests.findIndex((t) => t === undefined);
      const problem = missing >= 0 ? `test ${g[missing]} is not in the file` : readBranch(doc, ecosystem, tests as XmlElement[], reading);
      if (problem !== null) {
        skipped++;
        report.warn(where, new FeedUnsupportedError(`${id}: ${problem}; branch skipped`));
      }
    }
    if (skipped > 0) report.count('OVAL branches skipped', skipped);
    const cves = cvesOf(meta);
    if (reading.livepatch !== null && reading.affected.length === 0 && cves.length === 0) {
      report.warn(where, new FeedUnsupportedError(`${id}: a live patch notice names no CVE; skipped`));
      continue;
    }
    if (reading.affected.length === 0 && reading.livepatch === null) continue;
    const published = dateOf(meta);
    const summary = title.replace(/^\S+\s+--\s+/, '').slice(0, ADVISORY_LIMITS.summary);
    const a: Advisory = {
      source: SOURCE,
      id,
      aliases: cves,
      summary: summary === '' ? null : summary,
      severity: severityOf(d),
      published,
      modified: published,
      affected: dedupe(reading.affected).filter((x) => PACKAGE_NAME.test(x.package)),
      withdrawn: null,
    };
    if (reading.livepatch !== null) a.livepatch = reading.livepatch;
    report.count(id.startsWith('LSN-') ? 'LSN definitions' : reading.kinds.has('kernel') ? 'kernel USN definitions' : 'package USN definitions');
    out.push(a);
  }
  return out;
}
