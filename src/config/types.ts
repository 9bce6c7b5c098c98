/**
 * The validated, typed configuration of cachewd. Produced by src/config/load.ts (file → env → flags);
 * only src/server/ reads it, and hands each module a plain options object.
 */
import { DEFAULT_HTTP_LIMITS, type HttpLimits } from '../util/http-limits.js';

export interface UpstreamConfig {
  /** The `{host}` segment clients use: `github.com`, `127.0.0.1:9000`. */
  name: string;
  /** Where `/git/{name}/{repo}` maps: `https://github.com` → `https://github.com/{repo}`. */
  baseUrl: string;
  /**
   * Who may read through this upstream: `public` (anyone who reaches cachewd; today's behaviour) or
   * `passthrough` (every request is checked with the caller's own credentials against the upstream).
   * Absent = `public`.
   */
  auth?: UpstreamAuthMode;
  /** The server's own credentials for mirror clones and fetches, read at use (never logged). */
  tokenEnv?: string;
  tokenFile?: string;
}

export type UpstreamAuthMode = 'public' | 'passthrough';

export interface S3Config {
  bucket: string;
  endpoint?: string;
  region: string;
  prefix: string;
}

export interface CachewConfig {
  bind: { host: string; port: number };
  stateDir: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  upstreams: UpstreamConfig[];
  /** 0 = on demand only. */
  snapshotIntervalMs: number;
  refCheckIntervalMs: number;
  /** How long superseded snapshots stay servable. */
  snapshotGraceMs: number;
  /** How long delta bundles are kept. */
  bundleTtlMs: number;
  s3?: S3Config;
  /** Answer GETs of immutable snapshot URLs with 307 to a presigned S3 URL (needs `s3`). */
  s3Redirect: boolean;
  /** Lifetime of those presigned URLs. */
  s3RedirectTtlMs: number;
  memoryLimitMb: number;
  /** Largest object the memory tier holds; bigger ones (snapshot blobs) are served from disk. */
  memoryMaxObjectMb: number;
  diskLimitMb: number;
  readOnly: boolean;
  apiToken?: string;
  /** How long an upstream's "yes, this credential may read this repository" is reused. */
  authAllowTtlMs: number;
  /** How long an upstream's "no" is reused (shorter, so a fixed credential works soon). */
  authDenyTtlMs: number;
  /** How long a request waits for a mirror's first clone before 503. */
  mirrorWaitMs: number;
  /** How long in-flight responses may take to finish after SIGTERM. */
  shutdownGraceMs: number;
  /** While S3 is unreachable: how old a locally cached snapshot pointer may be and still be served. */
  s3StaleReadsMs: number;
  /** How long a replica's generation lease lasts without renewal (replicas sharing S3). */
  generationLeaseMs: number;
  /** Timeouts, connection cap and body limits of the HTTP server (docs/config.md, "Limits"). */
  http: HttpLimits;
  /** Temp-file sweeping and disk-space readiness (docs/operations.md). */
  hygiene: HygieneConfig;
}


export interface HygieneConfig {
  /** Temp files and git leftovers older than this are swept while running (all at start-up). */
  tempMaxAgeMs: number;
  /** How often the sweep runs; 0 = only at start-up. */
  sweepIntervalMs: number;
  /** Readiness fails when the state directory's filesystem has less free space than this. */
  minFreeDiskBytes: number;
}

const MB = 1024 * 1024;

export const DEFAULT_UPSTREAMS: UpstreamConfig[] = [
  { name: 'github.com', baseUrl: 'https://github.com' },
  { name: 'gitlab.com', baseUrl: 'https://gitlab.com' },
  { name: 'bitbucket.org', baseUrl: 'https://bitbucket.org' },
  { name: 'codeberg.org', baseUrl: 'https://codeberg.org' },
];

export const DEFAULT_CONFIG: CachewConfig = {
  bind: { host: '127.0.0.1', port: 8080 },
  stateDir: './state',
  logLevel: 'info',
  upstreams: DEFAULT_UPSTREAMS,
  snapshotIntervalMs: 60 * 60_000,
  refCheckIntervalMs: 10_000,
  snapshotGraceMs: 60 * 60_000,
  bundleTtlMs: 24 * 60 * 60_000,
  s3Redirect: false,
  s3RedirectTtlMs: 5 * 60_000,
  memoryLimitMb: 256,
  memoryMaxObjectMb: 32,
  diskLimitMb: 10_240,
  readOnly: false,
  authAllowTtlMs: 60_000,
  authDenyTtlMs: 10_000,
  mirrorWaitMs: 120_000,
  shutdownGraceMs: 30_000,
  s3StaleReadsMs: 60 * 60_000,
  generationLeaseMs: 60_000,
  http: { ...DEFAULT_HTTP_LIMITS },

  hygiene: {
    tempMaxAgeMs: 2 * 60 * 60_000,
    sweepIntervalMs: 10 * 60_000,
    minFreeDiskBytes: 256 * MB,
  },
};
