/**
 * Decoder of HTTP/1.1 chunked transfer coding (RFC 9112 §7.1) for raw-http.ts: pieces of the coded
 * body in, pieces of the payload out (views of the input, never copies). Chunk extensions and
 * trailer fields are read and ignored.
 */

/** A size line or trailer line longer than this is not a real one. */
const MAX_LINE = 4096;

type State = 'size' | 'data' | 'data-end' | 'trailer' | 'done';

export class ChunkedDecoder {
  private state: State = 'size';
  private remaining = 0;
  private line = '';

  /** True once the last chunk and the trailer section were read. */
  get done(): boolean {
    return this.state === 'done';
  }

  /** Consumes `bytes`; returns the payload pieces they carry. Throws on a malformed coding. */
  push(bytes: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let at = 0;
    while (at < bytes.length && this.state !== 'done') {
      if (this.state === 'data') {
        const take = Math.min(this.remaining, bytes.length - at);
        out.push(bytes.subarray(at, at + take));
        at += take;
        this.remaining -= take;
        if (this.remaining === 0) this.state = 'data-end';
        continue;
      }
      const newline = bytes.indexOf(0x0a, at);
      const end = newline < 0 ? bytes.length : newline;
      this.line += bytes.toString('latin1', at, end);
      if (this.line.length > MAX_LINE) throw new Error('malformed chunked body: line too long');
      at = end;
      if (newline < 0) break;
      at++; // past the LF
      const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
      this.line = '';
      this.onLine(line);
    }
    if (at < bytes.length && this.state === 'done') throw new Error('bytes after the end of a chunked body');
    return out;
  }

  private onLine(line: string): void {
    if (this.state === 'data-end') {
      if (line !== '') throw new Error('malformed chunked body: no CRLF after chunk data');
      this.state = 'size';
    } else if (this.state === 'size') {
      const size = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
      if (size === null) throw new Error(`malformed chunk size line ${JSON.stringify(line.slice(0, 40))}`);
      this.remaining = parseInt(size[1], 16);
      this.state = this.remaining === 0 ? 'trailer' : 'data';
    } else if (line === '') {
      this.state = 'done'; // the empty line that ends the trailer section
    }
  }
}
