/**
 * Conditional requests (RFC 9110 §13) and Range as one model shared by the cache contract, the server's
 * routes and the client: a parser from request headers, a formatter back to headers, and the
 * evaluation in the order of RFC 9110 §13.2.2. Pure functions only; callers map the outcome to their
 * own errors or statuses.
 */
import { formatEtagList, parseEntityTag, parseEtagList, type EntityTag, type EtagList } from './etag.js';
import { formatRange, parseRange, resolveRange, type ByteRangeRequest, type ResolvedRange } from './range.js';

/** The preconditions and the range of one read request. */
export interface Conditions {
  /** If-Match: strong comparison; fails → 412. */
  ifMatch?: EtagList;
  /** If-Unmodified-Since: only when If-Match is absent; modified later → 412. */
  ifUnmodifiedSince?: Date;
  /** If-None-Match: weak comparison; a match → 304. */
  ifNoneMatch?: EtagList;
  /** If-Modified-Since: only when If-None-Match is absent; not modified since → 304. */
  ifModifiedSince?: Date;
  /** If-Range: the Range applies only if this validator still matches; otherwise the full body (200). */
  ifRange?: EntityTag | Date;
  /** One byte range (GET only). */
  range?: ByteRangeRequest;
}

/**
 * A conditional read as a server hands it to storage: the conditions plus how to read. The cache's
 * `OpenOptions` is this type, so routes build it without knowing the cache.
 */
export interface ReadRequest extends Conditions {
  /**
   * The Last-Modified the caller advertises for the object, which If-Modified-Since and
   * If-Unmodified-Since compare against (default: the stored object's own time).
   */
  lastModified?: Date;
  /** Return only metadata and status, no body (HEAD). */
  headOnly?: boolean;
  signal?: AbortSignal;
}

/** What the server knows about the selected representation. */
export interface Validators {
  /** Opaque strong entity tag (unquoted). */
  etag: string;
  /** The Last-Modified the server sends for it; date preconditions are ignored without one. */
  lastModified?: Date;
  size: number;
}

/** The outcome of {@link evaluateConditions}: the status to answer with, and the range for a 206. */
export type ConditionsOutcome =
  | { status: 200 }
  | { status: 206; range: ResolvedRange }
  | { status: 304 }
  | { status: 412; failed: 'If-Match' | 'If-Unmodified-Since' }
  | { status: 416 };

/** Request headers as Node delivers them (lowercase names). */
export type HeaderBag = Record<string, string | string[] | undefined>;

function single(headers: HeaderBag, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** An HTTP-date, or undefined when the value is not one (RFC 9110 §13.1.3: then the header is ignored). */
export function parseHttpDate(value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : new Date(ms);
}

/** IMF-fixdate, the only form a server sends. */
export function formatHttpDate(date: Date): string {
  return date.toUTCString();
}

/**
 * Reads the conditionals and the Range of a request. Range is read for GET only and If-Modified-Since
 * for GET and HEAD only (RFC 9110 §14.2, §13.1.3); malformed values are ignored as the RFC asks.
 */
export function parseConditions(headers: HeaderBag, method = 'GET'): Conditions {
  const conditions: Conditions = {};
  const ifMatch = parseEtagList(single(headers, 'if-match'));
  if (ifMatch !== undefined) conditions.ifMatch = ifMatch;
  const ifUnmodifiedSince = parseHttpDate(single(headers, 'if-unmodified-since'));
  if (ifUnmodifiedSince) conditions.ifUnmodifiedSince = ifUnmodifiedSince;
  const ifNoneMatch = parseEtagList(single(headers, 'if-none-match'));
  if (ifNoneMatch !== undefined) conditions.ifNoneMatch = ifNoneMatch;
  const read = method === 'GET' || method === 'HEAD';
  const ifModifiedSince = read ? parseHttpDate(single(headers, 'if-modified-since')) : undefined;
  if (ifModifiedSince) conditions.ifModifiedSince = ifModifiedSince;
  if (method === 'GET') {
    const range = parseRange(single(headers, 'range'));
    if (range) conditions.range = range;
  }
  const ifRange = single(headers, 'if-range');
  if (ifRange !== undefined) {
    // Not a tag and not a date: a validator that can never match, so the full body is sent.
    conditions.ifRange = parseEntityTag(ifRange) ?? parseHttpDate(ifRange) ?? { tag: '', weak: true };
  }
  return conditions;
}

/** Formats conditions as request headers (the client side of {@link parseConditions}). */
export function formatConditions(conditions: Conditions): Record<string, string> {
  const headers: Record<string, string> = {};
  if (conditions.ifMatch !== undefined) headers['if-match'] = formatEtagList(conditions.ifMatch);
  if (conditions.ifUnmodifiedSince) headers['if-unmodified-since'] = formatHttpDate(conditions.ifUnmodifiedSince);
  if (conditions.ifNoneMatch !== undefined) headers['if-none-match'] = formatEtagList(conditions.ifNoneMatch);
  if (conditions.ifModifiedSince) headers['if-modified-since'] = formatHttpDate(conditions.ifModifiedSince);
  if (conditions.range) headers.range = formatRange(conditions.range);
  if (conditions.ifRange !== undefined) {
    headers['if-range'] =
      conditions.ifRange instanceof Date ? formatHttpDate(conditions.ifRange) : formatEtagList([conditions.ifRange]);
  }
  return headers;
}

function strongMatch(list: EtagList, etag: string): boolean {
  return list === '*' || list.some((entry) => !entry.weak && entry.tag === etag);
}

function weakMatch(list: EtagList, etag: string): boolean {
  return list === '*' || list.some((entry) => entry.tag === etag);
}

/** HTTP dates have one-second resolution: compare whole seconds. */
function seconds(date: Date): number {
  return Math.floor(date.getTime() / 1000);
}

/**
 * Evaluates `conditions` for a read (GET/HEAD) of the representation described by `validators`, in the
 * order of RFC 9110 §13.2.2: If-Match (412) → If-Unmodified-Since (412) → If-None-Match (304) →
 * If-Modified-Since (304) → If-Range → Range (206, or 416 when unsatisfiable).
 *
 * An HTTP-date in If-Range never matches: a Last-Modified only counts as a strong validator under
 * conditions we do not track (RFC 9110 §8.8.2.2), and a false If-Range merely costs a full body.
 */
export function evaluateConditions(validators: Validators, conditions: Conditions): ConditionsOutcome {
  const { etag, lastModified, size } = validators;
  if (conditions.ifMatch !== undefined) {
    if (!strongMatch(conditions.ifMatch, etag)) return { status: 412, failed: 'If-Match' };
  } else if (conditions.ifUnmodifiedSince && lastModified && seconds(lastModified) > seconds(conditions.ifUnmodifiedSince)) {
    return { status: 412, failed: 'If-Unmodified-Since' };
  }
  if (conditions.ifNoneMatch !== undefined) {
    if (weakMatch(conditions.ifNoneMatch, etag)) return { status: 304 };
  } else if (conditions.ifModifiedSince && lastModified && seconds(lastModified) <= seconds(conditions.ifModifiedSince)) {
    return { status: 304 };
  }
  if (!conditions.range) return { status: 200 };
  const { ifRange } = conditions;
  if (ifRange !== undefined && (ifRange instanceof Date || ifRange.weak || ifRange.tag !== etag)) return { status: 200 };
  const range = resolveRange(conditions.range, size);
  return range ? { status: 206, range } : { status: 416 };
}
