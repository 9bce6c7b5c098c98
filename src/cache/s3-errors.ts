/**
 * Classifies AWS SDK errors for the S3 backend. A missing object is a miss; every other failure
 * (network, throttling, 5xx, access denied) is thrown as a CachewError so callers never mistake an
 * outage for an empty cache.
 */
import { CachewError, UnavailableError, abortReason } from '../util/errors.js';

interface SdkErrorShape {
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function shape(err: unknown): SdkErrorShape {
  return typeof err === 'object' && err !== null ? (err as SdkErrorShape) : {};
}

/** HTTP status of an SDK error, when the request got that far. */
export function s3Status(err: unknown): number | undefined {
  return shape(err).$metadata?.httpStatusCode;
}

/** True for NoSuchKey / NotFound (HEAD has no body, so only the status says it). */
export function isNotFound(err: unknown): boolean {
  const { name } = shape(err);
  return name === 'NoSuchKey' || name === 'NotFound' || s3Status(err) === 404;
}

/** True for a failed conditional write or read (412), or a conflicting concurrent write (409). */
export function isConditionFailure(err: unknown): boolean {
  const status = s3Status(err);
  const { name } = shape(err);
  return status === 412 || status === 409 || name === 'PreconditionFailed' || name === 'ConditionalRequestConflict';
}

/**
 * The shared tier failed. The message is what a client sees in a 503 body, so it names the operation
 * and the S3 error class but never the object key (keys reveal the bucket layout and other tenants'
 * repositories); the key is kept in `objectKey` for logs.
 */
export class S3UnavailableError extends UnavailableError {
  constructor(
    readonly op: string,
    readonly objectKey: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`shared storage unavailable (s3 ${op}: ${detail})`, 5, options);
  }
}

/**
 * Converts any failure of an S3 call into a CachewError: the signal's reason when it was aborted, a
 * CachewError unchanged, anything else S3UnavailableError (the shared tier is down or refusing us).
 */
export function toCachewError(op: string, objectKey: string, err: unknown, signal?: AbortSignal): CachewError {
  if (signal?.aborted) return abortReason(signal) as CachewError;
  if (err instanceof CachewError) return err;
  const status = s3Status(err);
  const detail = `${shape(err).name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}`;
  return new S3UnavailableError(op, objectKey, detail, { cause: err });
}
