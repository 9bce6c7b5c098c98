/**
 * The cache side of the protocol's conditionals: every backend evaluates an open() through this one
 * function, so all tiers answer identically, and the outcomes become the cache's typed errors.
 */
import type { ObjectMeta, OpenOptions } from './cache.js';
import { evaluateConditions } from '../protocol/conditions.js';
import type { ResolvedRange } from '../protocol/range.js';
import { PreconditionFailedError, RangeNotSatisfiableError } from '../util/errors.js';

export interface ConditionalOutcome {
  status: 200 | 206 | 304;
  range?: ResolvedRange;
}

/**
 * Decides the status for `meta` under `options`. Throws PreconditionFailedError (412) or
 * RangeNotSatisfiableError (416); otherwise returns 200, 206 with the resolved range, or 304.
 */
export function evaluateConditionals(meta: ObjectMeta, options: OpenOptions = {}): ConditionalOutcome {
  const lastModified = options.lastModified ?? meta.lastModified;
  const outcome = evaluateConditions({ etag: meta.etag, lastModified, size: meta.size }, options);
  switch (outcome.status) {
    case 412:
      throw new PreconditionFailedError(`${outcome.failed} does not hold for ${meta.key}`);
    case 416:
      throw new RangeNotSatisfiableError(meta.size);
    default:
      return outcome;
  }
}
