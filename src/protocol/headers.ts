/** Header names of the wire contract (SPEC §4), shared by server and client so they cannot drift. */
export const Headers = {
  snapshotCommit: 'x-cachew-snapshot-commit',
  bundleUrl: 'x-cachew-bundle-url',
  reprDigest: 'repr-digest',
  contentLocation: 'content-location',
  etag: 'etag',
  retryAfter: 'retry-after',
} as const;

export const SNAPSHOT_CONTENT_TYPE = 'application/zstd';
export const BUNDLE_CONTENT_TYPE = 'application/x-git-bundle';
export const IMMUTABLE_CACHE_CONTROL = 'public, max-age=31536000, immutable';
export const STABLE_CACHE_CONTROL = 'no-cache';
