/**
 * ETag and digest helpers. Snapshot ETags are the strong, quoted sha256 hex of the whole archive; the
 * same digest appears as `Repr-Digest: sha-256=:<base64>:` (RFC 9530).
 */

import { isSha256Hex } from './object-id.js';

/** Re-exported for the many callers that validate a digest next to an ETag. */
export { isSha256Hex };

/** `"<hex>"`: a strong entity tag. */
export function formatEtag(sha256Hex: string): string {
  return `"${sha256Hex}"`;
}

/** An entity tag: its opaque value (unquoted) and whether it carried the weak marker `W/`. */
export interface EntityTag {
  tag: string;
  weak: boolean;
}

/** The value of If-Match / If-None-Match: `*` or a list of entity tags. */
export type EtagList = '*' | EntityTag[];

const ENTITY_TAG = /^(W\/)?"([^"]*)"$/;

/** Parses one entity tag (`"x"` or `W/"x"`), or undefined when malformed. */
export function parseEntityTag(value: string | undefined): EntityTag | undefined {
  const match = value === undefined ? null : ENTITY_TAG.exec(value.trim());
  return match ? { tag: match[2], weak: match[1] !== undefined } : undefined;
}

/** Returns the opaque value of a strong ETag, or undefined for weak/malformed tags. */
export function parseStrongEtag(header: string | undefined): string | undefined {
  const parsed = parseEntityTag(header);
  return parsed && !parsed.weak ? parsed.tag : undefined;
}

/**
 * Parses an If-Match / If-None-Match list. `*` → '*'; otherwise the list of opaque tags; weak tags are
 * kept with their `W/` marker stripped and flagged so strong comparison can reject them.
 */
export function parseEtagList(header: string | undefined): EtagList | undefined {
  if (header === undefined) return undefined;
  const trimmed = header.trim();
  if (trimmed === '*') return '*';
  const out: EntityTag[] = [];
  for (const match of trimmed.matchAll(/(W\/)?"([^"]*)"/g)) {
    out.push({ tag: match[2], weak: match[1] !== undefined });
  }
  return out;
}

/** Formats an If-Match / If-None-Match / If-Range value (the inverse of {@link parseEtagList}). */
export function formatEtagList(list: EtagList): string {
  if (list === '*') return '*';
  return list.map((entry) => `${entry.weak ? 'W/' : ''}"${entry.tag}"`).join(', ');
}

export function sha256HexToReprDigest(sha256Hex: string): string {
  return `sha-256=:${Buffer.from(sha256Hex, 'hex').toString('base64')}:`;
}

export function reprDigestToSha256Hex(header: string | undefined): string | undefined {
  const match = header ? /sha-256=:([A-Za-z0-9+/=]+):/.exec(header) : null;
  if (!match) return undefined;
  const hex = Buffer.from(match[1], 'base64').toString('hex');
  return isSha256Hex(hex) ? hex : undefined;
}
