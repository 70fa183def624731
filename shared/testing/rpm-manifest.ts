/**
 * Red Hat's container rpm manifests, in the shape claircore keeps them
 * (rhel/testdata/*.rpm-manifest.json: `{rpms: [{name, version, release, architecture,
 * srpm_name, srpm_nevra, kind, ...}]}`), as inventory packages. They are the real rpm
 * lists of real RHEL images, so the collector's tests use them as RHEL hosts. Tests only.
 */
import * as z from 'zod';
import { MalformedInputError } from '../errors.ts';
import { PackageSchema, type Package } from '../protocol.ts';

const ManifestSchema = z.object({
  rpms: z.array(
    z.object({
      name: z.string(),
      // Red Hat writes the epoch into `version` (`1:3.2.2`), not into a field of its own.
      version: z.string(),
      release: z.string(),
      architecture: z.string(),
      srpm_name: z.string(),
      srpm_nevra: z.string(),
      kind: z.string().optional(),
    }),
  ),
});

/** `openssl-3.2.2-6.el9_5.src` -> `3.2.2-6.el9_5` when it is `name`'s; null otherwise. */
function sourceVersionOf(nevra: string, name: string): string | null {
  const noArch = nevra.endsWith('.src') ? nevra.slice(0, -4) : nevra.endsWith('.nosrc') ? nevra.slice(0, -6) : null;
  if (noArch === null || !noArch.startsWith(`${name}-`)) return null;
  const vr = noArch.slice(name.length + 1);
  return /^[^-]+-[^-]+$/.test(vr) ? vr : null;
}

/**
 * The binary rpms of a claircore rpm manifest. `version` is `[epoch:]version-release`
 * and the source version carries the binary's epoch, as `rpm -qa` reads them
 * (rpm.ts); `gpg-pubkey` entries are keys, not packages. Throws MalformedInputError
 * naming the first entry that does not convert.
 */
export function packagesFromRpmManifest(json: unknown): Package[] {
  const manifest = ManifestSchema.safeParse(json);
  if (!manifest.success) {
    const issue = manifest.error.issues[0];
    throw new MalformedInputError(`not a claircore rpm manifest: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
  }
  const packages: Package[] = [];
  manifest.data.rpms.forEach((rpm, index) => {
    if ((rpm.kind !== undefined && rpm.kind !== 'binary') || rpm.name === 'gpg-pubkey') return;
    const colon = rpm.version.indexOf(':');
    const epoch = colon === -1 ? '' : rpm.version.slice(0, colon + 1);
    const sourceVersion = sourceVersionOf(rpm.srpm_nevra, rpm.srpm_name);
    if (sourceVersion === null) throw new MalformedInputError(`rpms[${index}] (${rpm.name}): srpm_nevra ${JSON.stringify(rpm.srpm_nevra)} is not a source rpm of ${rpm.srpm_name}`);
    const candidate = {
      name: rpm.name,
      version: `${rpm.version}-${rpm.release}`,
      arch: rpm.architecture,
      source: rpm.srpm_name,
      sourceVersion: `${epoch}${sourceVersion}`,
    };
    const parsed = PackageSchema.safeParse(candidate);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new MalformedInputError(`rpms[${index}] (${rpm.name}): ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
    }
    packages.push(parsed.data);
  });
  return packages;
}
