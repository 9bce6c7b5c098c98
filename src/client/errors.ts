/**
 * Errors specific to the restore client. They extend the project's hierarchy so callers can switch on
 * `code`; the CLI maps NoSnapshotError to exit code 2 and everything else to 1.
 */
import { CachewError, NotFoundError } from '../util/errors.js';

/** The server has no snapshot for the repository (the stable URL answered 404). */
export class NoSnapshotError extends NotFoundError {
  constructor(readonly repoUrl: string) {
    super(`no snapshot for ${repoUrl}`);
  }
}

/**
 * The immutable snapshot we were downloading disappeared (404) or changed (412): it aged out of
 * retention between resolving and downloading. The restore re-resolves the stable URL once.
 */
export class SnapshotGoneError extends NotFoundError {
  constructor(readonly url: string, readonly status: number) {
    super(`snapshot ${url} is no longer available (HTTP ${status})`);
  }
}

/** The server answered a Range request with the whole body (200): switch to a single stream. */
export class RangeIgnoredError extends CachewError {
  constructor(readonly url: string) {
    super('internal', `server ignored the Range request for ${url}`);
  }
}

/** The archive tried something a snapshot never needs (escaping paths, links through symlinks, devices). */
export class UnsafeArchiveError extends CachewError {
  constructor(readonly detail: string) {
    super('bad_request', `unsafe snapshot archive: ${detail}`);
  }
}

/** The server answered 401: no credentials, or the upstream refused the ones we sent. Never retried. */
export class AuthenticationError extends CachewError {
  constructor(serverOrigin: string, repoUrl: string, sentCredentials: boolean) {
    super(
      'unauthorized',
      sentCredentials
        ? `${serverOrigin} refused our credentials for ${repoUrl} (HTTP 401): check the token or the git credential helper for that URL`
        : `${serverOrigin} requires credentials for ${repoUrl} (HTTP 401): set up a git credential helper for that URL, or pass --token / CACHEW_TOKEN`,
    );
  }
}

/** An HTTP answer the client cannot use (unexpected status, missing or inconsistent headers). */
export class ProtocolError extends CachewError {
  constructor(message: string, readonly status?: number) {
    super('upstream', message);
  }
}

/**
 * The location the server redirected a snapshot GET to (a presigned object-store URL) refused it with
 * 403, typically because the URL expired. The next attempt asks the server for a fresh location.
 */
export class RedirectExpiredError extends ProtocolError {
  constructor(url: string) {
    super(`redirect target ${url} refused the request (HTTP 403; expired?)`, 403);
  }
}

/** A request kept failing (dropped, stalled, 5xx) until its retry budget ran out. */
export class DownloadFailedError extends CachewError {
  constructor(url: string, attempts: number, cause: unknown) {
    super('upstream', `download from ${url} failed after ${attempts} attempts: ${describe(cause)}`, { cause });
  }
}

function describe(cause: unknown): string {
  if (!(cause instanceof Error)) return String(cause);
  const code = (cause as NodeJS.ErrnoException).code;
  return code && !cause.message.includes(code) ? `${cause.message} (${code})` : cause.message;
}

/**
 * A step of a restore that failed only because another step failed first (a pipe closed under it, a
 * process we killed, a stream we stopped, an archive cut short by its dying decompressor). Never the
 * error to report when a real one exists.
 */
export class SecondaryError extends CachewError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('internal', message, options);
  }
}

/** Writing the extracted tree failed on its own (disk full, permissions): the system's words. */
export class WriteFailedError extends CachewError {
  constructor(message: string) {
    super('internal', message);
  }
}

/** The archive is not a valid zstd stream (corrupt, truncated, or not zstd at all). */
export class CorruptArchiveError extends CachewError {
  constructor(message: string) {
    super('internal', `snapshot archive is not valid zstd: ${message}`);
  }
}
