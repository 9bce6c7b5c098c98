/**
 * ETag and digest helpers. Snapshot ETags are the strong, quoted sha256 hex of the whole archive; the
 * same digest appears as `Repr-Digest: sha-256=:<base64>:` (RFC 9530).
 */

const SHA256_HEX = /^[0-9a-f]{64}$/;

export function isSha256Hex(value: string): boolean {
  return SHA256_HEX.test(value);
}

/** `"<hex>"`: a strong entity tag. */
export function formatEtag(sha256Hex: string): string {
  return `"${sha256Hex}"`;
}

/** Returns the opaque value of a strong ETag, or undefined for weak/malformed tags. */
export function parseStrongEtag(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const trimmed = header.trim();
  if (!trimmed.startsWith('"') || !trimmed.endsWith('"') || trimmed.length < 2) return undefined;
  return trimmed.slice(1, -1);
}

/**
 * Parses an If-Match / If-None-Match list. `*` → '*'; otherwise the list of opaque tags; weak tags are
 * kept with their `W/` marker stripped and flagged so strong comparison can reject them.
 */
export type EtagList = '*' | Array<{ tag: string; weak: boolean }>;

export function parseEtagList(header: string | undefined): EtagList | undefined {
  if (header === undefined) return undefined;
  const trimmed = header.trim();
  if (trimmed === '*') return '*';
  const out: Array<{ tag: string; weak: boolean }> = [];
  for (const match of trimmed.matchAll(/(W\/)?"([^"]*)"/g)) {
    out.push({ tag: match[2], weak: match[1] !== undefined });
  }
  return out;
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
