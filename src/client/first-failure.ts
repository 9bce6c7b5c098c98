/**
 * Which error a failed restore reports. A restore runs several parts at once (download and hashing,
 * decompression, tar extraction); when one fails the others are stopped, and they fail too, often
 * sooner than the first failure is reported: a `zstd -d` child dies of SIGPIPE when extraction stops
 * reading, a write hits EPIPE, a stream is cut short. Those are symptoms; the user must see the cause.
 */
import { SecondaryError } from './errors.js';

/** Errors that only ever follow another failure of the same restore. */
export function isSymptom(err: unknown): boolean {
  if (err instanceof SecondaryError) return true;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_PREMATURE_CLOSE';
}
