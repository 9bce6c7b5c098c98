/**
 * Limits that keep the server answering while clients misbehave: how long a client may take to send
 * its headers and its request, how long a connection may sit idle, how many connections are held
 * at once, and how big a request body may be on each route.
 *
 * The connection cap evicts before it refuses: when a new connection arrives at the cap, the oldest
 * connection with no request in flight (idle keep-alive, or one still dribbling its headers) is
 * closed to make room, so a flood of idle or slow connections cannot lock out a health probe or a
 * real client. Only when every held connection is serving a request is the newcomer refused.
 */
import type { Server, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { readFileSync } from 'node:fs';

import type { HttpLimits } from '../util/http-limits.js';

export type { HttpLimits } from '../util/http-limits.js';
export { DEFAULT_HTTP_LIMITS } from '../util/http-limits.js';

/** File descriptors kept free for git children, pack files and the cache when capping connections. */
const FD_HEADROOM = 256;

/** The soft open-file limit (Linux /proc), or undefined where it cannot be read. */
export function openFileLimit(limitsFile = '/proc/self/limits'): number | undefined {
  try {
    const line = readFileSync(limitsFile, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    const value = Number(soft);
    return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The connection cap actually applied: the configured one, lowered to leave FD_HEADROOM descriptors. */
export function effectiveConnectionCap(configured: number, fdLimit: number | undefined): number {
  if (fdLimit === undefined) return configured;
  return Math.max(16, Math.min(configured, fdLimit - FD_HEADROOM));
}

/** Which body limit applies to a request target. */
export function bodyLimitFor(url: string, limits: HttpLimits): number {
  const path = url.split('?')[0];
  if (path.endsWith('/git-upload-pack')) return limits.maxUploadPackBytes;
  if (path.startsWith('/git/')) return limits.maxForwardBytes;
  return limits.maxOtherBodyBytes;
}

/** Status for a request the HTTP parser rejected before any handler saw it. */
export function clientErrorStatus(code: string | undefined): { status: number; text: string } {
  if (code === 'HPE_HEADER_OVERFLOW') return { status: 431, text: 'Request Header Fields Too Large' };
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT' || code === 'ERR_HTTP_HEADERS_TIMEOUT') return { status: 408, text: 'Request Timeout' };
  if (code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW') return { status: 413, text: 'Content Too Large' };
  return { status: 400, text: 'Bad Request' };
}

interface Held {
  since: number;
  /** Requests on this connection whose response has not closed. */
  active: number;
  /** The response in flight, if any (to tell "we are working" from "the client stopped reading"). */
  response: ServerResponse | undefined;
}

/**
 * Tracks the server's connections for the cap and the idle rule. Attach with `guard(server)`.
 */
export class ConnectionGuard {
  readonly #held = new Map<Socket, Held>();
  readonly #cap: number;
  #evicted = 0;
  #refused = 0;

  constructor(cap: number) {
    this.#cap = cap;
  }

  /** Installs the listeners on `server` (connection admission, request tracking, idle timeouts). */
  attach(server: Server, idleTimeoutMs: number): void {
    server.on('connection', (socket: Socket) => this.#admit(socket));
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#track(req, res));
    server.timeout = idleTimeoutMs;
    // With a 'timeout' listener Node leaves the decision to us (keep-alive idleness included).
    server.on('timeout', (socket: Socket) => {
      const held = this.#held.get(socket);
      // Still computing the answer (a clone being mirrored, a snapshot being generated): not idle.
      if (held?.response && !held.response.headersSent) return;
      socket.destroy();
    });
  }

  /** Connections held now. */
  get size(): number {
    return this.#held.size;
  }

  /** Connections closed to make room, and connections refused because all were busy. */
  stats(): { held: number; evicted: number; refused: number } {
    return { held: this.#held.size, evicted: this.#evicted, refused: this.#refused };
  }

  #admit(socket: Socket): void {
    if (this.#held.size >= this.#cap) {
      const victim = this.#oldestIdle();
      if (victim) {
        this.#evicted++;
        this.#forget(victim);
        victim.destroy();
      } else {
        this.#refused++;
        socket.destroy();
        return;
      }
    }
    this.#held.set(socket, { since: performance.now(), active: 0, response: undefined });
    socket.once('close', () => this.#forget(socket));
  }

  #forget(socket: Socket): void {
    this.#held.delete(socket);
  }

  #track(req: IncomingMessage, res: ServerResponse): void {
    const held = this.#held.get(req.socket);
    if (!held) return;
    held.active++;
    held.response = res;
    res.once('close', () => {
      held.active--;
      if (held.response === res) held.response = undefined;
    });
  }

  /** The longest-held connection without a request in flight (Map order is insertion order). */
  #oldestIdle(): Socket | undefined {
    for (const [socket, held] of this.#held) if (held.active === 0) return socket;
    return undefined;
  }
}
