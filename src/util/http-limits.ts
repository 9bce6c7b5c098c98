/**
 * The HTTP server's limits as data: what config/ sets and http/limits.ts enforces. In util/ because
 * both config/ (which may not import http/) and http/ need the one definition and its defaults.
 */
export interface HttpLimits {
  /** Time allowed to receive the request headers (Node `headersTimeout`); also ends silent connections. */
  headersTimeoutMs: number;
  /** Time allowed to receive a whole request, headers and body (Node `requestTimeout`). */
  requestTimeoutMs: number;
  /** How long an idle keep-alive connection is held between requests. */
  keepAliveTimeoutMs: number;
  /** A response that makes no progress for this long (the client stopped reading) is cut. */
  idleTimeoutMs: number;
  /** Connections held at once (clamped below the process's open-file limit). */
  maxConnections: number;
  /** Largest upload-pack request body (wants and haves; gzip is counted after inflating). */
  maxUploadPackBytes: number;
  /** Largest body forwarded upstream (pushes). */
  maxForwardBytes: number;
  /** Largest body on every other route (none of them reads a body). */
  maxOtherBodyBytes: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  headersTimeoutMs: 20_000,
  requestTimeoutMs: 300_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 120_000,
  maxConnections: 1024,
  maxUploadPackBytes: 64 * 1024 * 1024,
  maxForwardBytes: 2 * 1024 * 1024 * 1024,
  maxOtherBodyBytes: 64 * 1024,
};
