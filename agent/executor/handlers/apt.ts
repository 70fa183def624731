/**
 * Debian and Ubuntu: `apt-get update`, then `apt-get install --only-upgrade` of the named
 * packages. `--only-upgrade` so a patch never installs a package the host did not have;
 * `--force-confdef --force-confold` so a changed config file keeps the admin's version
 * without a prompt (a prompt with no terminal would hang until the timeout). The dry run is
 * apt-get's own simulation (`-s`); it refreshes the package lists too, since a simulation
 * against stale lists says nothing, and the lists are a cache, not installed state.
 *
 * A name apt could read as a pattern must name an installed package exactly. apt-get looks
 * a command-line name up as a package first, and only when no package has that name does
 * it try it as a task, a glob and then a regular expression (apt-pkg cacheset.cc,
 * PackageFromString; regex when the name holds one of `.?+*|[^$`). Debian names may hold
 * `.` and `+` (libgtk2.0-0, libstdc++6), so `libc6.` is valid by policy, names no package,
 * and apt 2.6 upgrades every package matching /libc6./ (checked with apt-get -s on
 * bookworm: libc6-dev and the cross toolchains). A package that is installed is always in
 * apt's cache under its name, so it is matched exactly; `--only-upgrade` would skip a name
 * that is not installed anyway, so refusing it loses nothing.
 */
import type { PatchInstruction, PatchTarget } from '../../../shared/instructions.ts';
import { createContext } from '../../inventory/context.ts';
import { readDpkgPackages } from '../../inventory/dpkg.ts';
import type { Handler, HandlerContext, HandlerOutcome } from '../handler.ts';
import { packageSpecs, UNSAFE_PACKAGE_NAME } from './names.ts';
import { type Plan, refused, runPlan } from './steps.ts';

// --no-remove: an upgrade that would remove any package aborts instead (-y alone would let
// apt-get remove what conflicts with the new version: nothing an operator approved).
const APT_OPTIONS = ['-q', '-y', '--no-remove', '-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold', '-o', 'Dpkg::Use-Pty=0'];

export function aptPlan(instruction: Pick<PatchInstruction, 'packages'>, dryRun: boolean): Plan {
  const specs = packageSpecs('dpkg', instruction.packages);
  if (!specs.ok) return refused(specs.code, specs.message);
  return {
    steps: [
      { argv: ['apt-get', '-q', 'update'] },
      { argv: ['apt-get', ...APT_OPTIONS, ...(dryRun ? ['-s'] : []), '--only-upgrade', 'install', '--', ...specs.specs] },
    ],
    done: `${dryRun ? 'simulated the upgrade of' : 'upgraded'} ${specs.specs.join(' ')} with apt-get`,
  };
}

/** The characters that make apt-get try a name as a regular expression (apt-pkg cacheset.cc, `isregex`). */
const APT_REGEX_CHARS = /[.?+*|[\]^$]/;

/**
 * The first target apt-get would read as a pattern: a name with a regex character that no
 * installed package has exactly. `installed` is null when the root has no dpkg database
 * (then every such name is refused).
 */
export function aptPatternTarget(targets: readonly PatchTarget[], installed: ReadonlySet<string> | null): PatchTarget | undefined {
  return targets.find((t) => APT_REGEX_CHARS.test(t.name) && installed?.has(t.name) !== true);
}

export const aptHandler: Handler<PatchInstruction> = {
  name: 'apt-get',
  async run(instruction: PatchInstruction, ctx: HandlerContext): Promise<HandlerOutcome> {
    const plan = aptPlan(instruction, ctx.dryRun);
    if ('steps' in plan && instruction.packages.some((t) => APT_REGEX_CHARS.test(t.name))) {
      const packages = await readDpkgPackages(createContext(ctx.root));
      const pattern = aptPatternTarget(instruction.packages, packages === null ? null : new Set(packages.map((p) => p.name)));
      if (pattern !== undefined) {
        return refused(
          UNSAFE_PACKAGE_NAME,
          `${JSON.stringify(pattern.name)} is installed under no such name, so apt-get would read it as a regular expression and upgrade every package it matches`,
        ).refused;
      }
    }
    return runPlan(plan, ctx);
  },
};
