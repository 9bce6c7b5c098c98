/**
 * The one vocabulary of hex identifiers: git object ids (SHA-1, 40 hex; SHA-256, 64 hex) and sha256
 * content digests (64 hex). Everything that validates or scans for such an id uses these, so there is
 * one place that says what an id looks like (the architecture test keeps hex patterns out of other
 * modules). Always lowercase: that is how git prints them and how they appear in URLs and keys.
 */

/** Regular-expression source of a SHA-1 object id, for embedding in a line parser. */
export const SHA1_OID_PATTERN = '[0-9a-f]{40}';
/** Regular-expression source of a SHA-256 object id (or a sha256 digest). */
export const SHA256_OID_PATTERN = '[0-9a-f]{64}';
/** Regular-expression source of an object id of either hash (longest first, so a scan takes all 64). */
export const OID_PATTERN = `(?:${SHA256_OID_PATTERN}|${SHA1_OID_PATTERN})`;

const SHA1_OID = new RegExp(`^${SHA1_OID_PATTERN}$`);
const SHA256_HEX = new RegExp(`^${SHA256_OID_PATTERN}$`);
const OID = new RegExp(`^${OID_PATTERN}$`);
const OID_AT_START = new RegExp(`^${OID_PATTERN}`);
const ABBREVIATED = /^[0-9a-f]{4,64}$/;

/** A full object id of either hash: what a commit in a URL or a record must be. */
export function isObjectId(value: unknown): value is string {
  return typeof value === 'string' && OID.test(value);
}

/** A full SHA-1 object id (the only hash snapshots support). */
export function isSha1ObjectId(value: unknown): value is string {
  return typeof value === 'string' && SHA1_OID.test(value);
}

/** A sha256 digest in lowercase hex (blob names, ETags). */
export function isSha256Hex(value: unknown): value is string {
  return typeof value === 'string' && SHA256_HEX.test(value);
}

/** An object id or an abbreviation of one (at least 4 hex digits), as git accepts on its command line. */
export function isObjectIdPrefix(value: unknown): value is string {
  return typeof value === 'string' && ABBREVIATED.test(value);
}

/** The object id a string starts with (e.g. in a pkt-line), or undefined. */
export function objectIdAtStart(text: string): string | undefined {
  return OID_AT_START.exec(text)?.[0];
}
