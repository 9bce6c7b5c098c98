/**
 * Cache key validation shared by the local backends. The rules are those of the Cache contract
 * (src/cache/cache.ts): `/`-separated segments of `[A-Za-z0-9._-]`, never `.` or `..`, so a key can be
 * used as a relative file path without any escaping and can never climb out of a disk root.
 */
import { BadRequestError } from '../util/errors.js';
import { isSafeSegment } from '../protocol/routes.js';

/** Generous, but keeps file paths well under PATH_MAX on every platform we run on. */
const MAX_KEY_LENGTH = 1024;

/** True when `key` follows the contract's key grammar. */
export function isValidKey(key: string): boolean {
  if (key.length === 0 || key.length > MAX_KEY_LENGTH) return false;
  for (const segment of key.split('/')) {
    if (!isSafeSegment(segment) || segment === '.' || segment === '..') return false;
  }
  return true;
}

/** Throws BadRequestError unless `key` follows the contract's key grammar. */
export function assertValidKey(key: string): void {
  if (!isValidKey(key)) throw new BadRequestError(`invalid cache key: ${JSON.stringify(key.slice(0, 200))}`);
}
