/**
 * Which error a failed restore reports. A restore runs several parts at once (download and hashing,
 * `zstd -d`, tar extraction); when one fails the others are stopped, and they fail too, often sooner
 * than the first failure is reported: zstd dies of SIGPIPE when extraction stops reading, a write
 * hits EPIPE, a stream is cut short. Those are symptoms; the user must see the cause.
 */
import { SecondaryError } from './errors.js';

/**
 * Waits for every promise to settle; on the first rejection calls `onFailure` (to stop the others)
 * and, once all have settled, rethrows the root cause: the first error that is not a SecondaryError
 * (a broken pipe, a killed process or a cut-short stream caused by that first failure), else the
 * first error of all.
 */
export async function settleAll(promises: Array<Promise<unknown>>, onFailure: () => void): Promise<void> {
  const errors: unknown[] = [];
  await Promise.all(
    promises.map((promise) =>
      promise.catch((err: unknown) => {
        errors.push(err);
        if (errors.length === 1) onFailure();
      }),
    ),
  );
  if (errors.length === 0) return;
  throw errors.find((err) => !isSymptom(err)) ?? errors[0];
}

/** Errors that only ever follow another failure of the same restore. */
export function isSymptom(err: unknown): boolean {
  if (err instanceof SecondaryError) return true;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_PREMATURE_CLOSE';
}
