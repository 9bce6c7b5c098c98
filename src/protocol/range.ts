/**
 * Byte-range vocabulary shared by server and client (RFC 9110 §14): the Range request header and the
 * Content-Range response header, each with a parser and a formatter, and the arithmetic that resolves
 * a requested range against a representation's size. Pure functions only.
 */

/** A single requested range, before it is resolved against the object's size. */
export type ByteRangeRequest =
  | { kind: 'bounded'; start: number; end: number } // bytes=a-b (inclusive)
  | { kind: 'open'; start: number } // bytes=a-
  | { kind: 'suffix'; length: number }; // bytes=-n

/** A range resolved against a known size: inclusive offsets, 0 <= start <= end < size. */
export interface ResolvedRange {
  start: number;
  end: number;
}

/** A satisfied Content-Range (`bytes a-b/size`) as a client reads it off a 206. */
export interface ContentRange extends ResolvedRange {
  size: number;
}

const SINGLE_RANGE = /^bytes=(\d*)-(\d*)$/;
const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+)$/;

/**
 * Parses a Range header. Returns undefined for anything that is not exactly one well-formed byte range
 * (multi-range and malformed headers are ignored, so the caller serves 200 with the full body).
 */
export function parseRange(header: string | undefined): ByteRangeRequest | undefined {
  if (!header) return undefined;
  const match = SINGLE_RANGE.exec(header.trim());
  if (!match) return undefined;
  const [, a, b] = match;
  if (a === '' && b === '') return undefined;
  if (a === '') {
    const length = Number(b);
    return Number.isSafeInteger(length) ? { kind: 'suffix', length } : undefined;
  }
  const start = Number(a);
  if (!Number.isSafeInteger(start)) return undefined;
  if (b === '') return { kind: 'open', start };
  const end = Number(b);
  if (!Number.isSafeInteger(end)) return undefined;
  if (end < start) return undefined; // RFC 9110 §14.1.1: an invalid range-spec, ignore the header
  return { kind: 'bounded', start, end };
}

/** Formats a request for the Range header (the inverse of {@link parseRange}). */
export function formatRange(request: ByteRangeRequest): string {
  switch (request.kind) {
    case 'bounded':
      return `bytes=${request.start}-${request.end}`;
    case 'open':
      return `bytes=${request.start}-`;
    case 'suffix':
      return `bytes=-${request.length}`;
  }
}

/**
 * Resolves a requested range against an object of `size` bytes (RFC 9110 §14.1.2). Returns undefined
 * when unsatisfiable (the server answers 416 with `Content-Range: bytes *\/size`).
 */
export function resolveRange(request: ByteRangeRequest, size: number): ResolvedRange | undefined {
  const last = size - 1;
  switch (request.kind) {
    case 'bounded':
    case 'open': {
      // A first position past the end is unsatisfiable; a last position past it is clamped.
      if (request.start > last) return undefined;
      const end = request.kind === 'bounded' ? Math.min(request.end, last) : last;
      return { start: request.start, end };
    }
    case 'suffix':
      // A suffix longer than the representation selects all of it; an empty one selects nothing.
      if (request.length === 0 || size === 0) return undefined;
      return { start: Math.max(0, size - request.length), end: last };
  }
}

/** `bytes a-b/size` for a 206, `bytes *\/size` for a 416. */
export function formatContentRange(range: ResolvedRange | undefined, size: number): string {
  return range ? `bytes ${range.start}-${range.end}/${size}` : `bytes */${size}`;
}

/** Parses the Content-Range of a 206 (`bytes a-b/size`); undefined when absent, unsatisfied or malformed. */
export function parseContentRange(value: string | undefined): ContentRange | undefined {
  const match = value ? CONTENT_RANGE.exec(value.trim()) : null;
  if (!match) return undefined;
  const [start, end, size] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (![start, end, size].every(Number.isSafeInteger) || end < start || end >= size) return undefined;
  return { start, end, size };
}

/** Number of bytes a resolved range covers. */
export function rangeLength(range: ResolvedRange): number {
  return range.end - range.start + 1;
}
