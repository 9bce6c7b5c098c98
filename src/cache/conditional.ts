/**
 * RFC 9110 §13.2.2 precondition evaluation shared by every backend, so all tiers answer identically.
 */
import type { ObjectMeta, OpenOptions } from './cache.js';
import type { EtagList } from '../protocol/etag.js';
import { resolveRange, type ResolvedRange } from '../protocol/range.js';
import { PreconditionFailedError, RangeNotSatisfiableError } from '../util/errors.js';

export interface ConditionalOutcome {
  status: 200 | 206 | 304;
  range?: ResolvedRange;
}

function strongMatch(list: EtagList, etag: string): boolean {
  if (list === '*') return true;
  return list.some((entry) => !entry.weak && entry.tag === etag);
}

function weakMatch(list: EtagList, etag: string): boolean {
  if (list === '*') return true;
  return list.some((entry) => entry.tag === etag);
}

/**
 * Decides the status for `meta` under `options`. Throws PreconditionFailedError (412) or
 * RangeNotSatisfiableError (416); otherwise returns 200, 206 with the resolved range, or 304.
 */
export function evaluateConditionals(meta: ObjectMeta, options: OpenOptions = {}): ConditionalOutcome {
  if (options.ifMatch !== undefined && !strongMatch(options.ifMatch, meta.etag)) {
    throw new PreconditionFailedError(`If-Match does not match ${meta.key}`);
  }
  if (options.ifNoneMatch !== undefined && weakMatch(options.ifNoneMatch, meta.etag)) {
    return { status: 304 };
  }
  if (!options.range) return { status: 200 };
  if (options.ifRange !== undefined && options.ifRange !== meta.etag) return { status: 200 };
  const range = resolveRange(options.range, meta.size);
  if (!range) throw new RangeNotSatisfiableError(meta.size);
  return { status: 206, range };
}

/** Byte count a result carries: the range length for 206, the size for 200, 0 for 304. */
export function bodyLength(meta: ObjectMeta, outcome: ConditionalOutcome): number {
  if (outcome.status === 304) return 0;
  if (outcome.range) return outcome.range.end - outcome.range.start + 1;
  return meta.size;
}
