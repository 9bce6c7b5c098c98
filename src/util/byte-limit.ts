/** A stream stage that bounds how many bytes may pass (request bodies: spooled or forwarded). */
import { Transform } from 'node:stream';
import { PayloadTooLargeError } from './errors.js';

/** Passes bytes through until more than `max` went by, then fails with PayloadTooLargeError (413). */
export function byteLimit(max: number): Transform {
  let total = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, callback) {
      total += chunk.length;
      if (total > max) callback(new PayloadTooLargeError(max));
      else callback(null, chunk);
    },
  });
}
