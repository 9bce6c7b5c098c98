/**
 * How cache metadata is stored as S3 user metadata (`x-amz-meta-*`). S3 lowercases the names and
 * only carries ASCII header values, so the caller's free-form metadata travels as one URI-encoded JSON
 * field; our own fields stay plain so an operator can read them in the console.
 */
import { isSha256Hex } from '../protocol/object-id.js';
import type { ObjectMeta } from './cache.js';

const SHA256 = 'sha256';
const CREATED = 'created';
const EXPIRES = 'expires';
const USER = 'meta';

/** What the S3 backend records about one object besides its bytes. */
export interface StoredFields {
  sha256: string;
  created: Date;
  expiresAt?: Date;
  metadata: Record<string, string>;
}

/** Encodes our fields as S3 user metadata. */
export function encodeMetadata(fields: StoredFields): Record<string, string> {
  const out: Record<string, string> = {
    [SHA256]: fields.sha256,
    [CREATED]: fields.created.toISOString(),
  };
  if (fields.expiresAt) out[EXPIRES] = fields.expiresAt.toISOString();
  if (Object.keys(fields.metadata).length > 0) out[USER] = encodeURIComponent(JSON.stringify(fields.metadata));
  return out;
}

function parseDate(value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function parseUser(value: string | undefined): Record<string, string> {
  if (!value) return {};
  try {
    const parsed: unknown = JSON.parse(decodeURIComponent(value));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
    const out: Record<string, string> = {};
    for (const [name, entry] of Object.entries(parsed)) if (typeof entry === 'string') out[name] = entry;
    return out;
  } catch {
    return {};
  }
}

/**
 * Rebuilds ObjectMeta from a HEAD response. Returns undefined for objects this backend did not write
 * (no sha256): without a verified digest they cannot be served as a strong-ETag object.
 */
export function decodeMetadata(
  key: string,
  size: number,
  s3Metadata: Record<string, string> | undefined,
  lastModified: Date | undefined,
): ObjectMeta | undefined {
  const sha256 = s3Metadata?.[SHA256];
  if (!s3Metadata || !isSha256Hex(sha256)) return undefined;
  const meta: ObjectMeta = {
    key,
    size,
    etag: sha256,
    lastModified: parseDate(s3Metadata[CREATED]) ?? lastModified ?? new Date(0),
    metadata: parseUser(s3Metadata[USER]),
  };
  const expiresAt = parseDate(s3Metadata[EXPIRES]);
  if (expiresAt) meta.expiresAt = expiresAt;
  return meta;
}

export { isExpired } from './lru-index.js';
