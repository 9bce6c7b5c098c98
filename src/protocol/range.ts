/**
 * Byte-range vocabulary shared by server and client (RFC 9110 §14). Types and pure helpers only.
 */
import parseRangeHeader from 'range-parser';

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

const SINGLE_RANGE = /^bytes=(\d*)-(\d*)$/;

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
  if (a === '') return { kind: 'suffix', length: Number(b) };
  const start = Number(a);
  if (b === '') return { kind: 'open', start };
  const end = Number(b);
  if (end < start) return undefined; // RFC 9110: invalid range-spec, ignore the header
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) return undefined;
  return { kind: 'bounded', start, end };
}

/**
 * Resolves a requested range against an object of `size` bytes. Returns undefined when unsatisfiable
 * (the caller answers 416 with `Content-Range: bytes *\/size`).
 */
export function resolveRange(request: ByteRangeRequest, size: number): ResolvedRange | undefined {
  // range-parser implements the RFC arithmetic (clamping, suffix lengths); we feed it one range.
  const header =
    request.kind === 'bounded'
      ? `bytes=${request.start}-${request.end}`
      : request.kind === 'open'
        ? `bytes=${request.start}-`
        : // RFC 9110 §14.1.2: a suffix longer than the representation selects all of it; range-parser
          // would call it unsatisfiable, so clamp first.
          `bytes=-${Math.min(request.length, size)}`;
  if (request.kind === 'suffix' && Math.min(request.length, size) === 0) return undefined;
  const parsed = parseRangeHeader(size, header);
  if (!Array.isArray(parsed) || parsed.length !== 1) return undefined;
  const [range] = parsed;
  return { start: range.start, end: range.end };
}

/** `bytes a-b/size` for a 206, `bytes *\/size` for a 416. */
export function contentRange(range: ResolvedRange | undefined, size: number): string {
  return range ? `bytes ${range.start}-${range.end}/${size}` : `bytes */${size}`;
}

/** Formats a request for the Range header (client side). */
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
