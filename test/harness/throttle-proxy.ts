/**
 * A throttling TCP proxy on loopback, standing in for a real network link between a client and a
 * server: every connection is capped at `bytesPerSecond` in each direction and every piece of data is
 * delayed by `latencyMs` (one way), the way a single S3 or CDN stream behaves. Parallel connections
 * each get their own cap, so a client that opens N ranges really gets up to N times the bandwidth.
 *
 * Bounded: loopback listener and loopback target only, at most MAX_CONNECTIONS connections, and each
 * direction buffers at most about one bandwidth-delay product (plus a little) before it stops reading
 * from its source, so a slow reader pushes back on the sender as TCP would.
 */
import net from 'node:net';

export interface ThrottleOptions {
  /** The server to forward to: a URL or `host:port` on 127.0.0.1, ::1 or localhost. */
  target: string;
  /** Cap per connection and direction, bytes per second (1 KiB/s … 10 GiB/s). */
  bytesPerSecond: number;
  /** Added one-way delay in milliseconds (0 … 10 000). */
  latencyMs?: number;
}

export interface ThrottleProxy {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** Connections accepted so far. */
  connections(): number;
  /** Most connections open at the same time so far. */
  maxConcurrent(): number;
  stop(): Promise<void>;
}

const MAX_CONNECTIONS = 256;
/**
 * Pieces are paced at most this large: 256 KiB is 5.2 ms at 50 MB/s, about the burst a TCP sender
 * puts on a link with a 10–20 ms round trip. Not smaller: the proxy shares the machine's cores with
 * the client and server it stands between, and every piece costs it a timer and a write, CPU that a
 * real link would not take from them.
 */
const PIECE_BYTES = 256 * 1024;
/**
 * The server's side is read up to this much per read(2) into one reused buffer (`onread`), instead of
 * Node's 64 KiB per 'data' event. With this, 256 KiB pieces and one writev per pump, the proxy's user
 * CPU per restore of the bench snapshot went from 0.24–0.29 s to 0.14–0.19 s (two interleaved samples
 * each); its system time and the restore's time did not change measurably.
 */
const READ_BYTES = 1024 * 1024;
const LOOPBACK = new Set(['127.0.0.1', '::1', '[::1]', 'localhost']);

/** Starts the proxy on an ephemeral 127.0.0.1 port. */
export async function startThrottleProxy(options: ThrottleOptions): Promise<ThrottleProxy> {
  const target = new URL(options.target.includes('://') ? options.target : `tcp://${options.target}`);
  if (!LOOPBACK.has(target.hostname)) throw new Error(`throttle proxy forwards to loopback only, not ${target.hostname}`);
  const rate = options.bytesPerSecond;
  const latency = options.latencyMs ?? 0;
  if (!(rate >= 1024 && rate <= 10 * 1024 ** 3)) throw new RangeError('bytesPerSecond must be 1 KiB/s … 10 GiB/s');
  if (!(latency >= 0 && latency <= 10_000)) throw new RangeError('latencyMs must be 0 … 10000');
  const port = Number(target.port);
  const host = target.hostname.replace(/^\[|\]$/g, '');
  // About one bandwidth-delay product in flight, never less than a few pieces.
  const bufferLimit = Math.max(4 * PIECE_BYTES, Math.ceil((rate * (latency + 50)) / 1000));

  const sockets = new Set<net.Socket>();
  let accepted = 0;
  let open = 0;
  let maxOpen = 0;
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    if (open >= MAX_CONNECTIONS) {
      client.destroy();
      return;
    }
    accepted++;
    open++;
    maxOpen = Math.max(maxOpen, open);
    // The heavy direction (server to client) is read in big pieces; see READ_BYTES.
    const pipes: { toClient?: PacedPipe } = {}; // set right below, before any data can arrive
    const upstream = net.connect({
      host,
      port,
      allowHalfOpen: true,
      onread: { buffer: Buffer.allocUnsafe(READ_BYTES), callback: (length, buffer) => pipes.toClient!.accept(Buffer.from(buffer.subarray(0, length))) },
    });
    sockets.add(client);
    sockets.add(upstream);
    const fail = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', fail);
    upstream.on('error', fail);
    client.on('close', () => {
      open--;
      sockets.delete(client);
      upstream.destroy();
    });
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    client.on('data', (chunk: Buffer) => toServer.accept(chunk));
    const toServer = new PacedPipe(client, upstream, rate, latency, bufferLimit);
    pipes.toClient = new PacedPipe(upstream, client, rate, latency, bufferLimit);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}`,
    connections: () => accepted,
    maxConcurrent: () => maxOpen,
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * One direction of one connection: each piece is due when it has "arrived" (read time + latency)
 * and the link has finished sending everything before it (`length / rate` each). One timer and one
 * FIFO per direction keep the bytes in order.
 */
class PacedPipe {
  private readonly queue: Array<{ due: number; piece: Buffer }> = [];
  private queued = 0;
  private linkFreeAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private ended = false;
  private waitingForDrain = false;

  constructor(
    private readonly from: net.Socket,
    private readonly to: net.Socket,
    private readonly rate: number,
    private readonly latency: number,
    private readonly limit: number,
  ) {
    from.on('end', () => {
      this.ended = true;
      this.pump();
    });
    to.on('drain', () => {
      this.waitingForDrain = false;
      this.pump();
    });
  }

  /** Queues bytes read from `from` (which the caller reads); false once `from` is paused. */
  accept(chunk: Buffer): boolean {
    const now = performance.now();
    for (let at = 0; at < chunk.length; at += PIECE_BYTES) {
      const piece = chunk.subarray(at, at + PIECE_BYTES);
      const start = Math.max(now + this.latency, this.linkFreeAt);
      this.linkFreeAt = start + (piece.length * 1000) / this.rate;
      this.queue.push({ due: this.linkFreeAt, piece });
      this.queued += piece.length;
    }
    if (this.queued > this.limit) this.from.pause();
    this.pump();
    return !this.from.isPaused();
  }

  private pump(): void {
    if (this.timer !== undefined || this.waitingForDrain || this.to.destroyed) return;
    const now = performance.now();
    // Everything due goes out in one writev.
    this.to.cork();
    while (this.queue.length > 0 && this.queue[0].due <= now) {
      const { piece } = this.queue.shift()!;
      this.queued -= piece.length;
      if (!this.to.write(piece)) {
        this.waitingForDrain = true;
        break;
      }
    }
    this.to.uncork();
    if (this.queued <= this.limit / 2 && this.from.isPaused()) this.from.resume();
    if (this.queue.length === 0) {
      if (this.ended && !this.waitingForDrain) this.to.end();
      return;
    }
    if (this.waitingForDrain) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.pump();
      },
      Math.max(1, this.queue[0].due - now),
    );
  }
}
