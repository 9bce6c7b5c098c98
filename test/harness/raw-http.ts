/**
 * Raw loopback sockets for tests that misbehave below what fetch() allows: silent connections,
 * headers dripped byte by byte, oversized headers, broken framing. Every helper is bounded: a socket
 * is given a deadline and destroyed when it passes.
 */
import net from 'node:net';

export interface RawReply {
  /** The status of the first response line, or undefined when the server closed without one. */
  status: number | undefined;
  /** True when the server closed (or reset) the connection before the deadline. */
  closedByServer: boolean;
}

/** Sends `data` (all at once) on a new connection and reads until the server closes or `deadlineMs`. */
export function rawRequest(url: string, data: string | Buffer, deadlineMs = 10_000): Promise<RawReply> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), hostname);
    let received = '';
    let settled = false;
    const finish = (closedByServer: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(received);
      resolve({ status: match ? Number(match[1]) : undefined, closedByServer });
    };
    const timer = setTimeout(() => finish(false), deadlineMs);
    socket.on('connect', () => socket.write(data));
    socket.on('data', (chunk: Buffer) => {
      if (received.length < 256) received += chunk.toString('latin1');
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('end', () => finish(true));
  });
}

/**
 * Opens a connection that sends the start of a request and then one more header byte every
 * `everyMs` (slowloris) until the server closes it or `deadlineMs` passes.
 */
export function drip(url: string, everyMs: number, deadlineMs: number): Promise<RawReply> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), hostname);
    let received = '';
    let settled = false;
    let ticker: NodeJS.Timeout | undefined;
    const finish = (closedByServer: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearInterval(ticker);
      socket.destroy();
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(received);
      resolve({ status: match ? Number(match[1]) : undefined, closedByServer });
    };
    const timer = setTimeout(() => finish(false), deadlineMs);
    socket.on('connect', () => {
      socket.write('GET /_liveness HTTP/1.1\r\nHost: x\r\nX-Slow: ');
      ticker = setInterval(() => socket.write('a'), everyMs);
    });
    socket.on('data', (chunk: Buffer) => {
      if (received.length < 256) received += chunk.toString('latin1');
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
  });
}

/** Opens `count` connections that never send a byte; resolves once all are connected. */
export async function openIdle(url: string, count: number): Promise<net.Socket[]> {
  const { hostname, port } = new URL(url);
  const sockets: net.Socket[] = [];
  for (let i = 0; i < count; i++) {
    const socket = net.connect(Number(port), hostname);
    socket.on('error', () => {});
    // Read (and drop) whatever the server sends, as a real client would: a paused socket would
    // never see the server's close.
    socket.resume();
    sockets.push(socket);
  }
  await Promise.all(
    sockets.map(
      (s) =>
        new Promise<void>((resolve) => {
          if (!s.connecting) return resolve();
          s.once('connect', () => resolve());
          s.once('close', () => resolve());
        }),
    ),
  );
  return sockets;
}

/** Resolves when every socket has been closed (by either side). */
export function allClosed(sockets: readonly net.Socket[]): Promise<void> {
  return Promise.all(sockets.map((s) => (s.destroyed ? Promise.resolve() : new Promise<void>((resolve) => s.once('close', () => resolve()))))).then(() => {});
}
