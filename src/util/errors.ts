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
  | 'range_not_satisfiable'
  | 'digest_mismatch'
  | 'aborted'
  | 'timeout'
  | 'unavailable'
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

/** The upstream host failed or could not be reached (maps to 502). */
export class UpstreamError extends CachewError {
  constructor(message: string, readonly status?: number, options?: { cause?: unknown }) {
    super('upstream', message, options);
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
