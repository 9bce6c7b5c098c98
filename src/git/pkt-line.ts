/**
 * git's pkt-line framing (gitprotocol-common): a 4-hex-digit length that counts itself, then the
 * payload; `0000` flush, `0001` delimiter, `0002` response-end. Only what the proxy needs: writing the
 * service preamble and reading a client's request to find its wants.
 */
import { BadRequestError } from '../util/errors.js';
import { objectIdAtStart } from '../protocol/object-id.js';

export type PktLine = { type: 'data'; payload: Buffer } | { type: 'flush' | 'delim' | 'response-end' };

export const FLUSH_PKT = Buffer.from('0000', 'latin1');
const MAX_PKT_LENGTH = 65520;

/** Frames one payload as a pkt-line. */
export function pktLine(payload: string | Buffer): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const length = body.length + 4;
  if (length > MAX_PKT_LENGTH) throw new RangeError('pkt-line payload too long');
  return Buffer.concat([Buffer.from(length.toString(16).padStart(4, '0'), 'latin1'), body]);
}

/**
 * Parses pkt-lines from a byte stream, yielding each as it completes. Holds at most one packet in
 * memory. Throws BadRequestError on a malformed length.
 */
export async function* readPktLines(source: AsyncIterable<Buffer | string>): AsyncGenerator<PktLine> {
  let pending = Buffer.alloc(0);
  for await (const chunk of source) {
    pending = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, Buffer.from(chunk)]);
    while (pending.length >= 4) {
      const header = pending.subarray(0, 4).toString('latin1');
      if (!/^[0-9a-fA-F]{4}$/.test(header)) throw new BadRequestError('malformed pkt-line');
      const length = Number.parseInt(header, 16);
      if (length < 4) {
        pending = pending.subarray(4);
        if (length === 0) yield { type: 'flush' };
        else if (length === 1) yield { type: 'delim' };
        else if (length === 2) yield { type: 'response-end' };
        else throw new BadRequestError('malformed pkt-line');
        continue;
      }
      if (pending.length < length) break;
      yield { type: 'data', payload: pending.subarray(4, length) };
      pending = pending.subarray(length);
    }
  }
  if (pending.length > 0) throw new BadRequestError('truncated pkt-line');
}

/**
 * The object ids a fetch request asks for (`want <oid>` lines of protocol v0/v1 and v2 alike),
 * deduplicated, in order. Throws BadRequestError unless the body is an upload-pack request: framed
 * pkt-lines whose first line is a v0 `want` or a v2 `command=`.
 */
export async function readWants(source: AsyncIterable<Buffer | string>): Promise<string[]> {
  const wants = new Set<string>();
  let first = true;
  for await (const pkt of readPktLines(source)) {
    if (first) {
      const start = pkt.type === 'data' ? pkt.payload.subarray(0, 8).toString('latin1') : '';
      if (!start.startsWith('want ') && !start.startsWith('command=')) throw new BadRequestError('not an upload-pack request');
      first = false;
    }
    if (pkt.type !== 'data' || pkt.payload.length < 45) continue;
    if (pkt.payload.subarray(0, 5).toString('latin1') !== 'want ') continue;
    const want = objectIdAtStart(pkt.payload.subarray(5, 69).toString('latin1'));
    if (want) wants.add(want);
  }
  if (first) throw new BadRequestError('empty upload-pack request');
  return [...wants];
}
