/**
 * HTTP/1.1 GET over plain TCP, for the restore client's `http:` downloads (http.ts picks it; `https:`
 * stays on node:https).
 *
 * Why not node:http: receiving a 211 MB snapshot with 8 ranges through it cost 0.4–0.7 s of CPU on
 * the test machine without any processing (llhttp callbacks, a Buffer and a stream push per 64 KiB
 * read, the IncomingMessage machinery), against ~0.1 s for a bare socket reading into a reused buffer,
 * on the thread that also hashes and decompresses. Here the socket reads straight into 1 MiB slabs
 * (`onread`), every piece handed on is a view of a slab (no copy, no per-read allocation): the
 * restore's download + sha256 stage went from 0.87 to 0.45 CPU s (docs/restore.md, *Receiving*).
 *
 * Scope: GET only, one request per connection at a time, keep-alive reuse, Content-Length, chunked
 * and read-until-close bodies, no redirects followed (the caller sees 3xx), 1xx skipped. A pooled
 * connection the server closed in the meantime is replaced once, transparently (GET is idempotent).
 */
import net from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import { TimeoutError, abortReason } from '../util/errors.js';
import { ChunkedDecoder } from './chunked.js';
import { SLAB_BYTES, SlabPool } from './slab-pool.js';

/** A response body: async-iterable pieces, destroyable, as http.ts's readBody consumes it. */
export interface ResponseBody extends AsyncIterable<Buffer> {
  /** Stops the body; a pending read rejects with `err`. The connection is dropped unless complete. */
  destroy(err?: Error): void;
  /** True once the consumer has been handed the last piece. */
  readonly readableEnded: boolean;
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: ResponseBody;
}

/** A read gets at least this much room; a slab with less left is replaced. */
const MIN_READ_ROOM = 64 * 1024;
const MAX_HEAD_BYTES = 64 * 1024;
/**
 * Received bytes waiting for the consumer above which the socket stops reading (it reads on below
 * half). 1 MiB: the rest stays in the kernel's socket buffers, where it costs no fresh receive slab
 * (parallel-get.ts, DEFAULT_AHEAD_BYTES, holds the chunks ahead of the consumer at the same size).
 */
const PAUSE_AT = 1024 * 1024;

/** Keep-alive connections per origin, for `get`. */
export class RawHttpPool {
  private readonly idle = new Map<string, Connection[]>();
  private readonly all = new Set<Connection>();
  /** Receive slabs shared by every connection (slab-pool.ts). */
  readonly slabs = new SlabPool();

  constructor(private readonly headTimeoutMs: number) {}

  /** Sends `GET url` with `headers`; resolves when the response head arrived. */
  async get(url: URL, headers: Record<string, string>, signal?: AbortSignal): Promise<RawResponse> {
    if (signal?.aborted) throw abortReason(signal);
    const request = formatRequest(url, headers);
    const reused = this.takeIdle(url);
    if (reused !== undefined) {
      try {
        return await reused.send(request, signal);
      } catch (err) {
        // The server closed the pooled connection before we wrote to it: any other failure stands.
        if (!(err instanceof StaleConnectionError)) throw err;
      }
    }
    return this.open(url).send(request, signal);
  }

  /** Destroys every connection, idle or busy. */
  close(): void {
    for (const connection of this.all) connection.destroy(new Error('HTTP client closed'));
    this.all.clear();
    this.idle.clear();
  }

  private open(url: URL): Connection {
    const connection = new Connection(url, this.headTimeoutMs, {
      release: (done) => this.release(url, done),
      forget: (done) => this.forget(url, done),
      slabs: this.slabs,
    });
    this.all.add(connection);
    return connection;
  }

  private takeIdle(url: URL): Connection | undefined {
    const list = this.idle.get(url.host);
    return list?.pop();
  }

  private release(url: URL, connection: Connection): void {
    const list = this.idle.get(url.host) ?? [];
    list.push(connection);
    this.idle.set(url.host, list);
  }

  private forget(url: URL, connection: Connection): void {
    this.all.delete(connection);
    const list = this.idle.get(url.host);
    const at = list?.indexOf(connection) ?? -1;
    if (at >= 0) list!.splice(at, 1);
  }
}

/** A reused connection was closed by the server before any byte of the response came back. */
class StaleConnectionError extends Error {}

interface PoolHooks {
  release(connection: Connection): void;
  forget(connection: Connection): void;
  /** Where the connection's receive slabs come from and go back to. */
  slabs: SlabPool;
}

type Framing = { kind: 'length'; remaining: number } | { kind: 'chunked'; decoder: ChunkedDecoder } | { kind: 'close' };

