/**
 * The grammars and size limits every message field is checked against (protocol.ts and
 * instructions.ts both build their schemas from these).
 */
// Grammars are the union of what dpkg, rpm and apk accept, and nothing more: a name with a
// space, quote, semicolon, angle bracket or `$` is refused at the boundary, so SQL, HTML and
// shell fragments never reach the store or a command line.
/** dpkg: [a-z0-9][a-z0-9+.-]+; rpm adds upper case and `_`; apk adds `_`. */
export const PACKAGE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/;
/** dpkg: [epoch:]upstream[-revision] with `~`; rpm: [epoch:]version-release with `^`; apk: 1.2.3_p1-r0. */
export const VERSION = /^[A-Za-z0-9_.+~^:-]+$/;
/** RFC 1123 host names, plus `_` which real fleets do contain. */
export const HOSTNAME = /^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
/** OSV ecosystem names: `Debian:12`, `Ubuntu:24.04:LTS`, `Rocky Linux:9`, `Alpine:v3.21`, `SUSE:Linux Enterprise Server 15 SP5`. */
export const ECOSYSTEM = /^[A-Za-z][A-Za-z ]*[A-Za-z](:[A-Za-z0-9._ -]*[A-Za-z0-9._-])+$/;
/** Debian/dpkg architecture names and rpm/apk arch names (`amd64`, `x86_64`, `noarch`, `all`). */
export const ARCH = /^[A-Za-z0-9_-]+$/;

export const LIMITS = Object.freeze({
  /**
   * Packages in one inventory (report), and package changes in one instruction result.
   * Real hosts rarely pass 10,000 (a full desktop install is about 5,000); 50,000 leaves
   * five times that while keeping one report's parse, validation and correlation within
   * a fraction of a second. Over it: PW_ERR_TOO_MANY_PACKAGES at the collector, and the
   * agent refuses to make the report.
   */
  packages: 50_000,
  name: 256,
  version: 256,
  text: 4096,
  path: 4096,
  list: 10_000,
});
