/**
 * Each package manager's own grammar for package names and versions, and the one spec
 * form ("name=version", "name-version") each takes on its command line. The shared schema
 * only checks the union of all grammars; here a name must be valid for the manager that
 * will read it, or the whole instruction is refused before any command runs. A name that
 * could be read as an option (`-o…`), a glob or a shell word never gets through: every
 * grammar below starts with a letter, a digit or `_` and has no space, quote, `$`, `;`,
 * `*`, `?`, `[`, `/` or `=`.
 */
import type { PatchTarget } from '../../../shared/instructions.ts';

export type ManagerFamily = 'dpkg' | 'rpm' | 'apk';

export const UNSAFE_PACKAGE_NAME = 'PW_ERR_UNSAFE_PACKAGE_NAME';

interface Grammar {
  name: RegExp;
  version: RegExp;
  /** How the family's usual command line spells "this package at exactly this version". */
  join: '=' | '-';
}

const GRAMMARS: Readonly<Record<ManagerFamily, Grammar>> = {
  // Debian Policy 5.6.1 (names: lower case, digits, `+ - .`, two characters or more,
  // alphanumeric first) and 5.6.12 (versions: [epoch:]upstream[-revision], upstream
  // starting with a digit; a hyphen only before a non-empty revision). apt-get takes `name=version`.
  dpkg: {
    name: /^[a-z0-9][a-z0-9+.-]+$/,
    version: /^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~]*(?:-[A-Za-z0-9.+~]+)*$/,
    join: '=',
  },
  // rpmbuild's name check (alphanumerics and `._+-`, never `-` first; rpm also allows
  // `%{}`, which are macros and refused here). EVR: [epoch:]version[-release], neither
  // part holding a `-`. dnf and yum take NEVRA-style `name-[epoch:]version-release`
  // (zypper's handler spells it `name=…` itself, once the grammar has passed).
  rpm: {
    name: /^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/,
    version: /^(?:[0-9]+:)?[A-Za-z0-9._+~^]+(?:-[A-Za-z0-9._+~^]+)?$/,
    join: '-',
  },
  // abuild refuses upper case in pkgname. Versions: apk-tools 2.14 accepts more than its
  // documented token order (real secdb versions 1.9.5p2-r0, 10.2.22.r0 and 0.12.5.-r0
  // pass `apk version -c`); what it rejects is a `-` other than the final -rN revision
  // (10.0.11-0, 2021-03-27-r5). `apk add name=version` pins that exact version.
  apk: {
    name: /^[a-z0-9_][a-z0-9_.+-]*$/,
    version: /^[0-9][0-9a-z._~]*(?:-r[0-9]+)?$/,
    join: '=',
  },
};

/** Longer than any real package name or version (dpkg's longest is under 100); a bound on what reaches argv. */
const MAX_LENGTH = 256;

export function validPackageName(family: ManagerFamily, name: string): boolean {
  return name.length <= MAX_LENGTH && GRAMMARS[family].name.test(name);
}

export function validPackageVersion(family: ManagerFamily, version: string): boolean {
  return version.length <= MAX_LENGTH && GRAMMARS[family].version.test(version);
}

export type SpecsResult = { ok: true; specs: string[] } | { ok: false; code: typeof UNSAFE_PACKAGE_NAME; message: string };

/**
 * The command-line arguments for `targets` (`name` for "newest candidate", the manager's
 * versioned spec for an exact version), or a refusal naming the first bad target. Names
 * are JSON-quoted in the message so a control character or an empty name shows as such.
 */
export function packageSpecs(family: ManagerFamily, targets: readonly PatchTarget[]): SpecsResult {
  if (targets.length === 0) return { ok: false, code: UNSAFE_PACKAGE_NAME, message: 'no packages named' };
  const specs: string[] = [];
  for (const t of targets) {
    if (!validPackageName(family, t.name)) {
      return { ok: false, code: UNSAFE_PACKAGE_NAME, message: `${JSON.stringify(t.name.slice(0, 200))} is not a valid ${family} package name` };
    }
    if (t.version === null) {
      specs.push(t.name);
      continue;
    }
    if (!validPackageVersion(family, t.version)) {
      return { ok: false, code: UNSAFE_PACKAGE_NAME, message: `${JSON.stringify(t.version.slice(0, 200))} is not a valid ${family} version (package ${t.name})` };
    }
    specs.push(`${t.name}${GRAMMARS[family].join}${t.version}`);
  }
  return { ok: true, specs };
}
