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

/**
 * Text with no U+0000 (NUL). PostgreSQL's `text` cannot hold it (SQLite's can), so free text
 * that the collector writes to a column of its own is refused with it at the boundary, by
 * the schema that reads it (shared/text.ts), and never reaches the store. Text stored inside
 * JSON documents is not held to it: JSON.stringify writes NUL as the escape `\u0000`.
 */
// eslint-disable-next-line no-control-regex -- U+0000 is what this refuses
export const NO_NUL = /^[^\u0000]*$/;

/** `text` with each U+0000 made U+FFFD, for text an agent builds from what it read (an error's message). */
export function withoutNul(text: string): string {
  return text.includes('\u0000') ? text.replaceAll('\u0000', '\ufffd') : text;
}

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
