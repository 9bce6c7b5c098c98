/**
 * One error hierarchy for the whole project. Every error carries a stable `code` that the HTTP layer
 * maps to a status in one place (src/http/reply.ts) and the client maps back. Messages are one line,
 * safe to show to a user: no stack traces, no internal paths.
 */
export type ErrorCode =
  | 'internal'
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'already_exists'
  | 'precondition_failed'
  | 'payload_too_large'
  | 'range_not_satisfiable'
  | 'digest_mismatch'
  | 'aborted'
  | 'timeout'
  | 'unavailable'
  | 'insufficient_storage'
  | 'unprocessable'
  | 'upstream'
  | 'git_command'
  | 'config';

export class CachewError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export class BadRequestError extends CachewError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('bad_request', message, options);
  }
}

export class NotFoundError extends CachewError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('not_found', message, options);
  }
}

/** The caller must (re)authenticate: 401, with `WWW-Authenticate: <challenge>` when one is given. */
export class UnauthorizedError extends CachewError {
  constructor(message: string, readonly challenge?: string) {
    super('unauthorized', message);
  }
}

/** A create-if-absent write found the key already present: the first writer won. */
export class AlreadyExistsError extends CachewError {
  constructor(readonly key: string, options?: { cause?: unknown }) {
    super('already_exists', `object already exists: ${key}`, options);
  }
}

/** If-Match / compare-and-swap failed: the stored ETag is not the expected one. */
export class PreconditionFailedError extends CachewError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('precondition_failed', message, options);
  }
}

/** A request body over the route's limit (413). */
export class PayloadTooLargeError extends CachewError {
  constructor(readonly limitBytes: number) {
    super('payload_too_large', `request body larger than ${limitBytes} bytes`);
  }
}

/** The requested byte range lies outside the object; `size` feeds `Content-Range: bytes *\/size`. */
export class RangeNotSatisfiableError extends CachewError {
  constructor(readonly size: number) {
    super('range_not_satisfiable', `range not satisfiable for object of ${size} bytes`);
  }
}

/** Bytes written or read do not hash to the digest they were supposed to have. */
export class DigestMismatchError extends CachewError {
  constructor(readonly expected: string, readonly actual: string) {
    super('digest_mismatch', `sha256 mismatch: expected ${expected}, got ${actual}`);
  }
}

export class AbortedError extends CachewError {
  constructor(message = 'operation aborted', options?: { cause?: unknown }) {
    super('aborted', message, options);
  }
}

export class TimeoutError extends CachewError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('timeout', message, options);
  }
}

/** Temporarily unable to answer (e.g. a mirror still cloning); `retryAfterSeconds` feeds Retry-After. */
export class UnavailableError extends CachewError {
  constructor(message: string, readonly retryAfterSeconds = 5, options?: { cause?: unknown }) {
    super('unavailable', message, options);
  }
}

/**
 * What went wrong with an upstream, as far as we can tell: it could not be reached, it answered
 * something that is not the protocol we spoke, it answered an error status, it refused our
 * credentials, or it took too long.
 */
export type UpstreamFailure = 'unreachable' | 'bad_reply' | 'status' | 'auth' | 'timeout';

/** The upstream host failed or could not be reached (maps to 502). */
export class UpstreamError extends CachewError {
  /** Why, when known; logs and metrics use it so a bad reply is never reported as "unreachable". */
  readonly reason: UpstreamFailure | undefined;
  constructor(message: string, readonly status?: number, options?: { cause?: unknown; reason?: UpstreamFailure }) {
    super('upstream', message, options);
    this.reason = options?.reason;
  }
}

/**
 * The state directory's disk is full (ENOSPC/EDQUOT). Server trouble, never the client's: 507 with
 * Retry-After, and readiness reports it.
 */
export class InsufficientStorageError extends CachewError {
  constructor(message = 'the server is out of disk space, retry later', readonly retryAfterSeconds = 30, options?: { cause?: unknown }) {
    super('insufficient_storage', message, options);
  }
}

/**
 * The request is well-formed but this content can never be processed, e.g. a repository whose tree
 * cannot be snapshotted safely (422). Retrying cannot help.
 */
export class UnprocessableError extends CachewError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('unprocessable', message, options);
  }
}

export class GitCommandError extends CachewError {
  constructor(
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderrTail: string,
    options?: { cause?: unknown },
  ) {
    super('git_command', `git ${args[0] ?? ''} failed (exit ${exitCode ?? 'signal'}): ${lastLine(stderrTail)}`, options);
  }
}

export class ConfigError extends CachewError {
  constructor(message: string) {
    super('config', message);
  }
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return (lines[lines.length - 1] ?? '').slice(0, 300);
}

const NO_SPACE_CODES = new Set(['ENOSPC', 'EDQUOT']);
const NO_SPACE_TEXT = /No space left on device|Disk quota exceeded/;

/**
 * True when `err`, or anything in its cause chain, is a full disk: a Node errno, or a git command
 * whose stderr says so.
 */
export function isNoSpace(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof InsufficientStorageError) return true;
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && NO_SPACE_CODES.has(code)) return true;
    if (e instanceof GitCommandError && NO_SPACE_TEXT.test(e.stderrTail)) return true;
  }
  return false;
}

/** True when `err` is a CachewError with the given code. */
export function hasCode(err: unknown, code: ErrorCode): boolean {
  return err instanceof CachewError && err.code === code;
}

/** Converts an AbortSignal's reason into an AbortedError (keeps a CachewError reason as is). */
export function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof CachewError) return reason;
  return new AbortedError('operation aborted', { cause: reason });
}
