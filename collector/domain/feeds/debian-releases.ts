/**
 * Debian codenames -> OSV ecosystem names. OSV uses the numeric version from
 * distro-info-data's debian.csv (`Debian:7` for wheezy, `Debian:3.1` for sarge) and the
 * series name where there is no number (`Debian:sid`).
 */
const VERSIONS: Readonly<Record<string, string>> = {
  buzz: '1.1',
  rex: '1.2',
  bo: '1.3',
  hamm: '2.0',
  slink: '2.1',
  potato: '2.2',
  woody: '3.0',
  sarge: '3.1',
  etch: '4.0',
  lenny: '5.0',
  squeeze: '6.0',
  wheezy: '7',
  jessie: '8',
  stretch: '9',
  buster: '10',
  bullseye: '11',
  bookworm: '12',
  trixie: '13',
  forky: '14',
  duke: '15',
  sid: 'sid',
};

/** `Debian:12` for `bookworm`; null for a codename this table does not know. */
export function debianEcosystem(codename: string): string | null {
  const v = Object.hasOwn(VERSIONS, codename) ? VERSIONS[codename] : undefined;
  return v === undefined ? null : `Debian:${v}`;
}