/** One TCP connection: one request at a time, its response parsed as it arrives. */
class Connection {
  private readonly socket: net.Socket;
  private slab: Buffer;
  private slabUsed = 0;
  /** Requests answered on this connection so far (a failure before the first byte of a later one is "stale"). */
  private served = 0;
  private head: Buffer[] = [];
  private headBytes = 0;
  private pending?: { resolve: (response: RawResponse) => void; reject: (err: Error) => void };
  private body?: Body;
  private framing?: Framing;
  private reusable = true;
  private dead?: Error;
  private headTimer?: NodeJS.Timeout;
  private stopListening?: () => void;

  constructor(
    url: URL,
    private readonly headTimeoutMs: number,
    private readonly pool: PoolHooks,
  ) {
    this.slab = pool.slabs.take();
    this.socket = net.connect({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port || 80),
      noDelay: true,
      onread: { buffer: () => this.readRoom(), callback: (count, room) => this.onBytes((room as Buffer).subarray(0, count)) },
    });
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('end', () => this.onEnd());
    this.socket.on('close', () => this.fail(new Error('socket closed')));
  }

  send(request: string, signal?: AbortSignal): Promise<RawResponse> {
    if (this.dead !== undefined) return Promise.reject(this.served > 0 ? new StaleConnectionError(this.dead.message) : this.dead);
    this.socket.ref();
    this.head = [];
    this.headBytes = 0;
    this.framing = undefined;
    this.body = undefined;
    const answered = new Promise<RawResponse>((resolve, reject) => (this.pending = { resolve, reject }));
    this.headTimer = setTimeout(() => this.destroy(new TimeoutError(`no response within ${this.headTimeoutMs} ms`)), this.headTimeoutMs);
    if (signal !== undefined) {
      const onAbort = (): void => this.destroy(abortReason(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      this.stopListening = () => signal.removeEventListener('abort', onAbort);
    }
    this.socket.write(request);
    return answered;
  }

  destroy(err: Error): void {
    this.fail(err);
    this.socket.destroy();
  }

  /** Where the next read lands: the free tail of the current slab, or a new slab. */
  private readRoom(): Buffer {
    // A failed connection gave its slab back: a late read must not land in it (it may be reused).
    if (this.dead !== undefined) return Buffer.allocUnsafe(MIN_READ_ROOM);
    if (SLAB_BYTES - this.slabUsed < MIN_READ_ROOM) {
      this.pool.slabs.retire(this.slab);
      this.slab = this.pool.slabs.take();
      this.slabUsed = 0;
    }
    return this.slab.subarray(this.slabUsed);
  }

  /** `bytes` landed at the start of the room readRoom gave: that part of the slab is taken for good. */
  private onBytes(bytes: Buffer): boolean {
    this.slabUsed += bytes.length;
    try {
      if (this.framing === undefined) this.onHeadBytes(bytes);
      else this.onBodyBytes(bytes);
    } catch (err) {
      this.destroy(err as Error);
    }
    return true;
  }

  private onHeadBytes(bytes: Buffer): void {
    if (this.pending === undefined) throw new Error('unexpected bytes on an idle connection');
    this.headBytes += bytes.length;
    const all = this.head.length === 0 ? bytes : Buffer.concat([...this.head, bytes]);
    const end = all.indexOf('\r\n\r\n');
    if (end < 0) {
      if (this.headBytes > MAX_HEAD_BYTES) throw new Error('response head too large');
      // Kept past this read: a copy, as the slab may be reused once retired (slab-pool.ts).
      this.head.push(Buffer.from(bytes));
      return;
    }
    const { status, headers } = parseHead(all.toString('latin1', 0, end));
    const rest = all.subarray(end + 4);
    this.head = [];
    this.headBytes = 0;
    if (status >= 100 && status < 200) {
      if (rest.length > 0) this.onHeadBytes(rest); // an interim response: the real one follows
      return;
    }
    this.served++;
    clearTimeout(this.headTimer);
    this.reusable = !/\bclose\b/i.test(String(headers.connection ?? ''));
    this.framing = framingOf(status, headers);
    const body = new Body(this);
    this.body = body;
    const pending = this.pending;
    this.pending = undefined;
    pending.resolve({ status, headers, body });
    if (rest.length > 0 || this.framing.kind !== 'close') this.onBodyBytes(rest);
  }

  private onBodyBytes(bytes: Buffer): void {
    const framing = this.framing as Framing;
    const body = this.body as Body;
    if (framing.kind === 'length') {
      if (bytes.length > framing.remaining) throw new Error('response longer than its Content-Length');
      framing.remaining -= bytes.length;
      if (bytes.length > 0) this.handOut(body, bytes);
      if (framing.remaining === 0) this.complete();
    } else if (framing.kind === 'chunked') {
      for (const piece of framing.decoder.push(bytes)) this.handOut(body, piece);
      if (framing.decoder.done) this.complete();
    } else if (bytes.length > 0) {
      this.handOut(body, bytes);
    }
    if (body.queued > PAUSE_AT && !this.socket.isPaused()) this.socket.pause();
  }

  private handOut(body: Body, piece: Buffer): void {
    this.pool.slabs.handOut(piece);
    body.push(piece);
  }

  /** The body arrived whole: the consumer gets its end, the connection goes back to the pool. */
  private complete(): void {
    this.body?.finish();
    this.framing = undefined;
    this.stopListening?.();
    if (!this.reusable) {
      this.socket.destroy();
      return;
    }
    this.socket.unref();
    this.pool.release(this);
  }

  /** The consumer took pieces: read again if we had stopped. */
  resumeIfDrained(queued: number): void {
    if (queued <= PAUSE_AT / 2 && this.socket.isPaused()) this.socket.resume();
  }

  private onEnd(): void {
    if (this.framing?.kind === 'close' && this.body !== undefined) {
      this.body.finish();
      this.framing = undefined;
    }
    this.socket.destroy();
  }

  /** Every later use of this connection fails; a pending request or an unfinished body gets `err`. */
  private fail(err: Error): void {
    if (this.dead !== undefined) return;
    this.dead = err;
    this.pool.slabs.retire(this.slab);
    clearTimeout(this.headTimer);
    this.stopListening?.();
    this.pool.forget(this);
    const pending = this.pending;
    this.pending = undefined;
    // Nothing of this response came back on a connection that served others: it went stale while idle.
    if (pending !== undefined) pending.reject(this.served > 0 && this.headBytes === 0 && !(err instanceof TimeoutError) && err.name !== 'AbortError' ? new StaleConnectionError(err.message) : err);
    if (this.framing !== undefined) this.body?.fail(err.message === 'socket closed' ? new Error('aborted: connection closed mid-response') : err);
  }
}

/** The consumer's side of one response body. */
class Body implements ResponseBody {
  private readonly pieces: Buffer[] = [];
  queued = 0;
  private ended = false;
  private delivered = false;
  private error?: Error;
  private wake?: () => void;

  constructor(private readonly connection: Connection) {}

  get readableEnded(): boolean {
    return this.delivered;
  }

  push(piece: Buffer): void {
    this.pieces.push(piece);
    this.queued += piece.length;
    this.wake?.();
  }

  finish(): void {
    this.ended = true;
    this.wake?.();
  }

  fail(err: Error): void {
    if (this.ended) return;
    this.error ??= err;
    this.wake?.();
  }

  destroy(err?: Error): void {
    if (this.delivered) return;
    if (!this.ended) this.connection.destroy(err ?? new Error('response body destroyed'));
    this.error ??= err ?? new Error('response body destroyed');
    this.pieces.length = 0;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    for (;;) {
      const piece = this.pieces.shift();
      if (piece !== undefined) {
        this.queued -= piece.length;
        this.connection.resumeIfDrained(this.queued);
        yield piece;
        continue;
      }
      if (this.error !== undefined) throw this.error;
      if (this.ended) {
        this.delivered = true;
        return;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

/** The request bytes: our headers as given (no CR or LF allowed in them), keep-alive. */
function formatRequest(url: URL, headers: Record<string, string>): string {
  let text = `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: keep-alive\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new TypeError(`header ${name} holds a line break`);
    text += `${name}: ${value}\r\n`;
  }
  return `${text}\r\n`;
}

/** Status and headers (lower-case names; repeated ones joined with ", ", set-cookie kept as a list). */
export function parseHead(text: string): { status: number; headers: IncomingHttpHeaders } {
  const lines = text.split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0]);
  if (status === null) throw new Error(`malformed HTTP status line: ${JSON.stringify(lines[0].slice(0, 80))}`);
  const headers: IncomingHttpHeaders = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`malformed HTTP header line: ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const known = headers[name];
    if (name === 'set-cookie') headers[name] = [...((known as string[] | undefined) ?? []), value];
    else headers[name] = known === undefined ? value : `${known as string}, ${value}`;
  }
  return { status: Number(status[1]), headers };
}

function framingOf(status: number, headers: IncomingHttpHeaders): Framing {
  if (status === 204 || status === 304) return { kind: 'length', remaining: 0 };
  if (/\bchunked\b/i.test(String(headers['transfer-encoding'] ?? ''))) return { kind: 'chunked', decoder: new ChunkedDecoder() };
  const length = headers['content-length'];
  if (length !== undefined) {
    if (!/^\d+$/.test(length)) throw new Error(`malformed Content-Length: ${length}`);
    return { kind: 'length', remaining: Number(length) };
  }
  return { kind: 'close' };
}
